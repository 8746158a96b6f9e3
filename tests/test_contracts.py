"""Registry-wide contracts: every registered component keeps its family's rules.

Each component is built from its own ``example_params`` (no test here names a
component), checked with ``esx.testing``, and every aggregator trains with
every loss for two steps.
"""

from __future__ import annotations

import pytest
import torch

from esx import testing
from esx.interfaces import Aggregator, AggregatorOutput, Params
from esx.plugins import build_registry
from esx.recipe import validate_recipe
from esx.testing import tiny_batch
from esx.trainer import Trainer
from esx.types import Targets

REG = build_registry()
CHECKS = {
    "aggregator": lambda cls, p: testing.check_aggregator(cls, p, registry=REG),
    "loss": testing.check_loss,
    "explainer": testing.check_explainer,
    "backbone": testing.check_backbone,
    "dataset": testing.check_dataset,
}
EVERY = [(family, name) for family in CHECKS for name in REG.names(family)]


@pytest.mark.parametrize("family, name", EVERY, ids=[f"{f}-{n}" for f, n in EVERY])
def test_every_component_keeps_its_family_contract(family, name, tmp_path):
    cls = REG.get(family, name)
    CHECKS[family](cls, cls.example_params(tmp_path))


def _spec(family: str, name: str, tmp_path) -> dict:
    return {"name": name, "params": REG.get(family, name).example_params(tmp_path)}


@pytest.mark.parametrize("loss", REG.names("loss"))
@pytest.mark.parametrize("aggregator", REG.names("aggregator"))
def test_every_aggregator_with_every_loss(aggregator, loss, tiny_recipe, tmp_path):
    tiny_recipe["aggregator"] = _spec("aggregator", aggregator, tmp_path)
    tiny_recipe["loss"] = _spec("loss", loss, tmp_path)
    if REG.get("loss", loss).needs_input_gradient:  # rrr: the explainer that can feed it
        grads = [n for n in REG.names("explainer") if REG.get("explainer", n).input_gradient]
        tiny_recipe["explainer"] = _spec("explainer", grads[0], tmp_path)
    t = Trainer(validate_recipe(tiny_recipe, REG), tmp_path)
    before = [p.detach().clone() for p in t.c.backbone.parameters()]
    for seed in range(2):
        logs = t.step(tiny_batch(b=4, annotators=4, size=64, seed=seed))
        assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    after = t.c.backbone.parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    tg = t.c.aggregator(tiny_batch(b=4, annotators=4, size=64).to(t.rt.device)).targets
    assert tg.masks.min() >= 0 and tg.masks.max() <= 1
    sums = tg.weights.sum(1)
    assert torch.allclose(sums[tg.supervised], torch.ones_like(sums[tg.supervised]))


class _Broken(Aggregator):
    """Supervises images nobody annotated, with weights that do not sum to 1."""

    Params = Params

    def forward(self, batch):
        b = batch.masks.shape[0]
        return AggregatorOutput(
            Targets(torch.zeros(b, 1, *batch.masks.shape[-2:]), torch.full((b, 1), 0.5))
        )


def test_check_catches_a_broken_aggregator():
    with pytest.raises(AssertionError, match="sum to 1"):
        testing.check_aggregator(_Broken, registry=REG)


def test_tiny_backbone_keeps_the_backbone_contract():
    testing.check_backbone(testing.TinyBackbone)


def test_every_builtin_parameter_is_described():
    """`esx plugins NAME` shows a description for every parameter of esx's own components."""
    missing = [
        f"{family} {name}: {param}"
        for family in CHECKS
        for name in REG.names(family)
        if REG.entry(family, name).package == "esx"
        for param, field in REG.get(family, name).Params.model_fields.items()
        if not field.description
    ]
    assert missing == []
