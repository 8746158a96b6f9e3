"""EM: a per-image expectation-maximisation vote that needs no annotator identity.

For each image independently, every valid mask m gets an error rate q_m and
the pixel posterior p = P(pixel is foreground) is re-estimated from the
masks weighted by their reliability (Jung-Lin Lee et al., "Quality Evaluation
Methods for Crowdsourced Image Segmentation", 2018; the model of crowd-kit's
``SegmentationEM``):

    E-step: logit p = logit(prior) + Σ_m (2 M_m − 1) · log((1 − q_m) / q_m)
    M-step: q_m = mean over pixels of |M_m − p|

It starts from the mean of the valid masks and runs ``iterations`` steps,
batched over images and masks on the device. Because q is estimated per
image, it needs no identity across images — the MAGI setting. Targets are
the posterior ``(B, 1, H, W)`` (soft), or its 0.5 threshold with ``hard``.
"""

from __future__ import annotations

import torch
from pydantic import Field

from esx.interfaces import Aggregator, AggregatorOutput, BuildContext, Params
from esx.types import Batch, Targets


class EmParams(Params):
    iterations: int = Field(10, ge=1, le=100, description="EM iterations per image")
    prior: float = Field(0.5, gt=0, lt=1, description="prior probability of foreground")
    hard: bool = Field(False, description="threshold the posterior at 0.5")
    eps: float = Field(1e-3, gt=0, lt=0.5, description="clamp of the error rates")


class Em(Aggregator):
    """Per-image EM posterior of the valid masks."""

    Params = EmParams

    def __init__(self, params: EmParams, context: BuildContext) -> None:
        super().__init__(params, context)

    @torch.no_grad()
    def posterior(self, masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``(B, U, H, W)``, ``(B, U)`` → ``(B, 1, H, W)`` posterior (0 where nothing is valid)."""
        p = self.params
        v = valid.to(masks.dtype)[..., None, None]
        post = (masks * v).sum(1, keepdim=True) / v.sum(1, keepdim=True).clamp_min(1)
        prior_logit = torch.logit(torch.tensor(p.prior, dtype=masks.dtype))
        sign = 2 * masks - 1
        for _ in range(p.iterations):
            err = ((masks - post).abs() * v).mean(dim=(-2, -1), keepdim=True)
            err = err.clamp(p.eps, 1 - p.eps)
            weight = torch.log((1 - err) / err) * v
            post = torch.sigmoid(prior_logit + (sign * weight).sum(1, keepdim=True))
        post = post * (valid.any(1)[:, None, None, None]).to(masks.dtype)
        return (post >= 0.5).to(masks.dtype) if p.hard else post

    def forward(self, batch: Batch) -> AggregatorOutput:
        masks = self.posterior(batch.masks, batch.mask_valid)
        weights = batch.annotated.to(masks.dtype)[:, None]
        return AggregatorOutput(Targets(masks=masks, weights=weights))
