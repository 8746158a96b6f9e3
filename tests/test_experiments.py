"""The experiment scripts that the docs quote, on tiny hand-made runs."""

from __future__ import annotations

import csv
import importlib.util

import pytest
import yaml

from esx.errors import EsxError
from esx_phantom.dataset import Phantom, PhantomParams

from conftest import ROOT


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
    test = Phantom(PhantomParams(**tiny_recipe["data"]["params"])).split("test")
    labels = [int(test.labels[i]) for i in range(40)]
    cues = [int(test.cue_present(i)) for i in range(40)]
    preds = cues if follows == "marker" else labels
    write_run(tmp_path / "m" / "seed0", tiny_recipe, zip(labels, preds, strict=True))
    mod = load_script("cue_reliance")
    got = mod.reliance(tmp_path / "m" / "seed0")
    agree = sum(c == y for c, y in zip(cues, labels, strict=True))
    if follows == "marker":  # right exactly where marker and label agree
        assert got == {"agree": 1.0, "conflict": 0.0, "accuracy": agree / 40, "gap": 1.0}
    else:
        assert got == {"agree": 1.0, "conflict": 1.0, "accuracy": 1.0, "gap": 0.0}
    mod.main([str(tmp_path / "m")])
    assert "| 1 |" in capsys.readouterr().out


def test_cue_reliance_refuses_other_data(tmp_path, tiny_recipe):
    tiny_recipe["data"] = {"name": "folder", "params": {"root": str(tmp_path / "nowhere")}}
    write_run(tmp_path / "r", tiny_recipe, [(0, 0)])
    with pytest.raises(EsxError, match="has no spurious marker"):
        load_script("cue_reliance").reliance(tmp_path / "r")
