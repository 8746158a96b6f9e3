"""Simulated annotators, for any dataset with a true mask.

An annotator is a personality applied to the true mask of an image:

| kind | what it draws |
| --- | --- |
| exact | the truth itself |
| accurate | the truth, with light boundary noise |
| conservative | the truth eroded (too small) |
| aggressive | the truth dilated (too large) |
| boundary_noisy | the ICCV 2023 paper's protocol: boundary pixels flipped in or out, repeatedly |
| careless | the truth shifted off target and partly cut |
| wrong_object | sometimes a distractor (the dataset's look-alike, cue or decoy) instead |
| tiny | a small dot at the truth's centre |

``strength`` scales each effect (1 = the defaults below). A *panel* is a list of
annotators, each annotating an image with its own chance ``p_annotate``; the
order of the masks it yields carries no identity. :func:`family_panel` gives the
panels of the two noise dials, each a function of one ``level`` from 0 (every
annotator draws the truth) to 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field
from scipy import ndimage

from esx.interfaces import Params
from esx.masks import boundary_noise, dilate, erode

Kind = Literal[
    "exact",
    "accurate",
    "conservative",
    "aggressive",
    "boundary_noisy",
    "careless",
    "wrong_object",
    "tiny",
]

#: the noise dials: ``wrong_object`` (how many annotators mark a distractor) and ``paper``
#: (the ICCV 2023 paper's kind: boundary noise, too small and too large masks, missing masks)
Family = Literal["wrong_object", "paper"]


class AnnotatorSpec(Params):
    kind: Kind = Field(description="the annotator's personality (the table above)")
    p_annotate: float = Field(0.8, ge=0, le=1, description="chance of annotating an image")
    strength: float = Field(1.0, ge=0, description="scales the personality's effect")


def radius(truth: np.ndarray) -> float:
    """The radius of a disc with the truth's area: the scale the personalities act at."""
    return max(float(np.sqrt(truth.sum() / np.pi)), 1.0)


def annotate(
    spec: AnnotatorSpec,
    truth: np.ndarray,
    rng: np.random.Generator,
    distractors: Sequence[np.ndarray] = (),
    r: float | None = None,
) -> np.ndarray:
    """The mask annotator ``spec`` draws for an image whose true mask is ``truth`` (``(H,
    W)`` bool).

    Args:
        rng: the image's generator (the draws happen in a fixed order, so a seeded image
            gets the same masks every time).
        distractors: masks of things that are not the truth, first found first
            (``wrong_object`` marks the first one that is not empty).
        r: the truth's radius in pixels; default :func:`radius`.
    """
    truth = np.asarray(truth, dtype=bool)
    r, k = max(r if r is not None else radius(truth), 1.0), spec.strength
    size = truth.shape[0]
    s = size / 224.0
    if spec.kind == "exact":
        return truth.copy()
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
            for d in distractors:
                if d.any():
                    return np.asarray(d, dtype=bool).copy()
        return boundary_noise(truth, rng, steps=1, flip=0.3)
    if spec.kind == "tiny":
        cy, cx = ndimage.center_of_mass(truth)
        yy, xx = np.mgrid[0:size, 0:size]
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= max(1.0, 0.25 * r / max(k, 1e-3)) ** 2
    raise ValueError(spec.kind)  # unreachable: Kind is validated


def draw(
    panel: Sequence[AnnotatorSpec],
    truth: np.ndarray,
    rng: np.random.Generator,
    distractors: Sequence[np.ndarray] = (),
    r: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's annotations by ``panel``: ``(masks, who, every)``.

    Each annotator annotates with its own chance (at least one does); every annotator
    draws, and the ones who did not annotate stay hidden in ``every`` (for evaluating
    filling in only). ``masks (U, H, W)`` holds the drawn masks in shuffled slots (zeros
    elsewhere), ``who (U,)`` the annotator of each slot (-1: empty).
    """
    u = len(panel)
    masks = np.zeros((u, *truth.shape), bool)
    who = np.full(u, -1)
    drawn = [a for a in range(u) if rng.random() < panel[a].p_annotate]
    if not drawn:
        drawn = [int(rng.integers(u))]
    every = np.stack([annotate(spec, truth, rng, distractors, r) for spec in panel])
    slots = rng.permutation(u)[: len(drawn)]
    for slot, a in zip(slots, drawn, strict=True):
        masks[slot] = every[a]
        who[slot] = a
    return masks, who, every


def wrong_share(level: float, annotators: int) -> np.ndarray:
    """Per annotator of the ``wrong_object`` dial, its chance of being wrong on an image."""
    return np.clip(level * annotators - np.arange(annotators), 0.0, 1.0)


def family_panel(
    family: Family,
    level: float,
    rng: np.random.Generator,
    annotators: int = 4,
    p_annotate: float = 0.75,
) -> list[AnnotatorSpec]:
    """One image's panel of the noise dial ``family`` at ``level`` (0 to 1); at level 0
    every annotator draws the truth itself (``exact``).

    ``wrong_object``: annotator ``a`` (0-based, of U) is, on each image, a wrong-object
    annotator that marks a distractor wherever the image has one with probability
    ``clip(level * U - a, 0, 1)`` (:func:`wrong_share`), and ``exact`` otherwise. At
    level ``j / U`` exactly ``j`` annotators are wrong on every image (consistent
    individuals); between those levels one annotator is wrong on part of the images; the
    expected share of wrong masks is ``level``. Every annotator annotates with chance
    ``p_annotate``.

    ``paper`` (the ICCV 2023 paper's kind of noise): boundary_noisy, conservative,
    aggressive, boundary_noisy (cycled to U), each at strength ``2 * level``, annotating
    with chance ``1 - 0.5 * level`` (half the masks missing at level 1).
    """
    if not 0 <= level <= 1:
        raise ValueError(f"level {level} is outside [0, 1]")
    if family == "paper":
        if level == 0:
            return [AnnotatorSpec(kind="exact", p_annotate=1.0)] * annotators
        kinds = ("boundary_noisy", "conservative", "aggressive", "boundary_noisy")
        p = 1 - 0.5 * level
        return [
            AnnotatorSpec(kind=kinds[a % 4], p_annotate=p, strength=2 * level)
            for a in range(annotators)
        ]
    wrong = rng.random(annotators) < wrong_share(level, annotators)
    return [
        AnnotatorSpec(kind="wrong_object" if w else "exact", p_annotate=p_annotate, strength=2.0)
        for w in wrong
    ]
