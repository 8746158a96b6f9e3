"""The synthetic phantom: seeded LIDC-like slices with known truth and simulated annotators.

- Positives hold a nodule (varied size, shape, contrast and margin); either
  class may hold an elongated look-alike (vessel-like), so the shape, not the
  presence of a bright blob, decides the class.
- A spurious cue (a bright corner marker) appears with probability
  ``cue.strength`` in positives and ``1 - cue.strength`` in negatives of the
  ``cue.correlated_splits``; elsewhere with ``cue.p_uncorrelated`` regardless
  of the label. By default only the training split is biased, so validation
  and test measure what the model learned about the lesion.
- U simulated annotators (:mod:`esx_phantom.annotators`) annotate positive
  images, each with its own chance; every annotated image has at least one
  mask; slot order is shuffled per image and the true annotator of each slot
  is kept for evaluation only.

Every sample is a pure function of ``(seed, split, index)``.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from esx.data import Sample
from esx.interfaces import BuildContext, DataInfo, Dataset, Params
from esx.masks import as_tensor_mask
from esx.panels import draw
from esx_phantom.annotators import AnnotatorSpec, distractors
from esx_phantom.render import render

#: Pixel statistics of the rendered slices, used to standardise the images (public: the
#: lidc_readers dataset renders with the phantom and standardises alike).
MEAN, STD = 0.2, 0.15


#: What ``design`` fills in for the sizes and the annotator panel a recipe does not give.
#: ``testbed``: the design chosen and confirmed by the testbed search
#: (docs/lab/phantom-testbed-search.md),
#: sized to a 2-core CPU: 112 px, 200/200/400 images, one accurate annotator and three who
#: mark the look-alike or the spurious marker instead of the nodule whenever one is in the
#: image. ``paper``: the earlier default, the paper's sizes (224 px, 100/2400/2400) and a
#: mixed panel of four noisy personalities.
DESIGNS: dict[str, dict[str, Any]] = {
    "testbed": {
        "image_size": 112,
        "n_train": 200,
        "n_val": 200,
        "n_test": 400,
        "annotators": [{"kind": "accurate"}] + [{"kind": "wrong_object", "strength": 2}] * 3,
    },
    "paper": {
        "image_size": 224,
        "n_train": 100,
        "n_val": 2400,
        "n_test": 2400,
        "annotators": [
            {"kind": k} for k in ("conservative", "aggressive", "boundary_noisy", "wrong_object")
        ],
    },
}
_TESTBED = DESIGNS["testbed"]


class CueSpec(Params):
    strength: float = Field(0.9, ge=0, le=1, description="P(cue | positive) in biased splits")
    correlated_splits: list[str] = Field(default_factory=lambda: ["train"])
    p_uncorrelated: float = Field(0.5, ge=0, le=1, description="P(cue) in unbiased splits")
    size: float = Field(12.0, gt=0, description="side of the marker, px at 224")
    intensity: float = Field(0.6, ge=0, le=1)


class PhantomParams(Params):
    design: Literal["testbed", "paper"] = Field(
        "testbed",
        description="fills the sizes and the annotator panel not given: testbed (the chosen "
        "testbed, 112 px, 200/200/400, one accurate and three wrong-object annotators) or paper "
        "(the paper's 224 px, 100/2400/2400, a mixed noisy panel)",
    )
    image_size: int = Field(
        _TESTBED["image_size"], ge=32, le=1024, description="side of the square images, px"
    )
    n_train: int = Field(_TESTBED["n_train"], ge=2, description="training images (the paper: 100)")
    n_val: int = Field(_TESTBED["n_val"], ge=2, description="validation images (the paper: 2400)")
    n_test: int = Field(_TESTBED["n_test"], ge=2, description="test images (the paper: 2400)")
    positive_fraction: float = Field(0.5, gt=0, lt=1, description="share of images with a nodule")
    seed: int = Field(0, description="data seed, independent of the training seed")
    lesion_radius: tuple[float, float] = Field((8.0, 16.0), description="px at 224")
    lesion_contrast: tuple[float, float] = Field((0.35, 0.6), description="nodule brightness range")
    lookalike_prob: float = Field(
        0.3, ge=0, le=1, description="P(an elongated look-alike), either class"
    )
    noise: float = Field(0.03, ge=0, description="std of the pixel noise")
    annotated_fraction: float = Field(1.0, ge=0, le=1, description="positives with any annotation")
    annotators: list[AnnotatorSpec] = Field(
        default_factory=lambda: [AnnotatorSpec(**a) for a in _TESTBED["annotators"]],
        description="the simulated annotators, one slot each",
    )
    cue: CueSpec = Field(default_factory=CueSpec, description="the spurious corner marker")
    cache: bool = Field(True, description="keep generated samples in memory")

    @model_validator(mode="before")
    @classmethod
    def _fill_from_design(cls, data: Any) -> Any:
        """The design's sizes and panel, under whatever the recipe gives itself."""
        if isinstance(data, dict) and data.get("design", "testbed") in DESIGNS:
            return DESIGNS[data.get("design", "testbed")] | data
        return data

    @field_validator("annotators")
    @classmethod
    def _some_annotators(cls, v: list[AnnotatorSpec]) -> list[AnnotatorSpec]:
        if not v:
            raise ValueError("at least one annotator is needed")
        return v

    @field_validator("lesion_radius", "lesion_contrast")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError(f"expected 0 < low <= high, got {list(v)}")
        return v


def scene_draws(
    rng: np.random.Generator, positive: bool, split: str, cue: CueSpec, lookalike_prob: float
) -> tuple[bool, bool]:
    """A sample's first draws: whether it holds a look-alike, and the spurious cue (with
    ``cue.strength`` for positives and ``1 - cue.strength`` for negatives in the correlated
    splits, ``cue.p_uncorrelated`` elsewhere)."""
    if split in cue.correlated_splits:
        p_cue = cue.strength if positive else 1 - cue.strength
    else:
        p_cue = cue.p_uncorrelated
    lookalike = bool(rng.random() < lookalike_prob)
    return lookalike, bool(rng.random() < p_cue)


class PhantomSplit(torch.utils.data.Dataset):
    """One split of the phantom; items are :class:`esx.data.Sample`."""

    def __init__(self, params: PhantomParams, split: str, n: int) -> None:
        self.p, self.split, self.n = params, split, n
        self.code = zlib.crc32(split.encode())
        rng = np.random.default_rng([params.seed, self.code, 0xC0FFEE])
        self.labels = (rng.permutation(n) < round(n * params.positive_fraction)).astype(int)
        self._cache: dict[int, Sample] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        if i < 0 or i >= self.n:
            raise IndexError(i)
        if i in self._cache:
            return self._cache[i]
        s = self.make(i)
        if self.p.cache:
            self._cache[i] = s
        return s

    def _draws(self, i: int) -> tuple[np.random.Generator, bool, bool, bool]:
        """The sample's generator and its first draws: label, look-alike, cue."""
        p = self.p
        rng = np.random.default_rng([p.seed, self.code, i])
        positive = bool(self.labels[i])
        return rng, positive, *scene_draws(rng, positive, self.split, p.cue, p.lookalike_prob)

    def cue_present(self, i: int) -> bool:
        """Whether sample ``i`` holds the spurious marker (without rendering it)."""
        if i < 0 or i >= self.n:
            raise IndexError(i)
        return self._draws(i)[3]

    def make(self, i: int) -> Sample:
        p = self.p
        rng, positive, lookalike, cue = self._draws(i)
        sl = render(
            rng,
            p.image_size,
            positive=positive,
            lookalike=lookalike,
            cue=cue,
            lesion_radius=p.lesion_radius,
            lesion_contrast=p.lesion_contrast,
            cue_size=p.cue.size,
            cue_intensity=p.cue.intensity,
            noise=p.noise,
        )
        u = len(p.annotators)
        masks = np.zeros((u, p.image_size, p.image_size), bool)
        every = np.zeros_like(masks)
        who = np.full(u, -1)
        if positive and rng.random() < p.annotated_fraction:
            masks, who, every = draw(
                p.annotators, sl.lesion, rng, distractors(sl), sl.lesion_radius
            )
        image = (torch.from_numpy(sl.image)[None] - MEAN) / STD
        return Sample(
            image=image,
            label=int(positive),
            masks=as_tensor_mask(masks),
            mask_valid=torch.from_numpy(who >= 0),
            index=i,
            truth=as_tensor_mask(sl.lesion[None]),
            extras={
                "annotator": torch.from_numpy(who).long(),
                "hidden": as_tensor_mask(every),
                "distractors": as_tensor_mask(np.stack(distractors(sl))),
            },
        )


def cue_groups(labels: np.ndarray, cue: np.ndarray) -> dict[str, np.ndarray]:
    """The images where the spurious marker agrees with the label (positives with it,
    negatives without: ``cue_agree``) and where it conflicts (``cue_conflict``). A model
    that leans on the marker is right more often on the first than on the second."""
    agree = np.asarray(cue, dtype=bool) == np.asarray(labels).astype(bool)
    return {"cue_agree": agree, "cue_conflict": ~agree}


class Phantom(Dataset):
    """The built-in synthetic dataset (1-channel, binary: lesion vs none)."""

    Params = PhantomParams

    @classmethod
    def example_params(cls, workdir: Path) -> dict[str, Any]:
        return {"image_size": 32, "n_train": 4, "n_val": 4, "n_test": 4}

    def __init__(self, params: PhantomParams, context: BuildContext) -> None:
        super().__init__(params, context)
        self._splits: dict[str, PhantomSplit] = {}

    @property
    def info(self) -> DataInfo:
        p = self.params
        return DataInfo(
            name="phantom",
            synthetic=True,
            in_chans=1,
            num_classes=2,
            image_size=(p.image_size, p.image_size),
            num_annotators=len(p.annotators),
            has_truth=True,
            splits={"train": p.n_train, "val": p.n_val, "test": p.n_test},
            details={
                "annotators": [a.kind for a in p.annotators],
                "cue_strength": p.cue.strength,
                "cue_correlated_splits": list(p.cue.correlated_splits),
                "data_seed": p.seed,
            },
        )

    def groups(self, name: str) -> dict[str, np.ndarray]:
        """The marker's groups of the split's images (:func:`cue_groups`)."""
        split = self.split(name)
        return cue_groups(split.labels, [split.cue_present(i) for i in range(len(split))])

    def split(self, name: str) -> PhantomSplit:
        if name not in self._splits:
            key = (self.params.model_dump_json(), name)
            if key not in _SHARED:
                n = {
                    "train": self.params.n_train,
                    "val": self.params.n_val,
                    "test": self.params.n_test,
                }
                _SHARED[key] = PhantomSplit(self.params, name, n[name])
                while len(_SHARED) > SHARED_SPLITS:
                    _SHARED.popitem(last=False)
            _SHARED.move_to_end(key)
            self._splits[name] = _SHARED[key]
        return self._splits[name]


#: Splits rendered in this process, shared by every run with the same data parameters, so a
#: sweep renders each image once (every sample is a pure function of the parameters and its
#: index; nothing downstream modifies a sample). The oldest are dropped beyond this many.
SHARED_SPLITS = 6
_SHARED: OrderedDict[tuple[str, str], PhantomSplit] = OrderedDict()
