"""An example esx plugin: one aggregator and one loss, registered through the `esx` entry point."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor

import esx
from esx.interfaces import Aggregator, AggregatorOutput, Params, PixelLoss
from esx.types import Batch, Table, Targets


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

    @torch.no_grad()
    def report(self, loader: Any, device: torch.device) -> dict[str, Any]:
        """How soft the targets are on the test split: the mean target over marked pixels."""
        total, pixels = 0.0, 0
        for batch in loader:
            masks = self(batch.to(device)).targets.masks
            marked = masks > 0
            total, pixels = total + float(masks[marked].sum()), pixels + int(marked.sum())
        return {"mean_marked_target": total / pixels} if pixels else {}

    def tables(self, report: dict[str, Any]) -> list[Table]:
        if not report:
            return []
        return [
            Table(
                "Soft vote: target softness (test)",
                ["sharpen", "mean target on marked pixels"],
                [[self.params.sharpen, report["mean_marked_target"]]],
                note="1 means every marked pixel was marked by every annotator; lower means "
                "the annotators disagree and the targets are soft.",
            )
        ]


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
