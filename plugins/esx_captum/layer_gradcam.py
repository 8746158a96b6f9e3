"""Captum's ``LayerGradCam`` on the backbone's feature output, for evaluation.

It runs its own forward pass, so it is not offered for training (use
``gradcam``); its maps equal ``gradcam``'s on the same model (tested).
"""

from __future__ import annotations

import torch
from captum.attr import LayerGradCam
from pydantic import Field
from torch import Tensor, nn

from esx.interfaces import Backbone, BuildContext, Explainer, Params, normalise_maps


class CaptumParams(Params):
    relu: bool = Field(False, description="ReLU the map before normalisation")
    eps: float = Field(1e-6, gt=0, description="added to max - min in the normalisation")


class _Split(nn.Module):
    """Exposes ``forward_features`` as a layer Captum can hook."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone
        self.features = _Features(backbone)

    def forward(self, image: Tensor) -> Tensor:
        return self.backbone.forward_head(self.features(image))


class _Features(nn.Module):
    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.fn = backbone.forward_features

    def forward(self, image: Tensor) -> Tensor:
        return self.fn(image)


class CaptumGradCam(Explainer):
    """Captum ``LayerGradCam`` (evaluation only)."""

    Params = CaptumParams
    differentiable = False

    def __init__(self, params: CaptumParams, context: BuildContext) -> None:
        super().__init__(params, context)

    def explain(self, backbone, image, classes, *, features=None, logits=None, create_graph=False):
        split = _Split(backbone)
        with torch.enable_grad():
            attr = LayerGradCam(split, split.features).attribute(
                image, target=classes, relu_attributions=self.params.relu
            )
        return normalise_maps(attr[:, 0].detach(), self.params.eps)
