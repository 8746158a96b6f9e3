"""Mask utilities shared by datasets, aggregators and metrics.

Binary morphology is done with max-pooling on tensors so it runs batched on
any device; the boundary-noise transform follows the protocol of Zhang et al. (ICCV 2023)
and can be applied to any dataset's masks.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor


def vote(masks: Tensor, valid: Tensor, threshold: float = 0.5) -> Tensor:
    """Pixel-wise vote of the valid masks.

    Args:
        masks: ``(B, U, H, W)`` in {0, 1}.
        valid: ``(B, U)`` bool.
        threshold: a pixel is on where the mean of the valid masks is ``>= threshold``
            (ties count as foreground, as in crowd-kit's majority vote).

    Returns:
        ``(B, 1, H, W)`` float in {0, 1}; all zero for rows with no valid mask.
    """
    if masks.shape[1] == 1 and 0 < threshold <= 1:  # one annotator: the vote is its mask
        return masks if bool(valid.all()) else masks * valid.to(masks.dtype)[..., None, None]
    v = valid.to(masks.dtype)[..., None, None]
    n = v.sum(dim=1, keepdim=True)
    mean = (masks * v).sum(dim=1, keepdim=True) / n.clamp_min(1)
    # A tiny tolerance keeps 2/4 >= 0.5 true despite float rounding.
    return ((mean >= threshold - 1e-6) & (n > 0)).to(masks.dtype)


def area_downsample(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Area-average ``(..., H, W)`` masks down to ``size`` (the RES code's 7x7 labels)."""
    lead = masks.shape[:-2]
    flat = masks.reshape(-1, 1, *masks.shape[-2:])
    out = F.adaptive_avg_pool2d(flat, size)
    return out.reshape(*lead, *size)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a 2-D mask by a disc of ``radius`` pixels."""
    if radius <= 0:
        return mask.copy()
    return ndimage.binary_dilation(mask, structure=_disc(radius))


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion of a 2-D mask by a disc of ``radius`` pixels."""
    if radius <= 0:
        return mask.copy()
    return ndimage.binary_erosion(mask, structure=_disc(radius))


def _disc(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def boundary_noise(
    mask: np.ndarray, rng: np.random.Generator, steps: int = 3, flip: float = 0.5
) -> np.ndarray:
    """The boundary-noise protocol of Zhang et al. (ICCV 2023): flip pixels along the boundary.

    At each step one direction is drawn at random: *inward* turns a random
    ``flip`` share of the mask's inner boundary pixels from 1 to 0, *outward*
    turns the same share of the outer boundary pixels from 0 to 1. Repeating
    the step grows or shrinks the mask by ragged amounts.

    Args:
        mask: 2-D bool or {0, 1} array.
        rng: the random generator (seeded by the caller).
        steps: number of boundary passes.
        flip: share of boundary pixels flipped per pass, in [0, 1].

    Returns:
        A new bool mask of the same shape.
    """
    out = mask.astype(bool).copy()
    for _ in range(steps):
        if not out.any():
            break
        if rng.random() < 0.5:
            edge = out & ~ndimage.binary_erosion(out)
            out[edge & (rng.random(out.shape) < flip)] = False
        else:
            edge = ndimage.binary_dilation(out) & ~out
            out[edge & (rng.random(out.shape) < flip)] = True
    return out


def as_tensor_mask(mask: np.ndarray) -> Tensor:
    """A numpy mask as a ``uint8`` tensor."""
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))
