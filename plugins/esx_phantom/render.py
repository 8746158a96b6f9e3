"""Rendering of LIDC-like 2-D slices: lung fields, vessels, nodules, look-alikes, a cue.

All sizes are given for a 224-px image and scaled with the image size. Pixel
values are in [0, 1] before the dataset standardises them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass
class Slice:
    """One rendered slice and the objects in it (bool masks, ``(S, S)``)."""

    image: np.ndarray
    lesion: np.ndarray
    lookalike: np.ndarray
    cue: np.ndarray
    lesion_radius: float
    shift: tuple[int, int] = (0, 0)  # (rows, cols) a given ``lesion_shape`` was moved by


def _ellipse(yy, xx, cy, cx, ry, rx, angle=0.0):
    c, s = np.cos(angle), np.sin(angle)
    y, x = yy - cy, xx - cx
    u, v = x * c + y * s, -x * s + y * c
    return (u / rx) ** 2 + (v / ry) ** 2


def _blob(yy, xx, cy, cx, radius, aspect, angle, lobes, rng):
    """A lobulated ellipse: radius modulated by low harmonics of the angle."""
    c, s = np.cos(angle), np.sin(angle)
    y, x = yy - cy, xx - cx
    u, v = x * c + y * s, (-x * s + y * c) / aspect
    theta = np.arctan2(v, u)
    r = np.hypot(u, v)
    mod = np.ones_like(r)
    for k in (2, 3, 5):
        mod += lobes * rng.uniform(-1, 1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return r <= radius * mod


def _place(region: np.ndarray, margin: int, rng: np.random.Generator) -> tuple[int, int] | None:
    inner = ndimage.binary_erosion(region, iterations=max(1, margin)) if margin > 0 else region
    ys, xs = np.nonzero(inner)
    if len(ys) == 0:
        return None
    i = rng.integers(len(ys))
    return int(ys[i]), int(xs[i])


def _place_shape(
    shape: np.ndarray, lungs: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[int, int]]:
    """``shape`` moved so its box centre lands on a random lung pixel where the whole box
    stays inside the image (anywhere inside the image when no lung pixel allows that)."""
    rows, cols = np.nonzero(shape)
    if len(rows) == 0:
        return shape.astype(bool), (0, 0)
    size = shape.shape[0]
    cy, cx = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
    # Box-centre positions that keep the box inside the image.
    lo_y, hi_y = cy - rows.min(), size - 1 - (rows.max() - cy)
    lo_x, hi_x = cx - cols.min(), size - 1 - (cols.max() - cx)
    ok = np.zeros_like(lungs)
    ok[lo_y : hi_y + 1, lo_x : hi_x + 1] = True
    ys, xs = np.nonzero(lungs & ok)
    if len(ys) == 0:
        ys, xs = np.nonzero(ok)
    i = rng.integers(len(ys))
    dy, dx = int(ys[i] - cy), int(xs[i] - cx)
    return shift_mask(shape, (dy, dx)), (dy, dx)


def shift_mask(mask: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """``mask`` moved by ``shift`` = (rows, cols), filled with False where it enters."""
    out = np.zeros_like(mask, dtype=bool)
    dy, dx = shift
    h, w = mask.shape
    src = mask[max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
    out[max(dy, 0) : max(dy, 0) + src.shape[0], max(dx, 0) : max(dx, 0) + src.shape[1]] = src
    return out


def render(
    rng: np.random.Generator,
    size: int,
    *,
    positive: bool,
    lookalike: bool,
    cue: bool,
    lesion_radius: tuple[float, float],
    lesion_contrast: tuple[float, float],
    cue_size: float,
    cue_intensity: float,
    noise: float,
    lesion_shape: np.ndarray | None = None,
    lesion_blur: tuple[float, float] = (0.4, 1.4),
) -> Slice:
    """One slice. With ``lesion_shape`` (a bool ``(size, size)`` mask), a positive's nodule
    has exactly that shape, moved as a whole to a random place in a lung (``Slice.shift``
    says by how much), instead of a drawn lobulated ellipse."""
    s = size / 224.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = size / 2
    # Body and two lung fields.
    img = np.full((size, size), 0.02, np.float32)
    body = _ellipse(yy, xx, c, c, 0.44 * size * rng.uniform(0.95, 1.05), 0.47 * size) <= 1
    img[body] = 0.32
    lungs = np.zeros_like(body)
    for side in (-1, 1):
        cx = c + side * 0.2 * size * rng.uniform(0.9, 1.1)
        lungs |= (
            _ellipse(
                yy,
                xx,
                c,
                cx,
                0.31 * size * rng.uniform(0.9, 1.05),
                0.15 * size * rng.uniform(0.9, 1.1),
                rng.uniform(-0.15, 0.15),
            )
            <= 1
        )
    img[lungs] = 0.08
    img = ndimage.gaussian_filter(img, 1.5 * s)
    # Parenchyma texture.
    tex = ndimage.gaussian_filter(rng.normal(size=(size, size)).astype(np.float32), 2.5 * s)
    img += 0.02 * tex / (tex.std() + 1e-6) * lungs
    # Vessels: smooth random walks in the lungs, blurred.
    ves = np.zeros((size, size), np.float32)
    for _ in range(rng.integers(8, 15)):
        p = _place(lungs, int(4 * s), rng)
        if p is None:
            continue
        n = int(rng.integers(25, 60))
        ang = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.25, n))
        step = 1.5 * s
        ys = np.clip(p[0] + np.cumsum(step * np.sin(ang)), 0, size - 1).astype(int)
        xs = np.clip(p[1] + np.cumsum(step * np.cos(ang)), 0, size - 1).astype(int)
        ves[ys, xs] = rng.uniform(0.5, 1.0)
    ves = ndimage.gaussian_filter(ves, 0.9 * s) * 2.5
    img += 0.3 * np.clip(ves, 0, 1) * lungs
    # Lesion (positives) and elongated look-alike (either class).
    lesion = np.zeros((size, size), bool)
    radius = 0.0
    shift = (0, 0)
    if positive and lesion_shape is not None:
        lesion, shift = _place_shape(lesion_shape, lungs, rng)
        radius = float(np.sqrt(lesion.sum() / np.pi))
        soft = ndimage.gaussian_filter(lesion.astype(np.float32), rng.uniform(*lesion_blur) * s)
        img += rng.uniform(*lesion_contrast) * soft
    elif positive:
        radius = rng.uniform(*lesion_radius) * s
        p = _place(lungs, int(radius + 2 * s), rng) or (int(c), int(c - 0.2 * size))
        lesion = _blob(
            yy,
            xx,
            p[0],
            p[1],
            radius,
            rng.uniform(0.75, 1.0),
            rng.uniform(0, np.pi),
            rng.uniform(0.0, 0.12),
            rng,
        )
        soft = ndimage.gaussian_filter(lesion.astype(np.float32), rng.uniform(0.4, 1.4) * s)
        img += rng.uniform(*lesion_contrast) * soft
    look = np.zeros((size, size), bool)
    if lookalike:
        r = rng.uniform(*lesion_radius) * s * 1.2
        p = _place(
            lungs & ~ndimage.binary_dilation(lesion, iterations=int(4 * s) + 1), int(r + 2 * s), rng
        )
        if p is not None:
            look = _blob(
                yy, xx, p[0], p[1], r, rng.uniform(0.25, 0.4), rng.uniform(0, np.pi), 0.0, rng
            )
            soft = ndimage.gaussian_filter(look.astype(np.float32), 0.8 * s)
            img += rng.uniform(*lesion_contrast) * soft
    # Spurious cue: a bright square marker in a random corner.
    cue_mask = np.zeros((size, size), bool)
    if cue:
        k = max(2, int(round(cue_size * s)))
        off = int(round(6 * s))
        top = off if rng.random() < 0.5 else size - off - k
        left = off if rng.random() < 0.5 else size - off - k
        cue_mask[top : top + k, left : left + k] = True
        img[cue_mask] = cue_intensity
    img += rng.normal(0, noise, size=(size, size)).astype(np.float32)
    return Slice(np.clip(img, 0, 1), lesion, look, cue_mask, radius, shift)
