"""An example esx plugin: one aggregator and one loss, registered through the `esx` entry point."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

import esx
from esx.interfaces import Aggregator, AggregatorOutput, Params, PixelLoss
from esx.types import Batch, Targets


class SoftVoteParams(Params):
    sharpen: float = Field(1.0, gt=0, description="raise the vote share to this power")


class SoftVote(Aggregator):
    """The share of valid masks that mark each pixel, as a soft target ``(B, 1, H, W)``."""

    Params = SoftVoteParams

    def forward(self, batch: Batch) -> AggregatorOutput:
        valid = batch.mask_valid.to(batch.masks.dtype)
        n = valid.sum(1).clamp_min(1)[:, None, None, None]
        share = (batch.masks * valid[..., None, None]).sum(1, keepdim=True) / n
        weights = batch.annotated.to(share.dtype)[:, None]
        return AggregatorOutput(Targets(masks=share**self.params.sharpen, weights=weights))


class SquaredError(PixelLoss):
    """Squared error between the map and each target, per pixel."""

    Params = Params

    def pixel_loss(self, maps: Tensor, target: Tensor) -> Tensor:
        return (maps - target).pow(2)


@esx.hookimpl
def register_aggregators(register):
    register("soft_vote", SoftVote)


@esx.hookimpl
def register_losses(register):
    register("squared_error", SquaredError)


__all__ = ["SoftVote", "SquaredError"]
