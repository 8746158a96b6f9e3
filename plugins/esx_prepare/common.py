"""What every preparation command shares: the folder-format writer, per-case
resumption, the error log of skipped files, and the seeded, grouped split.

A preparation writes one case (a CT series, a NIfTI volume) at a time: its
images and masks first, then ``cases/<case>.json`` listing them. A rerun skips
every case whose listing exists, so an interrupted preparation loses nothing
it had finished. ``samples.csv`` is written last, from the listings.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from esx import outputs
from esx.data import SAFE_ID, safe_id
from esx.errors import DataError, EsxError

SPLITS = ("train", "val", "test")


class CaseError(EsxError):
    """One case cannot be prepared; the message names the file and what is wrong."""


@dataclass
class Item:
    """One 2-D image of the prepared dataset."""

    id: str
    label: int
    image: np.ndarray  # (H, W), float in [0, 1]
    masks: list[np.ndarray | None]  # per annotator slot; None = no annotation
    truth: np.ndarray | None = None


@dataclass
class Summary:
    prepared: int = 0
    reused: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (case, message)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


def window(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip intensities to ``[low, high]`` and scale to [0, 1]."""
    return ((np.clip(values, low, high) - low) / (high - low)).astype(np.float32)


def crop(
    array: np.ndarray, center: tuple[float, float], size: int, fill: float = 0.0
) -> np.ndarray:
    """A ``size`` x ``size`` crop of a 2-D array centred on ``center`` (row, col), padded with
    ``fill`` where it leaves the array."""
    out = np.full((size, size), fill, dtype=array.dtype)
    top = int(round(center[0])) - size // 2
    left = int(round(center[1])) - size // 2
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + size, array.shape[0]), min(left + size, array.shape[1])
    if r1 > r0 and c1 > c0:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = array[r0:r1, c0:c1]
    return out


def parse_sizes(text: str) -> tuple[int | None, int | None, int | None]:
    """``"100,2400,2400"`` -> sizes of train, val, test; ``rest`` = every remaining image."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        raise EsxError(f"--sizes {text!r}: give three sizes, train,val,test (e.g. 100,2400,2400)")
    out: list[int | None] = []
    for p in parts:
        if p == "rest":
            out.append(None)
        elif p.isdigit() and int(p) >= 2:
            out.append(int(p))
        else:
            raise EsxError(
                f"--sizes {text!r}: {p!r} must be a whole number >= 2 (half "
                "positives, half negatives) or 'rest'"
            )
    if out.count(None) > 1:
        raise EsxError(f"--sizes {text!r}: at most one split can take the rest")
    return out[0], out[1], out[2]


class Writer:
    """Writes prepared cases into esx's folder format (docs/howto/own-data.md)."""

    def __init__(self, out: Path, source: str, options: dict[str, Any]) -> None:
        self.out = Path(out)
        self.source, self.options = source, options
        try:
            for sub in ("images", "masks", "truth", "cases"):
                (self.out / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EsxError(
                f"--out {self.out}: cannot create the output folder ({exc}); "
                "choose a writable folder"
            ) from None
        done = self.out / "prepare.json"
        if done.is_file():
            before = json.loads(done.read_text()).get("options")
            if before is not None and before != options:
                changed = sorted(
                    k for k in {**before, **options} if before.get(k) != options.get(k)
                )
                raise EsxError(
                    f"{self.out}: prepared before with other options "
                    f"({', '.join(changed)}); use a new --out folder or the same "
                    "options"
                )

    def listing(self, case: str) -> Path:
        return self.out / "cases" / f"{_safe(case)}.json"

    def has(self, case: str) -> bool:
        return self.listing(case).is_file()

    def write_case(self, case: str, group: str, items: list[Item]) -> None:
        """Write a case's images and masks, then its listing (the marker of a finished case)."""
        rows = []
        for it in items:
            if not SAFE_ID.fullmatch(it.id):  # the folder dataset refuses any other id
                raise ValueError(f"case {case}: item id {it.id!r} is not a safe id")
            outputs.write_bytes(self.out / "images" / f"{it.id}.png", _png(it.image))
            for k, m in enumerate(it.masks):
                if m is not None:
                    outputs.write_bytes(self.out / "masks" / f"{it.id}_{k}.png", _png(m))
            if it.truth is not None:
                outputs.write_bytes(self.out / "truth" / f"{it.id}.png", _png(it.truth))
            rows.append(
                {
                    "id": it.id,
                    "label": it.label,
                    "annotations": sum(m is not None for m in it.masks),
                }
            )
        outputs.write_json(self.listing(case), {"case": case, "group": group, "items": rows})

    def finish(
        self,
        sizes: tuple[int | None, int | None, int | None],
        seed: int,
        summary: Summary,
        console: Console,
    ) -> None:
        """Split the listed images by group (patient) and write ``samples.csv``."""
        listings = [json.loads(p.read_text()) for p in sorted((self.out / "cases").glob("*.json"))]
        if not listings:
            raise DataError(f"{self.out}: no case could be prepared; see the messages above")
        chosen = split_groups(listings, sizes, seed)
        rows = [[sid, label, name] for name in SPLITS for sid, label in chosen[name]]
        for name in SPLITS:
            labels = [label for _, label in chosen[name]]
            summary.counts[name] = {"positive": sum(labels), "negative": len(labels) - sum(labels)}
            if not labels:
                raise DataError(
                    f"{self.out}: the {name} split would be empty ({len(listings)} "
                    "cases prepared); prepare more cases or lower --sizes"
                )
        outputs.write_csv(self.out / "samples.csv", ["id", "label", "split"], rows)
        outputs.write_json(
            self.out / "prepare.json",
            {
                "source": self.source,
                "options": self.options,
                "seed": seed,
                "sizes": list(sizes),
                "counts": summary.counts,
                "cases": len(listings),
                "skipped": [{"case": c, "error": e} for c, e in summary.skipped],
            },
        )
        for name in SPLITS:
            want = sizes[SPLITS.index(name)]
            got = summary.counts[name]
            n = got["positive"] + got["negative"]
            if want is not None and n < want:
                console.print(
                    f"[yellow]{name}: {n} images, fewer than the {want} asked (not enough cases)[/]"
                )


def split_groups(
    listings: list[dict[str, Any]], sizes: tuple[int | None, int | None, int | None], seed: int
) -> dict[str, list[tuple[str, int]]]:
    """Assign whole groups (patients) to splits, then draw balanced images in each split.

    Groups are shuffled with ``seed`` and each goes to the split whose share of
    its positive-image target is lowest, so no patient is in two splits. Each
    split then draws up to half its size from its positives and half from its
    negatives (a ``rest`` split takes everything left, balanced).
    """
    rng = random.Random(seed)
    groups: dict[str, list[tuple[str, int]]] = {}
    for lst in listings:
        groups.setdefault(lst["group"], []).extend((r["id"], int(r["label"])) for r in lst["items"])
    names = sorted(groups)
    rng.shuffle(names)
    total_pos = sum(label for g in groups.values() for _, label in g)
    fixed = sum(s for s in sizes if s is not None)
    targets = [max((s if s is not None else max(2 * total_pos - fixed, 2)) / 2, 1) for s in sizes]
    pos = [0, 0, 0]
    members: list[list[tuple[str, int]]] = [[], [], []]
    for name in names:
        items = groups[name]
        k = min(range(3), key=lambda i: (pos[i] / targets[i], -targets[i]))
        members[k].extend(items)
        pos[k] += sum(label for _, label in items)
    out: dict[str, list[tuple[str, int]]] = {}
    for k, name in enumerate(SPLITS):
        want = sizes[k]
        p = [it for it in members[k] if it[1] == 1]
        n = [it for it in members[k] if it[1] == 0]
        rng.shuffle(p)
        rng.shuffle(n)
        half = min(len(p), len(n)) if want is None else want // 2
        out[name] = sorted(p[:half] + n[:half])
    return out


Prepare = Callable[[str, Any], tuple[str, list[Item]]]  # (case, source) -> (group, items)


def run_cases(
    cases: Iterable[tuple[str, Any]], prepare: Prepare, writer: Writer, console: Console, what: str
) -> Summary:
    """Prepare every case not already listed, with a progress bar; collect the failures."""
    cases = list(cases)
    summary = Summary()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(what, total=len(cases))
        for case, source in cases:
            if writer.has(case):
                summary.reused += 1
            else:
                try:
                    group, items = prepare(case, source)
                    writer.write_case(case, group, items)
                    summary.prepared += 1
                except (CaseError, DataError) as err:
                    summary.skipped.append((case, str(err)))
                    console.print(f"[red]skipped[/] {case}: {err}", highlight=False)
            bar.advance(task)
    return summary


def report(summary: Summary, out: Path, console: Console) -> None:
    console.print(
        f"prepared {summary.prepared} case(s), reused {summary.reused} already "
        f"prepared, skipped {len(summary.skipped)}"
    )
    for case, err in summary.skipped:
        console.print(f"  skipped {case}: {err}", highlight=False)
    for name, c in summary.counts.items():
        console.print(f"  {name}: {c['positive']} positive, {c['negative']} negative")
    console.print(
        f"dataset written to {out} (train on it with data: {{name: folder, params: "
        f"{{root: {out}}}}})"
    )


def _png(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    else:
        arr = np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _safe(name: str) -> str:
    return safe_id(name)
