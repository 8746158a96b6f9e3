"""STAPLE (Warfield et al., IEEE TMI 2004) through SimpleITK, as a soft target.

Each image's valid masks go to ``SimpleITK.STAPLEImageFilter``, whose
foreground probability map is the target. STAPLE estimates each mask's
sensitivity and specificity per image, so no identity across images is
needed. SimpleITK is an optional dependency: ``pip install "esx[staple]"``.
Images whose valid masks are all empty get an all-zero target (STAPLE is
undefined there). It runs on the CPU, one image at a time.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from esx.errors import EsxError
from esx.interfaces import Aggregator, AggregatorOutput, BuildContext, Params
from esx.types import Batch, Targets


class StapleParams(Params):
    max_iterations: int = Field(100, ge=1, description="STAPLE's iteration limit")
    hard: bool = Field(False, description="threshold the probability at 0.5")


class Staple(Aggregator):
    """``(B, 1, H, W)`` STAPLE probability of the valid masks."""

    Params = StapleParams

    def __init__(self, params: StapleParams, context: BuildContext) -> None:
        super().__init__(params, context)
        try:
            import SimpleITK
        except ImportError:
            raise EsxError(
                "aggregator 'staple' needs SimpleITK: pip install 'esx[staple]'"
            ) from None
        self.sitk = SimpleITK

    def _one(self, masks: np.ndarray) -> np.ndarray:
        if not masks.any():
            return np.zeros(masks.shape[1:], np.float32)
        f = self.sitk.STAPLEImageFilter()
        f.SetForegroundValue(1.0)
        f.SetMaximumIterations(self.params.max_iterations)
        prob = f.Execute([self.sitk.GetImageFromArray(m.astype(np.uint8)) for m in masks])
        return self.sitk.GetArrayFromImage(prob).astype(np.float32)

    def forward(self, batch: Batch) -> AggregatorOutput:
        masks = batch.masks.detach().cpu().numpy()
        valid = batch.mask_valid.cpu().numpy()
        out = np.stack(
            [
                self._one(masks[i][valid[i]])
                if valid[i].any()
                else np.zeros(masks.shape[-2:], np.float32)
                for i in range(len(masks))
            ]
        )
        t = torch.from_numpy(out)[:, None].to(batch.masks.device).clamp(0, 1)
        if self.params.hard:
            t = (t >= 0.5).to(t.dtype)
        weights = batch.annotated.to(t.dtype)[:, None]
        return AggregatorOutput(Targets(masks=t, weights=weights))
