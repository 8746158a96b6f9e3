"""The experiment scripts that the docs quote, on tiny hand-made runs."""

from __future__ import annotations

import csv
import importlib.util
import json
import tarfile

import pytest
import torch
import yaml
from typer.testing import CliRunner

from esx.cli import app
from esx.errors import EsxError
from esx.interfaces import BuildContext
from esx.plugins import build_registry
from esx.testing import context
from esx.types import Batch
from esx_phantom.dataset import Phantom, PhantomParams

from conftest import ROOT, make_folder


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_run(folder, recipe: dict, preds) -> None:
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    with open(folder / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label", "prob_positive", "pred"])
        for i, (label, pred) in enumerate(preds):
            w.writerow([i, label, float(pred), pred])


@pytest.mark.parametrize("follows", ["marker", "label"])
def test_cue_reliance_on_hand_made_predictions(tmp_path, tiny_recipe, follows, capsys):
    tiny_recipe["data"]["params"]["n_test"] = 40
    test = Phantom(PhantomParams(**tiny_recipe["data"]["params"]), BuildContext()).split("test")
    labels = [int(test.labels[i]) for i in range(40)]
    cues = [int(test.cue_present(i)) for i in range(40)]
    preds = cues if follows == "marker" else labels
    write_run(tmp_path / "m" / "seed0", tiny_recipe, zip(labels, preds, strict=True))
    mod = load_script("cue_reliance")
    got = mod.reliance(tmp_path / "m" / "seed0")
    agree = sum(c == y for c, y in zip(cues, labels, strict=True))
    if follows == "marker":  # right exactly where marker and label agree
        want = {"agree": 1.0, "conflict": 0.0, "accuracy": agree / 40, "reliance": 1.0}
    else:
        want = {"agree": 1.0, "conflict": 1.0, "accuracy": 1.0, "reliance": 0.0}
    assert got == {
        "accuracy_cue_agree": want["agree"],
        "accuracy_cue_conflict": want["conflict"],
        "cue_reliance": want["reliance"],
        "accuracy": want["accuracy"],
    }
    (tmp_path / "m" / "seed0" / "metrics.json").write_text('{"test": {"accuracy": 0.5}}')
    mod.main([str(tmp_path / "m"), "--into", str(tmp_path / "copy")])
    assert "| 1 |" in capsys.readouterr().out
    copied = json.loads((tmp_path / "copy" / "m" / "seed0" / "metrics.json").read_text())
    assert copied["test"]["cue_reliance"] == want["reliance"]
    assert copied["lower_is_better"] == ["cue_reliance"]  # the report reads it the right way


def test_cue_reliance_refuses_other_data(tmp_path, tiny_recipe):
    make_folder(tmp_path / "data")
    tiny_recipe["data"] = {
        "name": "folder",
        "params": {"root": str(tmp_path / "data"), "num_annotators": 2},
    }
    write_run(tmp_path / "r", tiny_recipe, [(0, 0)])
    with pytest.raises(EsxError, match="has no spurious marker"):
        load_script("cue_reliance").reliance(tmp_path / "r")


def test_overlap_sums_hand_computed():
    truth = torch.zeros(3, 4, 4)
    truth[:, 0:2, 0:2] = 1  # a 2x2 nodule in every image
    pred = torch.zeros(3, 4, 4)
    pred[0, 0:2, 0:2] = 1  # exactly the nodule
    pred[1, 0, 0] = 1
    pred[1, 3, 0:3] = 1  # 1 of 4 marked pixels on the nodule
    # image 2: empty
    got = load_script("target_overlap").overlap_sums(pred, truth)
    assert got == {
        "n": 3.0,
        "empty": 1.0,
        "touches": 2.0,
        "mostly_outside": 1.0,
        "precision": 1.0 + 0.25,
        "recall": 1.0 + 0.25,
        "area": 8.0,
    }


def test_target_overlap_on_a_tiny_magi_run(tmp_path, tiny_recipe, capsys):
    tiny_recipe["aggregator"] = {"name": "magi", "params": {"gen_size": 16}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(tiny_recipe))
    res = CliRunner().invoke(
        app, ["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    mod = load_script("target_overlap")
    got = mod.overlap(tmp_path / "run", ["train"])["train"]
    assert set(got) == {"noisy", "generated"}
    n = got["noisy"]["n"]
    assert n > 0 and got["generated"]["n"] == n
    for s in got.values():
        assert 0 <= s["empty"] + s["touches"] <= n and 0 <= s["precision"] <= 1
    assert got["noisy"]["empty"] == 0  # an annotated positive has a mask to vote on
    mod.main([str(tmp_path / "run"), "--splits", "test"])
    assert "| test | generated |" in capsys.readouterr().out


def test_target_overlap_refuses_a_run_without_generator(tmp_path, tiny_recipe):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "recipe.yaml").write_text(yaml.safe_dump(tiny_recipe))
    with pytest.raises(EsxError, match="needs a MAGI run"):
        load_script("target_overlap").overlap(tmp_path / "r", ["train"])


def test_results_page_replaces_only_its_section(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "report.md").write_text("# Results\n\nnote\n\n## Classification\n\n| a |\n")
    page = tmp_path / "results.md"
    page.write_text("# Page\n<!-- generated: x -->\nold table\n<!-- end: x -->\n## History\nkept\n")
    mod = load_script("results_page")
    argv = ["results_page.py", str(runs), "--section", "x", "--page", str(page)]
    monkeypatch.setattr("sys.argv", argv)
    assert mod.main() == 0
    text = page.read_text()
    assert "old table" not in text and "#### Classification" in text and "note" in text
    assert text.startswith("# Page\n") and text.endswith("## History\nkept\n")
    monkeypatch.setattr("sys.argv", [*argv[:2], "--section", "missing", "--page", str(page)])
    with pytest.raises(SystemExit, match="no <!-- generated: missing -->"):
        mod.main()


def write_history(folder, exp, val_acc, val_auc, best_epoch) -> None:
    folder.mkdir(parents=True)
    with open(folder / "history.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["epoch", "train_pred", *(["train_exp"] if exp else []), "val_accuracy", "val_auc"]
        )
        for i, (acc, auc) in enumerate(zip(val_acc, val_auc, strict=True)):
            w.writerow([i + 1, 0.6, *([exp[i]] if exp else []), acc, auc])
    (folder / "metrics.json").write_text(json.dumps({"validation": {"best_epoch": best_epoch}}))


def test_selection_epochs_on_hand_made_histories(tmp_path, capsys):
    # Supervised run: the explanation loss halves at epoch 3 (0.4 -> 0.2); the classifier
    # leaves the constant 0.5 at epoch 2; chosen epoch 2, before the supervision acted.
    histories = {  # run: (explanation loss, val accuracy, val AUC, chosen epoch)
        "sup/seed0": ([0.4, 0.3, 0.2, 0.1], [0.5, 0.6, 0.7, 0.65], [0.5, 0.6, 0.7, 0.8], 2),
        "sup/seed1": ([0.4, 0.1, 0.1, 0.1], [0.5, 0.5, 0.7, 0.75], [0.7, 0.6, 0.7, 0.6], 4),
        "base/seed0": (None, [0.5, 0.6, 0.7, 0.7], [0.5, 0.6, 0.7, 0.7], 3),
    }
    for run, (exp, acc, auc, best) in histories.items():
        write_history(tmp_path / run, exp, acc, auc, best_epoch=best)
    mod = load_script("selection_epochs")
    assert mod.run_summary(tmp_path / "sup" / "seed0") == {
        "best": 2,
        "last": 4,
        "supervised": True,
        "acted": 3,
        "moved": 2,
        "late_rise": pytest.approx(0.3),
    }
    assert mod.run_summary(tmp_path / "base" / "seed0")["acted"] is None
    assert mod.main([str(tmp_path / "sup"), str(tmp_path / "base")]) == 0
    lines = capsys.readouterr().out.splitlines()
    # median chosen 3 (2-4); 1 of 2 chose the last; acted at 2.5 (2-3); 1 of 2 chose before it;
    # left 0.5 at 2.5 (2-3); AUC, epoch 1 to 4: (0.3 - 0.1) / 2, one of two rising
    assert (
        lines[2]
        == "| sup | 2 | 3 (2–4) | 1/2 | 2.5 (2–3) | 1/2 | 2.5 (2–3) | +0.100 (1/2 rising) |"
    )
    assert lines[3] == "| base | 1 | 3 (3–3) | 0/1 | - | - | 2 (2–2) | +0.200 (1/1 rising) |"
    assert mod.main([str(tmp_path / "none")]) == 2
    # A supervised run whose explanation loss never halves (the energy loss stays near 1).
    write_history(
        tmp_path / "energy" / "seed0",
        [0.9, 0.85, 0.8, 0.8],
        [0.5, 0.6, 0.7, 0.7],
        [0.5, 0.6, 0.7, 0.7],
        best_epoch=3,
    )
    run = mod.run_summary(tmp_path / "energy" / "seed0")
    assert run["supervised"] and run["acted"] is None
    assert mod.row_line("energy", [run]).split(" | ")[4:6] == ["1 not halved", "-"]


def test_nt_xent_against_its_formula():
    """SimCLR's loss, written out for each of the 2B views: -log of the partner's share of
    the softmax over the other 2B - 1 views."""
    ssl = load_script("ssl_pretrain")
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    terms = []
    for i in range(6):
        partner = (i + 3) % 6
        others = [j for j in range(6) if j != i]
        sims = torch.stack([z[i] @ z[j] / 0.5 for j in others])
        terms.append(-(z[i] @ z[partner] / 0.5 - torch.logsumexp(sims, 0)))
    assert torch.allclose(ssl.nt_xent(z1, z2, 0.5), torch.stack(terms).mean(), atol=1e-6)
    # views that match their partner and are orthogonal to the 4 others: -log(e^10 / (e^10 + 4))
    e = torch.eye(3)
    expected = torch.log1p(torch.tensor(4.0) * torch.exp(torch.tensor(-10.0)))
    assert torch.allclose(ssl.nt_xent(e, e, 0.1), expected, rtol=1e-2)  # float32 near 0


def test_augment_is_seeded_and_keeps_the_shape():
    ssl = load_script("ssl_pretrain")
    x = torch.randn(4, 1, 16, 16)
    a = ssl.augment(x, torch.Generator().manual_seed(1))
    b = ssl.augment(x, torch.Generator().manual_seed(1))
    c = ssl.augment(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)


def test_ssl_pretrain_writes_weights_a_recipe_loads(tmp_path, capsys):
    """A few steps end to end: the file holds the trunk under timm's names (no classifier),
    the esx backbone loads every one of them, and the sidecar records the loss curve."""
    from safetensors.torch import load_file

    from esx_timm import TimmBackbone, TimmParams

    ssl = load_script("ssl_pretrain")
    out = tmp_path / "w.safetensors"
    args = ["--out", str(out), "--arch", "test_resnet", "--images", "8", "--steps", "3"]
    assert ssl.main([*args, "--batch", "4"]) == 0
    state = load_file(str(out))
    info = json.loads((tmp_path / "w.safetensors.json").read_text())
    assert info["arch"] == "test_resnet" and len(info["loss"]) == 3
    assert info["phantom"] == {"data_seed": 1000, "split": "val", "images": 8}
    assert not any(k.startswith("fc.") for k in state)
    data = Phantom(PhantomParams(image_size=32), BuildContext(seed=0)).info
    bb = TimmBackbone(TimmParams(arch="test_resnet", weights=str(out)), BuildContext(data))
    mine = bb.model.state_dict()
    for k, v in state.items():
        assert torch.equal(mine[k], v), k
    with pytest.raises(SystemExit, match="safetensors"):
        ssl.main(["--out", str(tmp_path / "w.pt")])


def test_runs_write_the_cue_groups_as_cue_reliance_did_on_the_archived_runs(tmp_path):
    """The phantom's marker groups, as every run now computes them, equal the accuracies
    experiments/cue_reliance.py computed for all 265 archived runs of docs/run_metrics
    (the Table 1 grid and the confirmation): the formula it used is restated here as the
    oracle, and the runs' own code path is applied to their saved predictions."""
    import tarfile

    import numpy as np

    from esx.evaluation import regroup
    from esx.plugins import registry
    from esx.recipe import load_recipe

    for name in ("table1_n200.tar.gz", "confirm_n200.tar.gz"):
        with tarfile.open(ROOT / "docs" / "run_metrics" / name) as tar:
            tar.extractall(tmp_path, filter="data")
    runs = sorted(p.parent for p in tmp_path.rglob("predictions.csv"))
    assert len(runs) == 265
    for run in runs:
        got, section = regroup(run)
        preds = np.loadtxt(run / "predictions.csv", delimiter=",", skiprows=1)
        ids, y, p = preds[:, 0].astype(int), preds[:, 1].astype(int), preds[:, 3].astype(int)
        recipe = load_recipe(run / "recipe.yaml", registry())
        test = recipe.data.build(BuildContext(seed=recipe.seed)).split("test")
        agree = np.array([test.cue_present(i) for i in ids]) == y.astype(bool)
        assert got["accuracy_cue_agree"] == float(np.mean(p[agree] == y[agree]))
        assert got["accuracy_cue_conflict"] == float(np.mean(p[~agree] == y[~agree]))
        assert section["declared_by"] == "phantom"
        assert got["worst_group_accuracy"] == min(
            got["accuracy_cue_agree"], got["accuracy_cue_conflict"]
        )


def test_archive_runs_packs_finished_runs_deterministically(tmp_path):
    mod = load_script("archive_runs")
    sweep = tmp_path / "runs" / "curve"
    done = sweep / "magi" / "seed0_level=0"
    done.mkdir(parents=True)
    for name in ("metrics.json", "history.csv", "recipe.yaml", "last.safetensors"):
        (done / name).write_text(name)
    (sweep / "magi" / "seed1_level=0").mkdir()  # unfinished: no metrics.json
    (sweep / "magi" / "seed1_level=0" / "history.csv").write_text("epoch")
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    assert mod.write(sweep, first) == 1
    with tarfile.open(first) as tar:
        assert tar.getnames() == [
            "curve/magi/seed0_level=0/metrics.json",
            "curve/magi/seed0_level=0/history.csv",
            "curve/magi/seed0_level=0/recipe.yaml",
        ]
        out = tmp_path / "unpacked"
        tar.extractall(out, filter="data")
    assert (out / "curve/magi/seed0_level=0/metrics.json").read_text() == "metrics.json"
    (done / "metrics.json").touch()  # a newer time alone changes nothing
    mod.write(sweep, second)
    assert first.read_bytes() == second.read_bytes()


def test_archive_runs_refuses_a_folder_without_finished_runs(tmp_path):
    mod = load_script("archive_runs")
    with pytest.raises(SystemExit, match="no finished run"):
        mod.write(tmp_path, tmp_path / "a.tar.gz")
    with pytest.raises(SystemExit, match="is not a folder"):
        mod.write(tmp_path / "missing", tmp_path / "a.tar.gz")


def _cell_run(root, row, name, acc, wg, extra=None, loss=None):
    folder = root / row / name
    folder.mkdir(parents=True)
    level = float(name.split("level=")[1].split("_")[0])
    (folder / "recipe.yaml").write_text(yaml.safe_dump({"data": {"params": {"level": level}}}))
    m = {"test": {"accuracy": acc, "worst_group_accuracy": wg}, "aggregator": extra or {}}
    (folder / "metrics.json").write_text(json.dumps(m))
    if loss is not None:
        (folder / "history.csv").write_text(f"epoch,train_pred\n1,9.0\n2,{loss}\n")


def test_magi_cell_pairs_runs_by_name_and_filters_the_level(tmp_path):
    mod = load_script("magi_cell")
    names = ["seed0_level=0_draw=0", "seed1_level=0_draw=0", "seed2_level=0_draw=0"]
    gen = [
        {
            "generation": {"noisy": {"mse": 0.3}, "generated": {"mse": 0.1 * i}},
            "imputation": {"l1_generated": 0.1, "l1_copy_consensus": 0.5},
            "annotators": [{"area_vs_truth": 1.0}, {"area_vs_truth": 0.01 * i}],
        }
        for i in range(3)
    ]
    for i, name in enumerate(names):
        _cell_run(tmp_path, "magi", name, 0.50 + 0.01 * i, 0.4, gen[i], loss=2.0 + i)
        _cell_run(tmp_path, "consensus", name, 0.50, 0.4 + 0.01 * i, loss=1.0)
        _cell_run(tmp_path, "baseline", name, 0.60, 0.5)
    # another level's runs, which must not be read: 0 is not 0.25
    _cell_run(tmp_path, "magi", "seed0_level=0.25_draw=0", 0.9, 0.9)
    out = mod.table(tmp_path, "data.params.level=0", "magi", "consensus", "baseline", "oracle")
    # magi - consensus: differences 0, 1, 2 points: mean 1, t(0.975, 2) * 1 / sqrt(3)
    half = 4.302652729911275 / 3**0.5
    assert f"+1.00 [{1 - half:+.2f}, {1 + half:+.2f}] (2 of 3 above)" in out
    assert "worst_group_accuracy (points) | -1.00" in out  # 0, -1, -2 points
    assert "− baseline, test accuracy (points) | -9.00" in out
    assert "observed 0.3, generated 0.1 |" in out
    assert "L1 copying the vote | -0.400 [-0.400, -0.400] (0 of 3 above)" in out
    assert "| 0.00–0.02, 1.00–1.00 |" in out
    assert "magi 3.00 (2.00–4.00); consensus 1.00 (1.00–1.00) |" in out
    assert "(3 runs)" in out
    with pytest.raises(SystemExit, match="no finished run"):
        mod.table(tmp_path, "data.params.level=1", "magi", "consensus", "baseline", "oracle")


def test_magi_cell_compares_with_rows_of_another_folder(tmp_path):
    """--others: the row of one sweep folder against the rows of another, paired by name,
    with the first epoch's explanation loss of each."""
    mod = load_script("magi_cell")
    side, curve = tmp_path / "side", tmp_path / "curve"
    for i in range(2):
        name = f"seed{i}_level=0_draw=0"
        _cell_run(side, "w", name, 0.70 + 0.02 * i, 0.6)
        _cell_run(curve, "w", name, 0.60, 0.6)
        _cell_run(curve, "c", name, 0.70, 0.6)
        (side / "w" / name / "history.csv").write_text(
            f"epoch,train_pred,train_exp\n1,2.3,{0.01 + i}\n"
        )
        (curve / "w" / name / "history.csv").write_text("epoch,train_pred,train_exp\n1,2.3,0.03\n")
    _cell_run(side, "c", "seed0_level=0_draw=0", 0.0, 0.0)  # the side folder's own: not read
    out = mod.table(side, "data.params.level=0", "w", "w", "c", "o", curve)
    # side w - curve w: 10 and 12 points; side w - curve c: 0 and 2 points
    assert f"| − w in {curve}, test accuracy (points) | +11.00 [" in out
    assert f"| − c in {curve}, test accuracy (points) | +1.00 [" in out
    assert (
        f"| explanation loss, first epoch: mean (range) | w 0.51 (0.01–1.01); w in {curve} 0.03"
        in out
    )
    with pytest.raises(SystemExit, match="no finished run"):
        mod.table(side, "data.params.level=0", "w", "missing", "c", "o", curve)


def test_magi_cell_gives_learned_weights_in_the_order_of_the_slots_areas(tmp_path):
    mod = load_script("magi_cell")
    for i in range(2):
        slots = [  # listed out of area order: the table sorts by area
            {"area_vs_truth": 1.0, "weight": 0.6 + 0.1 * i},
            {"area_vs_truth": 0.02, "weight": 0.4 - 0.1 * i},
        ]
        _cell_run(tmp_path, "w", f"seed{i}_level=0.5_draw=0", 0.5, 0.4, {"annotators": slots})
        uniform = [{"area_vs_truth": 1.0, "weight": 0.5}, {"area_vs_truth": 0.02, "weight": 0.5}]
        _cell_run(tmp_path, "c", f"seed{i}_level=0.5_draw=0", 0.5, 0.4, {"annotators": uniform})
    out = mod.table(tmp_path, "data.params.level=0.5", "w", "c", "b", "o")
    assert (
        "| slots' learned weight, in the same order (range over runs) | 0.300–0.400, 0.600–0.700 |"
        in out
    )
    # uniform weights (consensus targets) are not drawn
    assert "learned weight" not in mod.table(tmp_path, "data.params.level=0.5", "c", "w", "b", "o")


def test_vote_kinds_hand_computed():
    truth = torch.zeros(4, 4, 4)
    truth[:, 0:2, 0:2] = 1  # a 2x2 object in every image
    voted = torch.zeros(4, 4, 4)
    # image 0: empty
    voted[1, 3, 3] = 1  # off the object only (a decoy)
    voted[1, 0, 0] = 1  # and 1 of its 4 pixels: under half
    voted[2, 0:2, 0:2] = 1  # the object exactly
    voted[3, 0, 0:2] = 1  # half the object
    voted[3, 3, 3] = 1  # and a pixel outside it
    assert load_script("vote_kinds").kinds(voted, truth).tolist() == [0, 1, 2, 3]


def test_vote_kinds_counts_the_vote_of_a_tiny_panel(capsys, monkeypatch, tmp_path):
    recipe = tmp_path / "panel.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "base": str(ROOT / "recipes" / "noise_curve" / "consensus.yaml"),
                "data": {"params": {"of": {"params": {"n_train": 40, "n_val": 10, "n_test": 10}}}},
            }
        )
    )
    mod = load_script("vote_kinds")
    # level 1: every annotator marks the decoy, so every vote is off the truth
    assert mod.shares(str(recipe), ["data.params.level=1"], 0, "train") == [0, 1, 0, 0]
    # level 0: every annotator draws the truth, so every vote is the truth alone
    assert mod.shares(str(recipe), ["data.params.level=0"], 0, "train") == [0, 0, 1, 0]
    monkeypatch.setattr(
        "sys.argv", ["vote_kinds", str(recipe), "data.params.level=0", "--draws", "0-1"]
    )
    mod.main()
    out = capsys.readouterr().out
    assert "| 1 | 0.000 | 0.000 | 1.000 | 0.000 |" in out


def _soft_batch():
    truth = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]]).expand(2, 1, 2, 2)
    distractors = torch.tensor([[[0, 1], [0, 1]]], dtype=torch.uint8).expand(2, 1, 2, 2)
    valid = torch.tensor([[True, False], [False, False]])  # image 1: nobody annotated
    return Batch(
        image=torch.zeros(2, 1, 2, 2),
        label=torch.tensor([0, 1]),
        masks=torch.zeros(2, 2, 2, 2),
        mask_valid=valid,
        truth=truth,
        extras={"distractors": distractors},
    )


@pytest.mark.parametrize(
    ("truth", "distractor", "want"),
    [(0.68, 0.32, [[0.68, 1.0], [0.0, 0.32]]), (1.0, 1.0, [[1.0, 1.0], [0.0, 1.0]])],
)
def test_soft_target_hand_computed(truth, distractor, want):
    mod = load_script("soft_target")
    agg = mod.SoftTruth(mod.SoftTruthParams(truth=truth, distractor=distractor), context())
    t = agg(_soft_batch()).targets
    assert torch.allclose(t.masks[0, 0], torch.tensor(want))
    assert t.weights.tolist() == [[1.0], [0.0]]  # only annotated images are supervised


def test_soft_target_refuses_data_without_distractors_or_truth():
    mod = load_script("soft_target")
    params = mod.SoftTruthParams(truth=0.68, distractor=0.32)
    with pytest.raises(EsxError, match="has none"):
        mod.SoftTruth(params, context(has_truth=False))
    batch = _soft_batch()
    batch.extras.clear()
    with pytest.raises(EsxError, match="no distractors extra"):
        mod.SoftTruth(params, context())(batch)


def test_soft_target_trains_through_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setattr("esx.plugins._REGISTRY", build_registry())  # the test's own
    recipe = tmp_path / "soft.yaml"
    small = {"n_train": 40, "n_val": 10, "n_test": 10}
    recipe.write_text(
        yaml.safe_dump(
            {
                "base": str(ROOT / "experiments" / "soft_target" / "soft.yaml"),
                "data": {"params": {"level": 0.5, "of": {"params": small}}},
                "train": {"epochs": 1},
            }
        )
    )
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as done:
        load_script("soft_target").main(["run", str(recipe), "--out", str(out)])
    assert done.value.code == 0
    resolved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert resolved["aggregator"] == {
        "name": "soft_truth",
        "params": {"truth": 0.68, "distractor": 0.32},
    }
    assert "accuracy" in json.loads((out / "metrics.json").read_text())["test"]


def test_target_values_region_sums_hand_computed():
    truth = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])
    distractor = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]])
    target = torch.tensor([[[0.6, 0.8], [0.4, 0.2]], [[1.0, 0.0], [0.0, 0.0]]])
    got = load_script("target_values").region_sums(target, truth, distractor)
    # image 0: truth (0.6, 0.8), the distractor's own pixel 0.4, the rest 0.2; total 2.0
    # image 1: truth 1.0, distractor 0.0, rest (0, 0); total 1.0
    want = {
        "n": 2.0,
        "truth_value": 0.7 + 1.0,
        "truth_share": 1.4 / 2.0 + 1.0,
        "distractor_value": 0.4 + 0.0,
        "distractor_share": 0.4 / 2.0 + 0.0,
        "rest_value": 0.2 + 0.0,
        "rest_share": 0.2 / 2.0 + 0.0,
    }
    assert got == pytest.approx(want)


def test_target_values_versus_a_row_hand_computed(tmp_path, monkeypatch, capsys):
    mod = load_script("target_values")
    shares = {"s0": 0.1, "s1": 0.2, "s2": 0.3}
    for name, (mine, vote) in {"s0": (0.80, 0.79), "s1": (0.80, 0.78), "s2": (0.80, 0.76)}.items():
        for row, acc in (("magi", mine), ("consensus", vote)):
            (tmp_path / row / name).mkdir(parents=True)
            (tmp_path / row / name / "metrics.json").write_text(
                json.dumps({"test": {"accuracy": acc}})
            )
    fake = {f"{r}_{k}": 0.0 for r in mod.REGIONS for k in ("value", "share")}
    monkeypatch.setattr(
        mod, "values", lambda run, split: {**fake, "n": 5.0, "truth_share": shares[run.name]}
    )
    assert mod.gain(tmp_path / "magi" / "s2", "consensus") == pytest.approx(4.0)
    mod.main([str(tmp_path / "magi" / n) for n in shares] + ["--versus", "consensus"])
    out = capsys.readouterr().out
    assert "| +1.0 |" in out and "| +2.0 |" in out and "| +4.0 |" in out
    # shares (0.1, 0.2, 0.3) against gains (1, 2, 4): r = 0.3 / sqrt(0.02 × 42/9) = 0.98
    assert "over 3 runs: Pearson r 0.98, Spearman 1.00" in out
    (tmp_path / "consensus" / "s1" / "metrics.json").unlink()
    with pytest.raises(SystemExit, match="no finished pair to compare in row 'consensus'"):
        mod.main([str(tmp_path / "magi" / "s1"), "--versus", "consensus"])


def test_target_values_on_a_tiny_magi_run(tmp_path, tiny_recipe, capsys):
    tiny_recipe["aggregator"] = {"name": "magi", "params": {"gen_size": 16, "targets": "weighted"}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(tiny_recipe))
    res = CliRunner().invoke(
        app, ["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    mod = load_script("target_values")
    got = mod.values(tmp_path / "run")
    assert got["n"] > 0
    shares = [got[f"{r}_share"] for r in mod.REGIONS]
    assert sum(shares) == pytest.approx(1.0, abs=1e-4)  # soft masks: never all zero
    assert all(0 <= got[f"{r}_value"] <= 1 for r in mod.REGIONS)
    # each slot alone: the weights' shares sum to 1 and, the weights being the same on
    # every image, the weighted target's value on a region is the weights' mix of theirs
    u = sum(1 for k in got if k.endswith(" weight"))
    assert (
        u == json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]["num_annotators"]
    )
    assert sum(got[f"slot{k} weight"] for k in range(u)) == pytest.approx(1.0)
    for r in mod.REGIONS:
        mix = sum(got[f"slot{k} weight"] * got[f"slot{k} {r}_value"] for k in range(u))
        assert got[f"{r}_value"] == pytest.approx(mix, abs=1e-5)
    mod.main([str(tmp_path / "run"), "--slots"])
    out = capsys.readouterr().out
    assert f"| {tmp_path / 'run'} | {got['n']:.0f} |" in out
    assert f"| {tmp_path / 'run'} | {u - 1} | {got[f'slot{u - 1} weight']:.3f} |" in out
    tiny_recipe["aggregator"] = {"name": "consensus"}
    (tmp_path / "run" / "recipe.yaml").write_text(yaml.safe_dump(tiny_recipe))
    with pytest.raises(SystemExit, match="needs a MAGI run"):
        mod.main([str(tmp_path / "run")])
