"""End-to-end runs on tiny data: outputs, metrics against scikit-learn, the training rules."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml
from safetensors.torch import load_file
from sklearn import metrics as skm
from typer.testing import CliRunner

from esx.cli import app
from esx.errors import EsxError, NonFiniteLossError
from esx.recipe import validate_recipe
from esx.testing import tiny_batch
from esx.trainer import Trainer

from conftest import ROOT


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    res = CliRunner().invoke(
        app,
        ["run", str(ROOT / "recipes" / "smoke.yaml"), "--out", str(out)],
        env={"COLUMNS": "160"},
    )
    assert res.exit_code == 0, res.output
    return out, res.output


def test_run_folder_contents(smoke_run):
    out, output = smoke_run
    for name in (
        "recipe.yaml",
        "metrics.json",
        "history.csv",
        "predictions.csv",
        "best.safetensors",
        "run.log",
        "overlays.png",
    ):
        assert (out / name).is_file(), name
    assert "SYNTHETIC" in output and "test results" in output
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["test"]) == {"accuracy", "auc", "precision", "recall", "f1"} | {
        "accuracy_class_0",
        "accuracy_class_1",
        "accuracy_cue_agree",  # the phantom's marker groups
        "accuracy_cue_conflict",
        "worst_group_accuracy",
    }
    assert m["groups"]["declared_by"] == "phantom" and sum(m["groups"]["size"].values()) == 16
    assert {"iou", "precision", "recall", "threshold"} <= set(m["explanation"])
    assert m["data"]["synthetic"] is True and m["data"]["name"] == "phantom"
    assert m["data"]["splits"] == {"train": 16, "val": 16, "test": 16}
    resolved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert resolved["data"]["params"]["image_size"] == 64
    state = load_file(str(out / "best.safetensors"))
    assert any(k.startswith("backbone.") for k in state)
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(rows) == 2 and "val_auc" in rows[0] and "train_exp" in rows[0]


def test_metrics_equal_sklearn_from_predictions(smoke_run):
    out, _ = smoke_run
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    y = [int(r["label"]) for r in rows]
    p = [float(r["prob_positive"]) for r in rows]
    yhat = [int(r["pred"]) for r in rows]
    m = json.loads((out / "metrics.json").read_text())["test"]
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, yhat))
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-5)
    assert m["precision"] == pytest.approx(skm.precision_score(y, yhat, zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(y, yhat, zero_division=0))
    assert m["f1"] == pytest.approx(skm.f1_score(y, yhat, zero_division=0))


def test_metric_functions_on_random_data():
    from esx.metrics import classification

    g = torch.Generator().manual_seed(3)
    y = (torch.rand(200, generator=g) > 0.4).int().numpy()
    p = torch.rand(200, generator=g).round(decimals=1).numpy()  # many ties
    yhat = (p > 0.5).astype(int)
    m = classification(y, p, yhat)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["f1"] == pytest.approx(skm.f1_score(y, yhat))


def test_existing_run_folder_refused(smoke_run):
    out, _ = smoke_run
    res = CliRunner().invoke(app, ["run", str(ROOT / "recipes" / "smoke.yaml"), "--out", str(out)])
    assert res.exit_code == 2 and "--overwrite" in res.output


def _trainer(registry, recipe, tmp_path):
    return Trainer(validate_recipe(recipe, registry), tmp_path)


def test_explanation_loss_sees_only_positive_annotated_rows(registry, tiny_recipe, tmp_path):
    t = _trainer(registry, tiny_recipe, tmp_path)
    seen = []
    original = t.c.loss.forward

    def spy(maps, targets):
        seen.append((maps.shape[0], targets.weights.clone()))
        return original(maps, targets)

    t.c.loss.forward = spy
    b = tiny_batch(b=6, size=64)
    b.mask_valid[1] = False  # a positive image nobody annotated
    b.masks[1] = 0
    logs = t.step(b)
    positives_annotated = int(((b.label > 0) & b.mask_valid.any(1)).sum())
    assert seen and seen[0][0] == positives_annotated
    assert (seen[0][1].sum(1) == 1).all()
    assert {"pred", "exp"} <= set(logs)


def test_baseline_skips_explainer(registry, tiny_recipe, tmp_path):
    tiny_recipe["loss"] = {"name": "none"}
    t = _trainer(registry, tiny_recipe, tmp_path)
    t.c.explainer.explain = lambda *a, **k: (_ for _ in ()).throw(AssertionError("called"))
    logs = t.step(tiny_batch(b=4, size=64))
    assert "exp" not in logs


def test_non_differentiable_explainer_refused(registry, tiny_recipe, tmp_path):
    tiny_recipe["explainer"] = {"name": "captum_gradcam"}
    with pytest.raises(EsxError, match="not differentiable"):
        _trainer(registry, tiny_recipe, tmp_path)


def test_non_finite_loss_stops_with_step_and_term(registry, tiny_recipe, tmp_path):
    t = _trainer(registry, tiny_recipe, tmp_path)
    b = tiny_batch(b=4, size=64)
    b.image[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="step 0: loss term 'pred'"):
        t.step(b)


def test_seeded_runs_repeat(registry, tiny_recipe, tmp_path):
    a = _trainer(registry, tiny_recipe, tmp_path / "a").run()
    b = _trainer(registry, tiny_recipe, tmp_path / "b").run()
    assert a["test"] == b["test"]


def test_deeplift_is_refused_for_training(registry, tiny_recipe, tmp_path):
    from esx.recipe import validate_recipe
    from esx.trainer import Trainer

    tiny_recipe["explainer"] = {"name": "deeplift"}
    with pytest.raises(EsxError, match="not differentiable"):
        Trainer(validate_recipe(tiny_recipe, registry), tmp_path)
    tiny_recipe["explainer"] = {"name": "gradcam"}
    tiny_recipe["eval"]["explainer"] = {"name": "deeplift"}
    Trainer(validate_recipe(tiny_recipe, registry), tmp_path)  # fine for evaluation


def test_one_line_per_epoch_unless_quiet(smoke_run, tmp_path):
    _, output = smoke_run
    lines = [line for line in output.splitlines() if line.startswith("epoch ") and " | " in line]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"], output
    assert "val accuracy" in lines[0] and "(best " in lines[0] and lines[0].endswith(" s")
    quiet = CliRunner().invoke(
        app, ["run", str(ROOT / "recipes" / "smoke.yaml"), "--out", str(tmp_path / "q"), "--quiet"]
    )
    assert quiet.exit_code == 0 and "epoch 1/2" not in quiet.output


def test_run_outputs_follow_the_umask(smoke_run):
    """Atomic writes must not leave the temporary file's private 0600 mode behind."""
    import os
    import stat

    out, _ = smoke_run
    mask = os.umask(0o022)
    os.umask(mask)
    if mask & 0o040:
        pytest.skip(f"this umask ({mask:03o}) hides files from the group")
    for name in ("metrics.json", "recipe.yaml", "best.safetensors", "history.csv"):
        assert (out / name).stat().st_mode & stat.S_IRGRP, name


def test_last_checkpoint_dropped_when_asked(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(
        app,
        ["run", str(ROOT / "recipes" / "smoke.yaml"), "--out", str(out), "--quiet",
         "--set", "train.keep_last_checkpoint=false", "--set", "train.epochs=1"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (out / "metrics.json").is_file() and (out / "best.safetensors").is_file()
    assert not (out / "last.safetensors").exists()


def test_a_prepare_loader_shows_its_bar_from_the_first_batch_read():
    from rich.progress import Progress

    from esx.runlog import Counted

    dl = torch.utils.data.DataLoader(list(range(6)), batch_size=2)
    progress = Progress()
    counted = Counted(dl, progress, "preparing x")
    assert len(counted) == 3 and counted.dataset is dl.dataset
    assert not progress.tasks  # nothing read, nothing shown
    batches = iter(counted)
    next(batches)
    assert [t.description for t in progress.tasks] == ["preparing x (batches)"]
    assert len(list(batches)) == 2
    assert progress.tasks[0].completed == 3
    counted.close()
    assert not progress.tasks


def test_an_aggregator_reports_its_preparation_with_a_total():
    """MAGI's pre-training counts its steps against their total (not batches without one)."""
    from rich.console import Console

    from esx import runlog

    with runlog.progress(Console(quiet=True)) as progress:
        counted = runlog.Counted(torch.utils.data.DataLoader(list(range(6))), progress, "prep")
        for i, _ in enumerate(counted, 1):
            counted.report(i, 300)
        (task,) = progress.tasks
        assert (task.completed, task.total) == (6, 300) and "steps" in task.description
