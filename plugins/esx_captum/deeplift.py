"""Captum's DeepLift (Shrikumar et al., ICML 2017) on the input, for evaluation only.

DeepLift replaces gradients with the rescale rule through backward hooks on
detached copies, so its attributions give the parameters no gradient: it
cannot serve as a training signal (``differentiable = False``; the trainer
refuses it inside a loss). The map is the absolute attribution summed over
channels, per-image min-max normalised, against an all-zero baseline.
"""

from __future__ import annotations

import copy

import torch
from captum.attr import DeepLift as _CaptumDeepLift
from pydantic import Field
from torch import Tensor, nn

from esx.interfaces import Backbone, BuildContext, Explainer, Params, normalise_maps


class DeepLiftParams(Params):
    eps: float = Field(1e-6, gt=0, description="added to max - min in the normalisation")


class _Forward(nn.Module):
    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, image: Tensor) -> Tensor:
        return self.backbone(image)


def _no_inplace(model: nn.Module) -> nn.Module:
    """A copy whose activations are not in-place (Captum's hooks need that)."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    return model


class DeepLift(Explainer):
    """``(B, H, W)`` DeepLift maps at input resolution (evaluation only)."""

    Params = DeepLiftParams
    differentiable = False

    def __init__(self, params: DeepLiftParams, context: BuildContext) -> None:
        super().__init__(params, context)

    def explain(self, backbone, image, classes, *, features=None, logits=None, create_graph=False):
        model = _Forward(_no_inplace(backbone)).eval()
        with torch.enable_grad():
            x = image.detach().requires_grad_(True)
            attr = _CaptumDeepLift(model).attribute(x, target=classes)
        return normalise_maps(attr.detach().abs().sum(dim=1), self.params.eps)
