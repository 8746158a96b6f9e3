"""Squared input gradients of the log-probabilities, the map RRR (Ross et al., 2017) penalises.

For an image x and the model's log-probabilities log p̂_k(x), the map is
``(∂/∂x Σ_k log p̂_k(x))²`` summed over the image's channels: ``(B, H, W)`` at
the input resolution, non-negative and *not* normalised, because RRR's
penalty reads its scale. It is differentiable: inside the training step the
image is made to require gradients before the step's one forward
(``input_gradient = True``), and the gradient is taken with
``create_graph=True`` so the penalty trains the backbone (double backward).
Evaluation normalises the maps per image before measuring or drawing them.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from esx.interfaces import Backbone, BuildContext, Explainer, Params


class InputGradientParams(Params):
    of: str = Field(
        "sum_log_probs",
        pattern="^(sum_log_probs|class_log_prob)$",
        description="sum_log_probs: the gradient of the sum of every class's "
        "log-probability (Ross et al.); class_log_prob: of the given class's only",
    )


class InputGradient(Explainer):
    """Squared input gradient of the log-probabilities (for the ``rrr`` loss)."""

    Params = InputGradientParams
    differentiable = True
    normalised = False
    input_gradient = True

    def __init__(self, params: InputGradientParams, context: BuildContext) -> None:
        super().__init__(params, context)

    def explain(
        self,
        backbone: Backbone,
        image: Tensor,
        classes: Tensor,
        *,
        features: Tensor | None = None,
        logits: Tensor | None = None,
        create_graph: bool = False,
    ) -> Tensor:
        with torch.enable_grad():
            if features is None or logits is None or not image.requires_grad:
                image = image.detach().requires_grad_(True)
                logits = backbone.forward_head(backbone.forward_features(image))
            logp = logits.float().log_softmax(1)
            if self.params.of == "class_log_prob":
                score = logp.gather(1, classes[:, None]).sum()
            else:
                score = logp.sum()
            scale = self.grad_scale
            (grad,) = torch.autograd.grad(
                score * scale if scale != 1 else score,
                image,
                create_graph=create_graph,
                retain_graph=True,
            )
        grad = grad.float() / scale if scale != 1 else grad.float()
        return grad.pow(2).sum(1)
