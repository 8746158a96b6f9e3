"""Pack the small files of a sweep folder's finished runs into a docs/run_metrics archive.

    python experiments/archive_runs.py runs/noise_curve docs/run_metrics/noise_curve_search.tar.gz

takes every run under the folder that has ``metrics.json`` (a finished run) and packs its
``metrics.json``, ``history.csv`` and ``recipe.yaml``, named from the folder's parent
(``noise_curve/magi/seed0_.../metrics.json``), so that ``tar xzf ARCHIVE -C runs`` puts
them back where `esx report` reads them and where `esx sweep` skips them. Unfinished runs
and checkpoints are left out. The archive is deterministic: the same runs give the same
bytes (sorted names; no owners, times, or gzip name and stamp), so a rebuilt archive changes in git
only when its runs did.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import tarfile
from pathlib import Path

FILES = ("metrics.json", "history.csv", "recipe.yaml")


def members(folder: Path) -> list[Path]:
    """The files to pack: the small files of every finished run under ``folder``."""
    runs = sorted(m.parent for m in folder.rglob("metrics.json"))
    return [run / name for run in runs for name in FILES if (run / name).is_file()]


def write(folder: Path, archive: Path) -> int:
    """Writes the archive; returns the number of runs in it."""
    if not folder.is_dir():
        sys.exit(f"{folder} is not a folder: give the sweep's --out folder (e.g. runs/noise_curve)")
    files = members(folder)
    if not files:
        sys.exit(f"{folder} holds no finished run (no */metrics.json): nothing to archive")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(folder.parent).as_posix())
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    archive.parent.mkdir(parents=True, exist_ok=True)
    with open(archive, "wb") as raw, gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as gz:
        gz.write(buf.getvalue())
    return len({p.parent for p in files})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a sweep's --out folder, e.g. runs/noise_curve")
    ap.add_argument("archive", type=Path, help="the .tar.gz to write")
    a = ap.parse_args()
    n = write(a.folder, a.archive)
    print(f"{a.archive}: {n} finished runs of {a.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
