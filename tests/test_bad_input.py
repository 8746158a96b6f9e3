"""Every bad input gets one clear message, a non-zero exit, no traceback, nothing half-written."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from esx.cli import app

from conftest import SIZE, _png, make_folder


def recipe(tmp_path, root, **data_params):
    r = {
        "data": {
            "name": "folder",
            "params": {"root": str(root), "num_annotators": 2, **data_params},
        },
        "backbone": {"name": "timm", "params": {"arch": "test_resnet"}},
        "explainer": {"name": "gradcam"},
        "aggregator": {"name": "consensus"},
        "loss": {"name": "gradia"},
        "train": {"epochs": 1, "batch_size": 4},
        "eval": {"overlays": 0},
    }
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(r))
    return p


def run(tmp_path, recipe_path, out=None):
    out = out or tmp_path / "run"
    res = CliRunner().invoke(
        app, ["run", str(recipe_path), "--out", str(out), "--quiet"], env={"COLUMNS": "200"}
    )
    return res, out


def test_valid_folder_dataset_runs(tmp_path):
    root = make_folder(tmp_path / "data")
    res, out = run(tmp_path, recipe(tmp_path, root))
    assert res.exit_code == 0, res.output
    assert (out / "metrics.json").is_file()


def _mutate_size(root):
    _png(root / "masks" / "train1_0.png", np.zeros((SIZE + 4, SIZE)))
    return "train1_0.png", "mask is 36x32 but its image is 32x32"


def _mutate_values(root):
    _png(root / "masks" / "train1_0.png", np.full((SIZE, SIZE), 7))
    return "train1_0.png", "found value 7"


def _mutate_nan(root):
    os.remove(root / "images" / "train0.png")
    arr = np.zeros((SIZE, SIZE), np.float32)
    arr[3, 3] = np.nan
    np.save(root / "images" / "train0.npy", arr)
    return "train0.npy", "NaN"


def _mutate_unannotated(root):
    for p in (root / "masks").glob("train1_*"):
        p.unlink()
    return "'train1'", "allow_unannotated"


def _mutate_no_annotation_in_train(root):
    for p in (root / "masks").glob("train*"):
        p.unlink()
    return "no training image has any annotation", "masks/", {"allow_unannotated": True}


def _mutate_too_many_annotators(root):
    _png(root / "masks" / "train1_5.png", np.zeros((SIZE, SIZE)))
    return "train1_5.png", "num_annotators"


def _mutate_corrupt(root):
    (root / "images" / "val0.png").write_bytes(b"\x89PNG not really")
    return "val0.png", "cannot read"


def _mutate_missing_root(root):
    import shutil

    shutil.rmtree(root)
    return "no samples.csv", "data.params.root"


def _mutate_bad_label(root):
    text = (root / "samples.csv").read_text().replace("train0,0,train", "train0,2,train")
    (root / "samples.csv").write_text(text)
    return "samples.csv:2", "must be 0 or 1"


@pytest.mark.parametrize(
    "mutate",
    [
        _mutate_size,
        _mutate_values,
        _mutate_nan,
        _mutate_unannotated,
        _mutate_no_annotation_in_train,
        _mutate_too_many_annotators,
        _mutate_corrupt,
        _mutate_missing_root,
        _mutate_bad_label,
    ],
    ids=lambda f: f.__name__[8:],
)
def test_bad_data(tmp_path, mutate):
    root = make_folder(tmp_path / "data")
    where, what, *params = mutate(root)
    res, out = run(tmp_path, recipe(tmp_path, root, **(params[0] if params else {})))
    assert res.exit_code == 2, res.output
    assert where in res.output and what in res.output, res.output
    assert "Traceback" not in res.output
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize(
    "edit, needle",
    [
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"train": {"batch_size": -2}}, "train.batch_size"),
        ({"data": {"name": "phantom", "params": {"n_train": 0}}}, "data.params.n_train"),
        ({"data": {"name": "phantom", "params": {"design": "papr"}}}, "data.params.design"),
        ({"extra_key": 1}, "extra_key"),
    ],
)
def test_bad_sizes_and_keys(tmp_path, edit, needle):
    r = yaml.safe_load(recipe(tmp_path, tmp_path).read_text())
    for k, v in edit.items():
        r[k] = {**r.get(k, {}), **v} if isinstance(v, dict) else v
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(r))
    res, out = run(tmp_path, p)
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    root = make_folder(tmp_path / "data")
    res, _ = run(tmp_path, recipe(tmp_path, root), out=locked / "run")
    assert res.exit_code == 2 and "cannot write" in res.output


def test_output_path_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    root = make_folder(tmp_path / "data")
    res, _ = run(tmp_path, recipe(tmp_path, root), out=blocker / "run")
    assert res.exit_code == 2 and "cannot write to run folder" in res.output
    assert "Traceback" not in res.output


def test_a_yaml_bomb_is_refused_at_once_with_memory_flat(tmp_path, registry):
    """Nine levels of nine-fold aliases would expand to 9**9 values: refused from the node
    tree, before anything is expanded, in well under a second."""
    import time
    import tracemalloc

    from esx.errors import RecipeError
    from esx.recipe import load_recipe

    lines, prev = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'], "a"
    for c in "bcdefghi":
        lines.append(f"{c}: &{c} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = c
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(RecipeError, match="aliases expand to more than 20,000 values"):
        load_recipe(bomb, registry)
    took = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert took < 1.0 and peak < 20 * 2**20, (took, peak)
    loop = tmp_path / "loop.yaml"
    loop.write_text("a: &a [1, *a]\n")
    with pytest.raises(RecipeError, match="refers to itself"):
        load_recipe(loop, registry)
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 60 + "]" * 60 + "\n")
    with pytest.raises(RecipeError, match="nested more than 40 levels"):
        load_recipe(deep, registry)


def test_anchors_within_bounds_still_work(tmp_path, registry):
    from esx.recipe import load_recipe

    recipe = tmp_path / "anchored.yaml"
    recipe.write_text(
        "version: 1\n"
        "data: {name: phantom, params: {design: paper, image_size: 32}}\n"
        "backbone: {name: timm, params: {arch: test_resnet}}\n"
        "explainer: &ex {name: gradcam}\n"
        "aggregator: {name: consensus}\n"
        "loss: {name: gradia}\n"
        "eval: {explainer: *ex}\n"
    )
    assert load_recipe(recipe, registry).eval.explainer.name == "gradcam"
