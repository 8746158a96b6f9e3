"""The two data types that cross every plugin boundary: :class:`Batch` and :class:`Targets`."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor


@dataclass
class Batch:
    """One mini-batch of images with their (possibly missing) annotations.

    Attributes:
        image: ``(B, C, H, W)`` float images.
        label: ``(B,)`` long class labels; 1 is the positive (lesion) class.
        masks: ``(B, U, H, W)`` float masks in {0, 1}; slots of missing
            annotations hold zeros. The order of the U slots carries no identity.
        mask_valid: ``(B, U)`` bool, False where an annotator did not annotate.
        truth: optional ``(B, 1, H, W)`` true explanation mask (evaluation only).
        index: ``(B,)`` long index of each sample in its split.
        annotator: optional ``(B, U)`` long true annotator of each slot (-1 when
            missing); for evaluation only, never for training.
        hidden: optional ``(B, A, H, W)`` uint8 mask every annotator would have
            drawn, indexed by true annotator (synthetic data only); for
            evaluating imputation, never for training.
    """

    image: Tensor
    label: Tensor
    masks: Tensor
    mask_valid: Tensor
    truth: Tensor | None = None
    index: Tensor | None = None
    annotator: Tensor | None = None
    hidden: Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Move every tensor to ``device``."""
        moved = {
            f.name: (v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) else v)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return Batch(**moved)

    @property
    def annotated(self) -> Tensor:
        """``(B,)`` bool: the image has at least one valid mask."""
        return self.mask_valid.any(dim=1)

    def __len__(self) -> int:
        return self.image.shape[0]


@dataclass
class Targets:
    """Explanation targets produced by an aggregator.

    Attributes:
        masks: ``(B, K, H, W)`` targets in [0, 1].
        weights: ``(B, K)`` non-negative; each row sums to 1 where the image is
            supervised and is all zero where it is not.
        annotated: optional ``(B, K, H, W)`` bool, False on pixels whose label is
            unknown; None means every pixel is annotated.
    """

    masks: Tensor
    weights: Tensor
    annotated: Tensor | None = None

    @property
    def supervised(self) -> Tensor:
        """``(B,)`` bool: rows that carry any target weight."""
        return self.weights.sum(dim=1) > 0

    def select(self, rows: Tensor) -> Targets:
        """The targets of the rows selected by a bool or index tensor."""
        ann = None if self.annotated is None else self.annotated[rows]
        return replace(self, masks=self.masks[rows], weights=self.weights[rows], annotated=ann)
