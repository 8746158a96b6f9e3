"""Every registered aggregator, loss and explainer: a run interrupted after its first epoch
and resumed ends exactly like an uninterrupted one (esx.testing.check_resume)."""

from __future__ import annotations

import pytest

from esx.plugins import build_registry
from esx.recipe import merge
from esx.testing import check_resume

REGISTRY = build_registry()
#: the run each component joins: the phantom at 64 px (its annotators' masks differ there,
#: so a target drawn differently shows), timm's test ResNet, Grad-CAM, the consensus, GRADIA
RECIPE = {
    "version": 1,
    "seed": 0,
    "data": {
        "name": "phantom",
        "params": {"design": "paper", "image_size": 64, "n_train": 8, "n_val": 4, "n_test": 4},
    },
    "backbone": {"name": "timm", "params": {"arch": "test_resnet", "zero_init_last": False}},
    "explainer": {"name": "gradcam"},
    "aggregator": {"name": "consensus"},
    "loss": {"name": "gradia"},
    "train": {"batch_size": 4, "lr": 1e-3, "eval_batch_size": 4},
    "eval": {"overlays": 0},
}


def _cases() -> list[tuple[str, str]]:
    return [
        (family, name)
        for family in ("aggregator", "loss", "explainer")
        for name in sorted(REGISTRY.names(family))
    ]


def _components(family: str, name: str, tmp_path) -> dict:
    cls = REGISTRY.get(family, name)
    spec = {"name": name, "params": cls.example_params(tmp_path)}
    if family == "explainer" and not cls.differentiable:  # it only explains at evaluation
        return {"eval": {"explainer": spec}}
    out = {family: spec}
    if family == "loss" and getattr(cls, "needs_input_gradient", False):
        out["explainer"] = {"name": "input_gradient"}
    if family == "explainer" and cls.input_gradient:
        out["loss"] = {"name": "rrr"}
    return out


@pytest.mark.parametrize("family, name", _cases())
def test_every_component_resumes_exactly(tmp_path, family, name):
    recipe = merge(RECIPE, _components(family, name, tmp_path / "work"))
    check_resume(tmp_path, recipe, REGISTRY)
