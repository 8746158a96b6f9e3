"""MeanLoss: every valid annotation is a target; the loss is their mean (MAGI paper, Table 1).

K = U targets per image, weight 1/V_i on each of the V_i valid masks, 0 on
missing slots, so any loss averages over the image's annotations.
"""

from __future__ import annotations

from esx.interfaces import Aggregator, AggregatorOutput, BuildContext, Params
from esx.types import Batch, Targets


class MeanLoss(Aggregator):
    """Targets ``(B, U, H, W)`` = the observed masks, weights ``valid / V_i``."""

    Params = Params

    def __init__(self, params: Params, context: BuildContext) -> None:
        super().__init__(params, context)

    def forward(self, batch: Batch) -> AggregatorOutput:
        valid = batch.mask_valid.to(batch.masks.dtype)
        weights = valid / valid.sum(dim=1, keepdim=True).clamp_min(1)
        return AggregatorOutput(Targets(masks=batch.masks, weights=weights))
