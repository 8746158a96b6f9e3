"""Every recipe under recipes/ trains one tiny step and evaluates, so a recipe cannot rot:
its own components, parameters, layers and losses, with only the sizes overridden (tiny
images and splits, one epoch of one batch; LIDC-IDRI's readers from a tiny database the
tests write). The recipes' bases (files starting with ``_``) are covered through them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from esx.launch import train
from esx.recipe import load_recipe
from esx_lidc_readers.testing import write_database

from conftest import ROOT

RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if not p.name.startswith("_"))

#: per dataset: the parameters that make it tiny
TINY = {
    "phantom": {"image_size": 32, "n_train": 4, "n_val": 4, "n_test": 4},
    "decoy_mnist": {"n_train": 10, "n_val": 10, "n_test": 10},
    "lidc_readers": {"image_size": 32, "crop": 32, "n_train": 4, "n_val": 2, "n_test": 2},
    "folder": {},
}


@pytest.fixture(scope="module")
def lidc_db(tmp_path_factory) -> Path:
    return write_database(tmp_path_factory.mktemp("lidc") / "lidc.sqlite")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        both = isinstance(v, dict) and isinstance(out.get(k), dict)
        out[k] = _merge(out[k], v) if both else v
    return out


def _raw(path: Path) -> dict:
    """The recipe as YAML gives it, its bases merged (enough to read its dataset's name)."""
    data = yaml.safe_load(path.read_text())
    if "base" in data:
        return _merge(_raw(path.parent / data.pop("base")), data)
    return data


def tiny_sets(path: Path, db: Path, cache: Path) -> list[str]:
    raw = _raw(path)
    data = raw["data"]
    where, name = "data", data["name"]
    if name == "folder" and data.get("fallback"):  # the prepared folder is absent here
        where, name = "data.fallback", data["fallback"]["name"]
    if name == "panel":  # a simulated panel around another dataset: size that one
        where, name = "data.params.of", data["params"]["of"]["name"]
    sizes = dict(TINY[name])
    if name == "lidc_readers":
        sizes |= {"database": str(db), "cache_dir": str(cache)}
    batch = sizes.get("n_train", 4)
    sets = [f"{where}.params.{k}={v}" for k, v in sizes.items()]
    sets += ["train.epochs=1", f"train.batch_size={batch}", "train.eval_batch_size=8"]
    sets += ["eval.overlays=2", "device=cpu"]
    if raw["aggregator"]["name"] == "magi":
        sets += ["aggregator.params.gen_size=16", "aggregator.params.width=4"]
        if (raw["aggregator"].get("params") or {}).get("pretrain_steps"):
            sets.append("aggregator.params.pretrain_steps=2")
    if (raw["backbone"].get("params") or {}).get("weights"):
        sets.append("backbone.params.weights=null")
    return sets


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_the_recipe_trains_a_step_and_evaluates(path, registry, lidc_db, tmp_path):
    recipe = load_recipe(path, registry, tiny_sets(path, lidc_db, tmp_path / "cache"))
    out = tmp_path / "run"
    out.mkdir()
    metrics = train(recipe, out, source=str(path), console=None)
    assert 0 <= metrics["test"]["accuracy"] <= 1
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["run"]["recipe"] == str(path)
    assert (out / "report.html").is_file() and (out / "best.safetensors").is_file()
