"""Every registered aggregator, loss and explainer: a run interrupted after its first epoch
and resumed ends exactly like an uninterrupted one (esx.testing.check_resume)."""

from __future__ import annotations

import pytest

from esx.plugins import build_registry
from esx.testing import check_resume

REGISTRY = build_registry()


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
    check_resume(tmp_path, _components(family, name, tmp_path / "work"), REGISTRY)
