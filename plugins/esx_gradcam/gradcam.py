"""Differentiable, batched Grad-CAM (Selvaraju et al., ICCV 2017).

For activations A ``(B, K, h, w)`` at the backbone's feature output and the
class score s: α = mean over h, w of ∂s/∂A; map = Σ_k α_k A_k; optional ReLU;
per-image min-max normalisation ``(m - min) / (max - min + eps)``.

It reuses the training step's forward: the gradient is taken from the step's
logits to its activations with ``torch.autograd.grad``, so it only passes
through the head (pooling + linear) and costs almost nothing. With
``create_graph=True`` gradients also flow through α (a full second-order
term); with False, α is a constant, as in the RES reference code.

Departures from the reference code: no second forward per sample, no train-
mode batch-1 pass, and the whole batch at once. Masks reach the map by
``mask_resize``; its default, ``area_max``, divides each area-downsampled
mask by its largest cell as original GRADIA does, so a lesion smaller than a
cell still has a target of 1 where it lies (docs/lab/phantom-testbed-search.md shows why that
matters).

``layer`` explains an inner module instead (``layer3`` of a ResNet, found by
name in any timm CNN): a forward hook keeps that module's activations from
the step's own forward, so it is still one forward per step; the gradient
then runs from the logits back through the later stages, which is what
guiding at a finer map costs (``benchmarks/step_cost.py --layer``). For a
ResNet at 224 px, ``layer3`` gives 14x14 maps and ``layer2`` 28x28; at 112
px with ``output_stride: 16`` (the CPU recipes) ``layer3`` is 7x7 like the
output and ``layer2`` is 14x14.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from esx.interfaces import Backbone, BuildContext, Explainer, Params, find_layer, normalise_maps
from esx.masks import area_downsample
from esx.types import Targets


class GradCamParams(Params):
    layer: str | None = Field(
        None,
        description="module to explain, by name (e.g. layer3, or model.layer3); default: "
        "the backbone's feature output",
    )
    create_graph: bool = Field(True, description="let gradients flow through the channel weights")
    relu: bool = Field(False, description="ReLU before normalisation (RES/GRADIA training: off)")
    eps: float = Field(1e-6, gt=0, description="added to max - min in the normalisation")
    compare_at: Literal["map", "mask"] = Field(
        "map",
        description="map: masks brought down to the map (RES code, 7x7 at 224 px; see "
        "mask_resize); "
        "mask: map upsampled bilinearly to the mask size",
    )
    mask_resize: Literal["area", "area_max", "nearest"] = Field(
        "area_max",
        description="with compare_at: map, how masks reach the map: area (covered fraction "
        "of each cell), area_max (the same divided by the mask's largest cell, as original "
        "GRADIA), nearest (one sample per cell, as the RES code's GRADIA)",
    )


def gradcam(
    features: Tensor,
    logits: Tensor,
    classes: Tensor,
    *,
    create_graph: bool,
    relu: bool,
    grad_scale: float = 1.0,
) -> Tensor:
    """Raw Grad-CAM ``(B, h, w)`` from a step's activations and logits.

    ``grad_scale`` (mixed precision): the score is multiplied by it before
    differentiation and the gradients divided by it after, in fp32.
    """
    score = logits.float().gather(1, classes[:, None]).sum()
    (grads,) = torch.autograd.grad(
        score * grad_scale, features, create_graph=create_graph, retain_graph=True
    )
    alpha = grads.float().mean(dim=(2, 3), keepdim=True) / grad_scale
    cam = (alpha * features.float()).sum(dim=1)
    return cam.clamp_min(0) if relu else cam


def resize_masks(masks: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """Bring ``(..., H, W)`` masks down to a map's ``size``.

    - ``area``: the covered fraction of each cell (soft; a lesion smaller than
      a cell never reaches 1).
    - ``area_max``: the same, divided by each mask's largest cell, so the most
      covered cell is 1; an empty mask stays empty.
    - ``nearest``: one sample per cell; a lesion between sample points
      vanishes.

    ``area_max`` is original GRADIA's target; ``nearest`` is what the RES
    code's GRADIA does (its labels are sampled at 7x7).
    """
    if mode == "area":
        return area_downsample(masks, size)
    if mode == "area_max":
        out = area_downsample(masks, size)
        peak = out.amax(dim=(-2, -1), keepdim=True)
        return torch.where(peak > 0, out / peak.clamp_min(1e-12), out)
    if mode == "nearest":
        lead = masks.shape[:-2]
        flat = masks.reshape(-1, 1, *masks.shape[-2:]).float()
        return F.interpolate(flat, size=size, mode="nearest").reshape(*lead, *size)
    raise ValueError(f"unknown mask resize mode {mode!r}; expected area, area_max or nearest")


class GradCam(Explainer):
    """Grad-CAM at the backbone's feature output or at a chosen ``layer``, differentiable."""

    Params = GradCamParams
    differentiable = True

    def __init__(self, params: GradCamParams, context: BuildContext) -> None:
        super().__init__(params, context)
        self._bound: Backbone | None = None
        self._hook: torch.utils.hooks.RemovableHandle | None = None
        self._acts: Tensor | None = None

    def bind(self, backbone: Backbone) -> None:
        """With ``layer``: keep that module's output of every forward (one hook)."""
        if self.params.layer is None:
            return
        module = find_layer(backbone, self.params.layer)
        if self._hook is not None:
            self._hook.remove()
        self._hook = module.register_forward_hook(self._keep)
        self._bound = backbone

    def _keep(self, module: torch.nn.Module, inputs: object, output: Tensor) -> None:
        if isinstance(output, Tensor):
            if torch.is_grad_enabled() and not output.requires_grad:
                output.requires_grad_(True)  # a frozen backbone: Grad-CAM still needs dA
            self._acts = output

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
        p = self.params
        if p.layer is not None and self._bound is not backbone:
            self.bind(backbone)
            features = None  # the hook was not in place for the caller's forward
        with torch.enable_grad():
            if features is None:
                self._acts = None
                features = backbone.forward_features(image)
                if not features.requires_grad:
                    features.requires_grad_(True)
                logits = backbone.forward_head(features)
            explained = features
            if p.layer is not None:
                explained, self._acts = self._acts, None
                if explained is None or explained.shape[0] != image.shape[0]:
                    raise RuntimeError(
                        f"layer {p.layer!r} did not run in the backbone's forward for this batch"
                    )
                if explained.dim() != 4:
                    raise ValueError(
                        f"layer {p.layer!r} gives {tuple(explained.shape)}; Grad-CAM needs "
                        "(B, K, h, w) activations: choose a convolutional stage"
                    )
            cam = gradcam(
                explained,
                logits,
                classes,
                create_graph=create_graph and p.create_graph,
                relu=p.relu,
                grad_scale=self.grad_scale,
            )
        return normalise_maps(cam, p.eps)

    def match(self, maps: Tensor, targets: Targets) -> tuple[Tensor, Targets]:
        if self.params.compare_at == "mask":
            return super().match(maps, targets)
        size = tuple(maps.shape[-2:])
        if tuple(targets.masks.shape[-2:]) == size:
            return maps, targets
        ann = targets.annotated
        return maps, Targets(
            masks=resize_masks(targets.masks, size, self.params.mask_resize),
            weights=targets.weights,
            annotated=None if ann is None else area_downsample(ann.float(), size) > 0.5,
        )
