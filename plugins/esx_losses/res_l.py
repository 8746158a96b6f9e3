"""RES-L (Gao et al., KDD 2022): RES with a learned imputation of the target.

``L = mean |E - I| + L_B (+ reg · MSE(I, Y+))`` where I is produced from the
positive mask by a learnable convolution, min-max normalised, trained with
the classifier (its parameters join the optimiser through the loss).

Departure from the public code: its kernel (1→1 channel, size 64, stride 32,
padding 16) maps the 224×224 mask to 7×7 directly. esx compares at the map's
resolution after ``explainer.match`` has brought the mask down to it
(``explainer.params.mask_resize``), so the learned kernel here is a 3×3
convolution on that downsampled mask, initialised
to RES-G's Gaussian — RES-L starts as RES-G and learns from there. As in the
public code the imputation is not detached (``detach_imputation: false``), so
it co-adapts with the classifier; L_B anchors it to the labels.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from esx.interfaces import BuildContext, Loss, weighted_mean
from esx.types import Targets
from esx_losses.res_g import ResParams, positive_mask
from esx_losses.robust_boundary import boundary_loss, signed_labels


class ResLParams(ResParams):
    reg: float = Field(0.0, ge=0, description="weight of MSE(I, positive mask); public default 0")
    detach_imputation: bool = Field(False, description="keep L_D from training the imputation")


class ResL(Loss):
    """Learned-imputation L1 plus the robust boundary term; targets ``(N, K, h, w)``."""

    Params = ResLParams

    def __init__(self, params: ResLParams, context: BuildContext) -> None:
        super().__init__(params, context)
        self.imputation = nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")
        k1 = torch.tensor([0.25, 0.5, 0.25])
        with torch.no_grad():
            self.imputation.weight.copy_((k1[:, None] * k1[None, :])[None, None])
            self.imputation.bias.zero_()

    def impute(self, positive: Tensor) -> Tensor:
        lead = positive.shape[:-2]
        out = self.imputation(positive.reshape(-1, 1, *positive.shape[-2:]))
        flat = out.flatten(1)
        lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        return ((flat - lo) / (hi - lo + 1e-6)).reshape(*lead, *positive.shape[-2:])

    def forward(self, maps: Tensor, targets: Targets) -> Tensor:
        p = self.params
        positive = positive_mask(targets, p, maps.dtype)
        imputed = self.impute(positive)
        if p.detach_imputation:
            imputed = imputed.detach()
        l_d = weighted_mean((maps[:, None] - imputed).abs(), targets.weights, targets.annotated)
        labels = signed_labels(targets.masks, targets.annotated)
        loss = l_d + p.boundary_weight * boundary_loss(
            maps, labels, targets.weights, p.eta, p.sharpness
        )
        if p.reg > 0:
            loss = loss + p.reg * weighted_mean((imputed - positive) ** 2, targets.weights)
        return loss
