"""Simulated annotators, each a personality applied to the true lesion mask.

| kind | what it draws |
| --- | --- |
| accurate | the lesion, with light boundary noise |
| conservative | the lesion eroded (too small) |
| aggressive | the lesion dilated (too large) |
| boundary_noisy | the MAGI paper's protocol: boundary pixels flipped in or out, repeatedly |
| careless | the lesion shifted off target and partly cut |
| wrong_object | sometimes the look-alike or the spurious cue instead of the lesion |
| tiny | a small dot at the lesion's centre |

``strength`` scales each effect (1 = the defaults below).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from scipy import ndimage

from esx.interfaces import Params
from esx.masks import boundary_noise, dilate, erode
from esx_phantom.render import Slice

Kind = Literal[
    "accurate", "conservative", "aggressive", "boundary_noisy", "careless", "wrong_object", "tiny"
]


class AnnotatorSpec(Params):
    kind: Kind
    p_annotate: float = Field(0.8, ge=0, le=1, description="chance of annotating a positive image")
    strength: float = Field(1.0, ge=0, description="scales the personality's effect")


def annotate(spec: AnnotatorSpec, sl: Slice, rng: np.random.Generator) -> np.ndarray:
    """The mask annotator ``spec`` draws for slice ``sl``."""
    truth, r, k = sl.lesion, max(sl.lesion_radius, 1.0), spec.strength
    size = truth.shape[0]
    s = size / 224.0
    if spec.kind == "accurate":
        return boundary_noise(truth, rng, steps=1, flip=0.3)
    if spec.kind == "conservative":
        out = erode(truth, int(round(0.45 * r * k)))
        return out if out.any() else erode(truth, int(round(0.2 * r)))
    if spec.kind == "aggressive":
        return dilate(truth, int(round((0.6 * r + 2 * s) * k)))
    if spec.kind == "boundary_noisy":
        return boundary_noise(truth, rng, steps=max(1, int(round(4 * k * s))), flip=0.5)
    if spec.kind == "careless":
        ang = rng.uniform(0, 2 * np.pi)
        d = rng.uniform(0.6, 1.1) * r * k
        out = ndimage.shift(truth, (d * np.sin(ang), d * np.cos(ang)), order=0)
        yy, xx = np.mgrid[0:size, 0:size]
        cy, cx = ndimage.center_of_mass(out) if out.any() else (size / 2, size / 2)
        cut = np.cos(ang) * (xx - cx) + np.sin(ang) * (yy - cy) < 0.3 * r
        return out & cut
    if spec.kind == "wrong_object":
        if rng.random() < min(1.0, 0.5 * k):
            if sl.lookalike.any():
                return sl.lookalike.copy()
            if sl.cue.any():
                return sl.cue.copy()
        return boundary_noise(truth, rng, steps=1, flip=0.3)
    if spec.kind == "tiny":
        cy, cx = ndimage.center_of_mass(truth)
        yy, xx = np.mgrid[0:size, 0:size]
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= max(1.0, 0.25 * r / max(k, 1e-3)) ** 2
    raise ValueError(spec.kind)  # unreachable: Kind is validated
