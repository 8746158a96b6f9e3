"""Energy loss (Rao et al., ICCV 2023): one minus the map's energy share inside the mask.

From "Studying how to efficiently and effectively guide models with
explanations" (code: sukrutrao/Model-Guidance).

``1 − Σ A⁺·M / Σ A⁺``: one minus the share of the map's positive energy that
falls inside the target mask — the energy-based pointing game turned into a
loss. Unlike an L1 or BCE against the mask, it does not ask the map to be
high everywhere on the mask, only that the map's mass sits inside it.

Soft targets (MAGI's generated masks, area-downsampled masks) weigh each
pixel's energy by the target's value; sums run over annotated pixels only,
then targets are weighted and images averaged as for every esx loss. An
image whose map has no energy on its annotated pixels scores 1.

Departure from Rao et al.'s code: their attributions are raw (only the
positive part counts); esx's explainers return min-max normalised maps, so
the map's minimum counts as zero energy.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from esx.interfaces import BuildContext, Loss, Params
from esx.types import Targets


class EnergyParams(Params):
    eps: float = Field(1e-8, gt=0, description="added to the total energy before dividing")


class Energy(Loss):
    """``1 − (energy inside the target) / (total energy)``; maps ``(N, h, w)``,
    targets ``(N, K, h, w)``."""

    Params = EnergyParams

    def __init__(self, params: EnergyParams, context: BuildContext) -> None:
        super().__init__(params, context)

    def forward(self, maps: Tensor, targets: Targets) -> Tensor:
        energy = maps.float().clamp_min(0)[:, None].expand_as(targets.masks)
        if targets.annotated is not None:
            energy = energy * targets.annotated.to(energy.dtype)
        inside = (energy * targets.masks).sum(dim=(-2, -1))
        total = energy.sum(dim=(-2, -1))
        per_target = 1 - inside / (total + self.params.eps)
        return (per_target * targets.weights).sum(dim=1).mean()
