"""Tiny LIDC-IDRI and MSD-pancreas look-alikes, for tests and for trying the commands.

``write_lidc(root)`` writes a few CT series (DICOM slices plus an XML read
beside them, in LIDC's layout and schema) and returns what it drew;
``write_msd(root)`` writes ``imagesTr/`` and ``labelsTr/`` NIfTI volumes.
Nothing here is real patient data.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NS = "http://www.nih.gov"


@dataclass
class Mark:
    """One reader's nodule: a disc of ``radius`` on slices ``z0..z1``; ``hole`` carves a
    disc of that radius at the centre of the middle slice (an ``inclusion`` FALSE ROI)."""

    center: tuple[int, int]
    radius: int
    z0: int
    z1: int
    hole: int = 0  # on slice (z0 + z1 + 1) // 2


@dataclass
class LidcCase:
    patient: str
    folder: Path
    xml: Path
    z: list[float]
    readers: list[list[Mark]] = field(default_factory=list)


def disc_contour(center: tuple[int, int], radius: float) -> np.ndarray:
    """A closed, pixel-connected contour just outside a disc, as (x, y) points in order."""
    cy, cx = center
    r = int(np.ceil(radius)) + 2
    yy, xx = np.mgrid[cy - r : cy + r + 1, cx - r : cx + r + 1]
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    from scipy import ndimage

    ring = ndimage.binary_dilation(inside, structure=np.ones((3, 3), bool)) & ~inside
    ys, xs = np.nonzero(ring)
    pts = np.column_stack([xs + cx - r, ys + cy - r])
    order = np.argsort(np.arctan2(pts[:, 1] - cy, pts[:, 0] - cx), kind="stable")
    return pts[order]


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, f"{{{NS}}}{tag}")
    if text is not None:
        el.text = text
    return el


def _roi(parent: ET.Element, z: float, sop: str, inclusion: bool, points: np.ndarray) -> None:
    roi = _sub(parent, "roi")
    _sub(roi, "imageZposition", f"{z:.3f}")
    _sub(roi, "imageSOP_UID", sop)
    _sub(roi, "inclusion", "TRUE" if inclusion else "FALSE")
    for x, y in points:
        edge = _sub(roi, "edgeMap")
        _sub(edge, "xCoord", str(int(x)))
        _sub(edge, "yCoord", str(int(y)))


def write_lidc_case(
    root: Path,
    patient: str,
    readers: list[list[Mark]],
    size: int = 64,
    slices: int = 16,
    seed: int = 0,
    tiny_mark: bool = True,
) -> LidcCase:
    """One series: DICOM slices (``size`` px, 2.5 mm apart) and its XML read."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(seed)
    series_uid, study_uid = generate_uid(), generate_uid()
    folder = root / patient / "01-01-2000-CT" / "3000-series"
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    body = ((yy - size / 2) / (0.46 * size)) ** 2 + ((xx - size / 2) / (0.48 * size)) ** 2 <= 1
    zs = [-100.0 + 2.5 * i for i in range(slices)]
    sops = []
    for i, z in enumerate(zs):
        hu = np.where(body, -800.0, -1000.0) + rng.normal(0, 20, (size, size))
        for marks in readers:
            for m in marks:
                if m.z0 <= i <= m.z1:
                    hu[(yy - m.center[0]) ** 2 + (xx - m.center[1]) ** 2 <= m.radius**2] = 40.0
        sop = generate_uid()
        sops.append(sop)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.PatientID, ds.Modality = patient, "CT"
        ds.SeriesInstanceUID, ds.StudyInstanceUID = series_uid, study_uid
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 2.5
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024.0, 1.0
        ds.PixelData = np.clip(hu + 1024, 0, 4095).astype(np.uint16).tobytes()
        pydicom.dcmwrite(folder / f"1-{i + 1:03d}.dcm", ds, enforce_file_format=True)
    msg = ET.Element(f"{{{NS}}}LidcReadMessage")
    header = _sub(msg, "ResponseHeader")
    _sub(header, "SeriesInstanceUid", series_uid)
    _sub(header, "StudyInstanceUID", study_uid)
    for r, marks in enumerate(readers):
        session = _sub(msg, "readingSession")
        _sub(session, "annotationVersion", "3.12")
        _sub(session, "servicingRadiologistID", f"reader{r}")
        for n, m in enumerate(marks):
            nod = _sub(session, "unblindedReadNodule")
            _sub(nod, "noduleID", f"N{r}{n}")
            chars = _sub(nod, "characteristics")
            _sub(chars, "malignancy", "3")
            for i in range(m.z0, m.z1 + 1):
                _roi(nod, zs[i], sops[i], True, disc_contour(m.center, m.radius))
                if m.hole and i == (m.z0 + m.z1 + 1) // 2:
                    _roi(nod, zs[i], sops[i], False, disc_contour(m.center, m.hole))
        if tiny_mark and r == len(readers) - 1:  # a < 3 mm nodule: one point, not kept
            nod = _sub(session, "unblindedReadNodule")
            _sub(nod, "noduleID", "small")
            _roi(nod, zs[1], sops[1], True, np.array([[5, 5]]))
    ET.ElementTree(msg).write(folder / "069.xml", xml_declaration=True, encoding="utf-8")
    return LidcCase(patient, folder, folder / "069.xml", zs, readers)


def default_readers(shift: int = 0) -> list[list[Mark]]:
    """Four readers, two nodules: A marked by readers 0-2 (reader 2 with a hole), B by 0 and 3."""
    a = (30 + shift, 22)
    b = (20, 44 - shift)
    return [
        [Mark(a, 7, 3, 7), Mark(b, 5, 4, 6)],
        [Mark(a, 6, 3, 6)],
        [Mark(a, 8, 2, 7, hole=3)],
        [Mark(b, 4, 4, 6)],
    ]


def write_lidc(root: Path, patients: int = 3, size: int = 64) -> list[LidcCase]:
    """``patients`` series in LIDC-IDRI's folder layout, each with :func:`default_readers`."""
    return [
        write_lidc_case(root, f"LIDC-IDRI-{p + 1:04d}", default_readers(p), size=size, seed=p)
        for p in range(patients)
    ]


def write_msd(root: Path, cases: int = 3, shape: tuple[int, int, int] = (48, 48, 24)) -> list[str]:
    """``cases`` volumes in MSD Task07_Pancreas's layout (labels 0, 1 pancreas, 2 tumour)."""
    import nibabel as nib

    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    names = []
    x, y, z = np.mgrid[0 : shape[0], 0 : shape[1], 0 : shape[2]]
    for c in range(cases):
        rng = np.random.default_rng(c)
        pancreas = (
            ((x - 24) / 14.0) ** 2 + ((y - 24 - c) / 6.0) ** 2 + ((z - 12) / 10.0) ** 2
        ) <= 1
        tumour = ((x - 28) ** 2 + (y - 24 - c) ** 2 + ((z - 16) * 1.5) ** 2) <= 16
        lab = np.where(tumour, 2, np.where(pancreas, 1, 0)).astype(np.uint8)
        vol = np.where(pancreas, 100.0, 0.0) + np.where(tumour, -60.0, 0.0)
        vol = (vol + rng.normal(0, 10, shape)).astype(np.int16)
        name = f"pancreas_{c + 1:03d}"
        affine = np.diag([0.8, 0.8, 2.5, 1.0])
        nib.save(nib.Nifti1Image(vol, affine), root / "imagesTr" / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(lab, affine), root / "labelsTr" / f"{name}.nii.gz")
        names.append(name)
    return names
