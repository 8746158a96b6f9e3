"""The Baseline: no explanation loss; the classifier learns from labels alone."""

from __future__ import annotations

import torch
from torch import Tensor

from esx.interfaces import BuildContext, Loss, Params
from esx.types import Targets


class NoExplanationLoss(Loss):
    """Contributes nothing; the trainer skips the explainer during training."""

    Params = Params
    uses_explanation = False

    def __init__(self, params: Params, context: BuildContext) -> None:
        super().__init__(params, context)

    def forward(self, maps: Tensor, targets: Targets) -> Tensor:
        return torch.zeros((), device=maps.device)
