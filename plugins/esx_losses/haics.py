"""HAICS (Shen et al., CHI EA 2021), as run in the MAGI paper.

Binary cross-entropy between the normalised map and the target, averaged over
*annotated* pixels only (``Targets.annotated``; with plain binary masks every
pixel is annotated, outside as negative).

Departures from the public code (RES.py, the only implementation): it applies
a mean-reduced ``BCELoss`` and multiplies the resulting scalar by the mask,
which counts unannotated pixels as negatives; and min-max normalisation puts a
pixel at exactly 0, where ``BCELoss``'s log clamp gives a loss of 100. Here the
BCE is per pixel, the mean is masked, and probabilities are clamped to
[eps, 1 - eps].
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from esx.interfaces import BuildContext, Params, PixelLoss


class HaicsParams(Params):
    eps: float = Field(1e-4, gt=0, lt=0.5, description="probability clamp before the log")


class Haics(PixelLoss):
    """Per-pixel clamped BCE; maps ``(N, h, w)``, targets ``(N, K, h, w)``."""

    Params = HaicsParams

    def __init__(self, params: HaicsParams, context: BuildContext) -> None:
        super().__init__(params, context)

    def pixel_loss(self, maps: Tensor, target: Tensor) -> Tensor:
        p = maps.clamp(self.params.eps, 1 - self.params.eps)
        return -(target * torch.log(p) + (1 - target) * torch.log(1 - p))
