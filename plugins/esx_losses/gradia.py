"""GRADIA (Gao et al., CSCW 2022), as run in the MAGI paper.

L1 distance between the normalised explanation map and the target mask,
averaged over annotated pixels, then over an image's targets by their
weights, then over supervised images.

Departure from the original GRADIA code: no per-sample "reasonability"
weights (as in the RES code's GRADIA and the MAGI paper); the loss weight is
``train.lambda_exp`` instead of a hard-coded 1.
"""

from __future__ import annotations

from torch import Tensor

from esx.interfaces import BuildContext, Params, PixelLoss


class Gradia(PixelLoss):
    """``|map - target|`` per pixel; maps ``(N, h, w)``, targets ``(N, K, h, w)``."""

    Params = Params

    def __init__(self, params: Params, context: BuildContext) -> None:
        super().__init__(params, context)

    def pixel_loss(self, maps: Tensor, target: Tensor) -> Tensor:
        return (maps - target).abs()
