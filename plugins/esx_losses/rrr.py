"""RRR (Ross et al., IJCAI 2017): squared input gradients outside the target mask.

"Right for the right reasons", Ross, Hughes and Doshi-Velez.

``Σ_d (A_d · ∂/∂x_d Σ_k log p̂_k)²`` with ``A`` = 1 outside the target
(the regions the model should not use): the squared input gradient of the
log-probabilities, summed over the pixels outside the target mask. It reads
the gradients' scale, so it needs the ``input_gradient`` explainer (squared
input gradients, not normalised); a run that pairs it with another explainer
is refused when it is built.

Soft targets weigh each pixel by ``1 − target``; only annotated pixels
count; targets are weighted and images averaged as for every esx loss. Ross
et al. sum over the pixels (``reduction: sum``) and choose λ so that the
penalty and the cross-entropy are of the same order (their λ: 1000 for
their inputs); ``reduction: mean`` divides by the number of pixels counted,
which makes λ independent of the image size.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor

from esx.interfaces import BuildContext, Loss, Params
from esx.types import Targets


class RrrParams(Params):
    reduction: Literal["sum", "mean"] = Field(
        "sum", description="over the pixels outside the target: sum (Ross et al.) or mean"
    )


class Rrr(Loss):
    """Squared input gradients outside the target; maps ``(N, H, W)`` from
    ``input_gradient``, targets ``(N, K, H, W)``."""

    Params = RrrParams
    needs_input_gradient = True

    def __init__(self, params: RrrParams, context: BuildContext) -> None:
        super().__init__(params, context)

    def forward(self, maps: Tensor, targets: Targets) -> Tensor:
        outside = 1 - targets.masks
        if targets.annotated is not None:
            outside = outside * targets.annotated.to(outside.dtype)
        penalty = (maps.float()[:, None] * outside).sum(dim=(-2, -1))
        if self.params.reduction == "mean":
            penalty = penalty / outside.sum(dim=(-2, -1)).clamp_min(1)
        return (penalty * targets.weights).sum(dim=1).mean()
