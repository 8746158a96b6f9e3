"""Consensus: the pixel-wise vote of the valid masks (the MAGI paper's "50% consensus").

A pixel is foreground where the mean of an image's valid masks is at least
``threshold``; ties count as foreground, as in crowd-kit's
``SegmentationMajorityVote`` and pylidc's ``consensus(clevel=0.5)``. Images
with no valid mask get zero weight and are not supervised.
"""

from __future__ import annotations

from pydantic import Field

from esx.interfaces import Aggregator, AggregatorOutput, BuildContext, Params
from esx.masks import vote
from esx.types import Batch, Targets


class ConsensusParams(Params):
    threshold: float = Field(0.5, gt=0, le=1, description="share of valid masks that must agree")


class Consensus(Aggregator):
    """One target per image, ``(B, 1, H, W)``, weight 1 where annotated."""

    Params = ConsensusParams

    def __init__(self, params: ConsensusParams, context: BuildContext) -> None:
        super().__init__(params, context)

    def forward(self, batch: Batch) -> AggregatorOutput:
        masks = vote(batch.masks, batch.mask_valid, self.params.threshold)
        weights = batch.annotated.to(masks.dtype)[:, None]
        return AggregatorOutput(Targets(masks=masks, weights=weights))
