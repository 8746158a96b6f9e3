"""Samples, their validation, and the collate function that builds a :class:`Batch`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from esx.errors import DataError
from esx.types import Batch

#: A sample id that can name files: letters, digits, '-', '_', '.', not starting with '.'
#: (so never '..', a path separator, a wildcard or an absolute path).
SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
SAFE_ID_RULE = "an id may hold only letters, digits, '-', '_' and '.', and may not start with '.'"


def safe_id(name: str) -> str:
    """``name`` made into a :data:`SAFE_ID` (other characters become ``_``)."""
    out = "".join(ch if ch.isalnum() and ch.isascii() or ch in "-_." else "_" for ch in name)
    return "_" + out if not out or out[0] == "." else out


@dataclass
class Sample:
    """One image with its annotations.

    Attributes:
        image: ``(C, H, W)`` float.
        label: class index.
        masks: ``(U, H, W)`` uint8 in {0, 1}; zeros in missing slots.
        mask_valid: ``(U,)`` bool.
        index: position in its split.
        truth: optional ``(1, H, W)`` uint8 true mask.
        extras: named tensors for particular consumers (see :attr:`esx.types.Batch.extras`);
            a key is batched when every sample of the batch has it.
    """

    image: Tensor
    label: int
    masks: Tensor
    mask_valid: Tensor
    index: int
    truth: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)


def validate_sample(s: Sample, where: str) -> None:
    """Raise :class:`DataError` naming ``where`` if the sample is inconsistent."""
    if s.image.ndim != 3:
        raise DataError(f"{where}: image must be (C, H, W), got shape {tuple(s.image.shape)}")
    h, w = s.image.shape[-2:]
    if not torch.isfinite(s.image).all():
        raise DataError(f"{where}: image holds NaN or Inf pixels; clean or drop this image")
    if s.masks.ndim != 3 or tuple(s.masks.shape[-2:]) != (h, w):
        raise DataError(
            f"{where}: masks have shape {tuple(s.masks.shape)} but the image is {h}x{w}; "
            "each mask must be the image's size"
        )
    if s.mask_valid.shape != (s.masks.shape[0],):
        raise DataError(f"{where}: mask_valid must have one flag per mask slot")
    if s.masks.numel() and not ((s.masks == 0) | (s.masks == 1)).all():
        bad = s.masks[(s.masks != 0) & (s.masks != 1)].flatten()[0].item()
        raise DataError(f"{where}: masks must be binary (0/1); found value {bad}")


def collate(samples: list[Sample]) -> Batch:
    """Stack samples into a :class:`Batch`; unannotated samples are fine."""
    has_truth = all(s.truth is not None for s in samples)
    shared = set.intersection(*(set(s.extras) for s in samples)) if samples else set()
    return Batch(
        image=torch.stack([s.image for s in samples]),
        label=torch.tensor([s.label for s in samples], dtype=torch.long),
        masks=torch.stack([s.masks for s in samples]).float(),
        mask_valid=torch.stack([s.mask_valid for s in samples]),
        truth=torch.stack([s.truth for s in samples]).float() if has_truth else None,
        index=torch.tensor([s.index for s in samples], dtype=torch.long),
        extras={k: torch.stack([s.extras[k] for s in samples]) for k in sorted(shared)},
    )


def loader(
    ds: Any, batch_size: int, shuffle: torch.Generator | None, workers: int, sampler: Any = None
) -> Any:
    """A DataLoader of :class:`Batch`; shuffled with ``shuffle`` when given, else in the
    order of ``sampler`` (a distributed shard) when given."""
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle is not None,
        num_workers=workers,
        collate_fn=collate,
        generator=shuffle,
        sampler=sampler,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
    )


def train_loader(
    ds: Any, batch_size: int, shuffle: torch.Generator, workers: int, world: Any, seed: int
) -> Any:
    """The training split's loader: shuffled by ``shuffle`` in one process; under several
    processes, each its shard of ``batch_size // world.size`` (``batch_size`` is global)."""
    if not world.distributed:
        return loader(ds, batch_size, shuffle, workers)
    sampler = torch.utils.data.DistributedSampler(
        ds, num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed
    )
    return loader(ds, batch_size // world.size, None, workers, sampler)
