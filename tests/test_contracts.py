"""Contract tests over the registry: every aggregator with every loss, two steps each."""

from __future__ import annotations

import pytest
import torch

from esx.plugins import build_registry
from esx.recipe import validate_recipe
from esx.trainer import Trainer

from conftest import make_batch

REG = build_registry()
AGGREGATORS = REG.names("aggregator")
LOSSES = REG.names("loss")


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_every_aggregator_with_every_loss(aggregator, loss, tiny_recipe, tmp_path):
    tiny_recipe["aggregator"] = {"name": aggregator}
    tiny_recipe["loss"] = {"name": loss}
    t = Trainer(validate_recipe(tiny_recipe, REG), REG, tmp_path)
    before = [p.detach().clone() for p in t.c.backbone.parameters()]
    for seed in range(2):
        logs = t.step(make_batch(b=4, u=4, size=64, seed=seed))
        assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    after = t.c.backbone.parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    out = t.c.aggregator(make_batch(b=4, u=4, size=64).to(t.device))
    tg = out.targets
    assert tg.masks.min() >= 0 and tg.masks.max() <= 1
    sums = tg.weights.sum(1)
    assert torch.allclose(sums[tg.supervised], torch.ones_like(sums[tg.supervised]))
