"""LIDC-IDRI's nodule set under esx's LIDC rules, cached on disk: what ``esx data
lidc-readers`` summarises and the ``lidc_readers`` dataset draws its readers' contours from.

A public module: other plugins may import :func:`nodule_set`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track

from esx_prepare import lidc_db

#: Bump when the cached nodule set's content or layout changes.
CACHE_VERSION = 1


def _cache_file(path: Path, crop: int, max_readers: int, cache_dir: str | None) -> Path:
    st = path.stat()
    key = json.dumps(
        [CACHE_VERSION, str(path.resolve()), st.st_size, st.st_mtime_ns, crop, max_readers]
    )
    root = Path(cache_dir).expanduser() if cache_dir else _default_cache()
    return root / "lidc_readers" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "esx"


def _save(nodules: lidc_db.NoduleSet, file: Path) -> None:
    ns = nodules.nodules
    meta = [[n.scan, n.slice, n.crop, *n.origin, *n.boxes.shape] for n in ns]
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(file.stem + f".{os.getpid()}.tmp.npz")
    np.savez_compressed(
        tmp,
        meta=np.array(meta, dtype=np.int64).reshape(-1, 8),
        bits=np.concatenate([n.boxes.ravel() for n in ns]) if ns else np.zeros(0, bool),
        spacing=np.array([n.pixel_spacing for n in ns], dtype=float),
        patients=np.array([n.patient for n in ns], dtype=str),
        counts=np.array([nodules.scans, nodules.patients, nodules.annotations, nodules.ambiguous]),
    )
    os.replace(tmp, file)


def _load(file: Path) -> lidc_db.NoduleSet:
    z = np.load(file)
    bits, out, off = z["bits"], [], 0
    for (scan, sl, crop, r0, c0, n, h, w), spacing, patient in zip(
        z["meta"], z["spacing"], z["patients"], strict=True
    ):
        boxes = bits[off : off + n * h * w].reshape(n, h, w)
        off += n * h * w
        out.append(
            lidc_db.Nodule(
                str(patient),
                int(scan),
                int(sl),
                float(spacing),
                int(crop),
                (int(r0), int(c0)),
                boxes,
            )
        )
    scans, patients, annotations, ambiguous = (int(v) for v in z["counts"])
    return lidc_db.NoduleSet(out, scans, patients, annotations, ambiguous)


_MEMO: dict[Path, lidc_db.NoduleSet] = {}


def nodule_set(
    database: str | None,
    crop: int,
    max_readers: int,
    cache_dir: str | None = None,
    console: Console | None = None,
) -> tuple[Path, lidc_db.NoduleSet]:
    """The database's nodules: from this process's memory, the disk cache, or built (about
    half a minute; a progress bar shows it). The cache key holds the database file's size
    and time and the options the set depends on, so a change of either rebuilds it."""
    path = lidc_db.locate(database)
    file = _cache_file(path, crop, max_readers, cache_dir)
    if file in _MEMO:
        return path, _MEMO[file]
    nodules = None
    if file.is_file():
        try:
            nodules = _load(file)
        except (OSError, ValueError, KeyError):
            nodules = None  # a damaged cache is rebuilt
    if nodules is None:
        console = console or Console(stderr=True)
        nodules = lidc_db.build_nodules(
            path,
            crop,
            max_readers,
            track=lambda scans: track(
                scans,
                description="LIDC-IDRI readers' contours",
                console=console,
                transient=True,
            ),
        )
        try:
            _save(nodules, file)
        except OSError as exc:
            console.print(f"[yellow]could not cache the nodule set in {file}: {exc}[/]")
    _MEMO[file] = nodules
    return path, nodules


# --------------------------------------------------------------------------- the dataset
