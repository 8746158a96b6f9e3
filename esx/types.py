"""The data types that cross every plugin boundary: :class:`Batch`, :class:`Targets` and
:class:`Table`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the types are annotations only: importing esx does not import torch
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
        extras: tensors a dataset provides for particular consumers, by name,
            each with the batch dimension first (collated from
            :attr:`esx.data.Sample.extras`). The core moves and batches them and
            never reads them; a component that reads a key documents it and must
            work when the key is absent. Keys the built-ins use are listed in
            docs/reference/hooks.md.
    """

    image: Tensor
    label: Tensor
    masks: Tensor
    mask_valid: Tensor
    truth: Tensor | None = None
    index: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Move every tensor, extras included, to ``device``."""

        def move(v: Any) -> Any:
            return None if v is None else v.to(device, non_blocking=non_blocking)

        moved = {f.name: move(getattr(self, f.name)) for f in fields(self) if f.name != "extras"}
        return Batch(**moved, extras={k: move(v) for k, v in self.extras.items()})

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


@dataclass
class Table:
    """A table a component attaches to its run's results (``Component.tables``).

    ``esx run`` prints it under the test results, ``metrics.json`` stores it
    under ``tables``, and ``esx report`` renders it for a folder of runs
    without knowing which component wrote it.

    Attributes:
        title: the table's heading, unique within one run (the report merges
            the tables of equal title across runs).
        columns: column names.
        rows: one list of cells per row, in column order; cells are numbers,
            strings or None.
        note: one sentence printed under the table saying how to read it.
        summary: True if ``esx report`` should aggregate the table over a
            folder's runs: for each method, rows are matched on their leading
            non-numeric cells and every numeric cell becomes mean ± std over
            the runs. False for tables that only make sense per run.
    """

    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""
    summary: bool = True

    def __post_init__(self) -> None:
        bad = [i for i, r in enumerate(self.rows) if len(r) != len(self.columns)]
        if bad:
            raise ValueError(
                f"table {self.title!r}: row {bad[0]} has {len(self.rows[bad[0]])} cells "
                f"for {len(self.columns)} columns"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``metrics.json`` stores)."""
        return asdict(self)

    def shown(self) -> Table | None:
        """The table as esx shows it: without the columns no row has a value in (None,
        ``""`` or ``"-"``), named in the note; None when no column after the first (which
        names the rows) holds anything."""

        def blank(c: Any) -> bool:
            return c is None or c in ("", "-")

        keep = [j for j in range(len(self.columns)) if not all(blank(r[j]) for r in self.rows)]
        if not self.rows or not [j for j in keep if j > 0]:  # the first column names rows
            return None
        if len(keep) == len(self.columns):
            return self
        gone = [c for j, c in enumerate(self.columns) if j not in keep]
        note = f"{self.note} (No values, so not shown: {', '.join(gone)}.)".strip()
        rows = [[r[j] for j in keep] for r in self.rows]
        return replace(self, columns=[self.columns[j] for j in keep], rows=rows, note=note)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Table:
        keys = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in keys})
