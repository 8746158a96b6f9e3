"""esx.testing: the contract checks pass for every registered component and catch breakage."""

from __future__ import annotations

import pytest
import torch

from esx import testing
from esx.interfaces import Aggregator, AggregatorOutput, Params
from esx.plugins import build_registry
from esx.types import Targets

from conftest import make_folder  # noqa: E402

REG = build_registry()


@pytest.mark.parametrize("name", REG.names("aggregator"))
def test_every_aggregator_keeps_the_contract(name):
    params = {"gen_size": 16, "width": 4} if name == "magi" else None
    testing.check_aggregator(REG.get("aggregator", name), params, registry=REG)


def test_magi_with_crops_keeps_the_contract():
    testing.check_aggregator(
        REG.get("aggregator", "magi"), {"gen_size": 16, "width": 4, "crop": True}, registry=REG
    )


@pytest.mark.parametrize("name", REG.names("loss"))
def test_every_loss_keeps_the_contract(name):
    testing.check_loss(REG.get("loss", name))


@pytest.mark.parametrize("name", REG.names("explainer"))
def test_every_explainer_keeps_the_contract(name):
    testing.check_explainer(REG.get("explainer", name))


@pytest.mark.parametrize("name", REG.names("backbone"))
def test_every_backbone_keeps_the_contract(name):
    testing.check_backbone(
        REG.get("backbone", name), {"arch": "test_resnet", "zero_init_last": False}
    )


DATASET_PARAMS = {
    "phantom": lambda tmp: {"image_size": 32, "n_train": 4, "n_val": 4, "n_test": 4},
    "folder": lambda tmp: {"root": str(make_folder(tmp)), "num_annotators": 2},
}


@pytest.mark.parametrize("name", REG.names("dataset"))
def test_every_dataset_keeps_the_contract(name, tmp_path):
    assert name in DATASET_PARAMS, f"add tiny params for dataset {name!r} to this test"
    testing.check_dataset(REG.get("dataset", name), DATASET_PARAMS[name](tmp_path))


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
