"""RES-G (Gao et al., "RES: A Robust Framework for Guiding Visual Explanation", KDD 2022).

``L = mean |E - G| + L_B``: the target is imputed by a fixed 3×3 Gaussian blur
of the positive mask at the map's resolution, divided by its maximum
(OpenCV's k = 3 kernel [1/4, 1/2, 1/4] in each direction, reflected borders),
and :mod:`esx_losses.robust_boundary` adds the robust boundary term.

Departures from the public code: an all-empty mask gives an all-zero target
instead of dividing by zero; the threshold search is vectorised; the boundary
term's weight is a parameter (1 in the paper).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from esx.interfaces import BuildContext, Loss, Params, weighted_mean
from esx.types import Targets
from esx_losses.robust_boundary import boundary_loss, signed_labels


class ResParams(Params):
    eta: float = Field(0.1, ge=0, description="tolerance of the boundary term (RES commands: 0.1)")
    sharpness: float = Field(5.0, gt=0, description="k in tanh(k (E - a))")
    boundary_weight: float = Field(1.0, ge=0, description="weight of the robust boundary term")
    soft_targets: bool = Field(
        False,
        description="impute from the target itself instead of its 0.5 binarisation "
        "(RES's positive mask), so a soft aggregator's confidences reach the L1 term; the "
        "boundary term's labels stay binary",
    )


def positive_mask(targets: Targets, params: ResParams, dtype: torch.dtype) -> Tensor:
    """What the imputation starts from: the target, or its 0.5 binarisation (RES's Y = +1)."""
    if params.soft_targets:
        return targets.masks.to(dtype)
    return (targets.masks >= 0.5).to(dtype)


def gaussian_blur3(x: Tensor) -> Tensor:
    """3×3 Gaussian blur (σ 0.8, OpenCV's kernel) of ``(..., h, w)`` with reflected borders."""
    k1 = torch.tensor([0.25, 0.5, 0.25], dtype=x.dtype, device=x.device)
    kernel = (k1[:, None] * k1[None, :])[None, None]
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, *x.shape[-2:])
    mode = "reflect" if min(x.shape[-2:]) > 1 else "replicate"
    out = F.conv2d(F.pad(flat, (1, 1, 1, 1), mode=mode), kernel)
    return out.reshape(*lead, *x.shape[-2:])


def max_normalise(x: Tensor, eps: float = 1e-6) -> Tensor:
    return x / (x.amax(dim=(-2, -1), keepdim=True) + eps)


class ResG(Loss):
    """Gaussian-imputed L1 plus the robust boundary term; targets ``(N, K, h, w)``."""

    Params = ResParams

    def __init__(self, params: ResParams, context: BuildContext) -> None:
        super().__init__(params, context)

    def impute(self, positive: Tensor) -> Tensor:
        return max_normalise(gaussian_blur3(positive))

    def forward(self, maps: Tensor, targets: Targets) -> Tensor:
        p = self.params
        imputed = self.impute(positive_mask(targets, p, maps.dtype))
        l_d = weighted_mean((maps[:, None] - imputed).abs(), targets.weights, targets.annotated)
        labels = signed_labels(targets.masks, targets.annotated)
        l_b = boundary_loss(maps, labels, targets.weights, p.eta, p.sharpness)
        return l_d + p.boundary_weight * l_b
