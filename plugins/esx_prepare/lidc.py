"""LIDC-IDRI -> esx's folder format, the way the MAGI paper prepares it.

For every CT series (a folder of DICOM slices with the readers' XML beside
them):

1. The XML's ``readingSession`` elements are the readers (up to four per
   scan, anonymised per scan: no identity across images). Each
   ``unblindedReadNodule`` is one reader's nodule, one ``roi`` per slice:
   ``imageZposition``, ``inclusion`` (the string TRUE/FALSE: FALSE carves a
   hole) and ``edgeMap`` pixel points (x = column, y = row). Nodules with no
   ROI of three or more points (the < 3 mm marks) are not kept, as in pylidc.
2. A ROI's mask is every pixel whose centre lies strictly inside its contour,
   without the contour pixels themselves (LIDC's edge pixels are the first
   pixels outside the nodule, pylidc's default); an exclusion ROI removes its
   inside and its contour.
3. The readers' nodules are grouped into physical nodules when their 3-D
   bounding boxes overlap (as in the DeepMind LIDC crops); a reader with two
   marks in one group contributes their union.
4. One positive image per nodule: the middle slice of the slices where the
   readers' 50% consensus is not empty, cropped to ``crop`` x ``crop`` around
   the nodule, lung window [-1000, 400] HU. Each reader who marked the nodule
   gives one mask (possibly empty on that slice); the others are missing.
5. The paper's boundary noise (``boundary_noise`` passes of flipping boundary
   pixels in or out) is added to every reader's mask; the reference mask
   (``truth/``) is the 50% consensus of the readers' masks *before* noise.
6. ``negatives`` crops per nodule from the same scan: slices at least
   ``margin`` slices away from every mark of every reader, centred on body
   tissue.

We parse the XML ourselves rather than use pylidc: pylidc 0.2.3 (the last
release) breaks on numpy >= 1.24, its fix was never released, and it needs a
config file to find the DICOM files.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from esx.data import safe_id
from esx.masks import boundary_noise
from esx_prepare.common import CaseError, Item, crop, window

LUNG_WINDOW = (-1000.0, 400.0)


class LidcOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    crop: int = Field(224, ge=8, description="side of the square crops, in pixels")
    max_readers: int = Field(4, ge=1, le=8, description="annotation slots per image")
    boundary_noise: int = Field(2, ge=0, description="passes of the paper's boundary noise; 0: off")
    negatives: int = Field(1, ge=0, description="negative crops per nodule")
    margin: int = Field(2, ge=0, description="slices between a negative and any mark")
    seed: int = 0


@dataclass
class Roi:
    z: float
    sop: str | None
    inclusion: bool
    points: np.ndarray  # (N, 2) as (x, y) = (column, row)


@dataclass
class Geometry:
    """Where a scan's slices lie: what a reader's marks are mapped onto."""

    z: np.ndarray  # (Z,) slice positions, sorted
    sop: dict[str, int]  # SOP instance UID -> slice index (may be empty)
    shape: tuple[int, int]  # (H, W) of a slice


@dataclass
class Series:
    volume: np.ndarray  # (Z, H, W) Hounsfield units, sorted by z
    z: np.ndarray  # (Z,)
    sop: dict[str, int]
    patient: str
    uid: str

    @property
    def shape(self) -> tuple[int, int]:
        return self.volume.shape[1:]


def find_cases(root: Path) -> list[tuple[str, Path]]:
    """Every folder under ``root`` holding an XML read and DICOM files, as (case id, folder)."""
    folders = sorted({p.parent for p in root.rglob("*.xml")})
    return [
        (str(f.relative_to(root)).replace("\\", "/"), f) for f in folders if any(f.glob("*.dcm"))
    ]


def _tag(el: ET.Element) -> str:
    return el.tag.rsplit("}", 1)[-1]


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _tag(c) == name]


def _text(el: ET.Element, name: str) -> str | None:
    for c in el.iter():
        if _tag(c) == name:
            return (c.text or "").strip()
    return None


def parse_xml(path: Path) -> tuple[str | None, list[list[list[Roi]]], list[float]]:
    """The series UID, readers -> nodules -> ROIs, and the z of every mark in the file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise CaseError(f"{path}: not valid XML ({exc}); re-download this read") from None
    if _tag(root) != "LidcReadMessage":
        raise CaseError(
            f"{path}: root element is {_tag(root)!r}, not LidcReadMessage "
            "(a radiograph read or another file); this folder is not a CT read"
        )
    sessions = _children(root, "readingSession")
    if not sessions:
        raise CaseError(
            f"{path}: no readingSession element, so no reader's marks; this read cannot give masks"
        )
    header = next((c for c in root if _tag(c) == "ResponseHeader"), None)
    uid = _text(header, "SeriesInstanceUid") if header is not None else None
    readers: list[list[list[Roi]]] = []
    marks: list[float] = []
    for session in sessions:
        nodules = []
        for nod in _children(session, "unblindedReadNodule"):
            rois = []
            for roi in _children(nod, "roi"):
                z_text, incl = _text(roi, "imageZposition"), _text(roi, "inclusion")
                try:
                    z = float(z_text)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    raise CaseError(
                        f"{path}: a roi has imageZposition {z_text!r}, not a number"
                    ) from None
                pts = [(_text(e, "xCoord"), _text(e, "yCoord")) for e in _children(roi, "edgeMap")]
                try:
                    points = np.array([(int(x), int(y)) for x, y in pts], dtype=np.int64)
                except (TypeError, ValueError):
                    raise CaseError(
                        f"{path}: an edgeMap of the roi at z={z} has a non-integer xCoord/yCoord"
                    ) from None
                marks.append(z)
                if incl is not None and incl.upper() not in ("TRUE", "FALSE"):
                    raise CaseError(
                        f"{path}: roi at z={z} has inclusion {incl!r}; expected TRUE or FALSE"
                    )
                rois.append(
                    Roi(
                        z,
                        _text(roi, "imageSOP_UID"),
                        (incl or "TRUE").upper() == "TRUE",
                        points.reshape(-1, 2),
                    )
                )
            if any(r.inclusion and len(r.points) >= 3 for r in rois):
                nodules.append(rois)
        for other in _children(session, "nonNodule"):
            z_text = _text(other, "imageZposition")
            if z_text:
                marks.append(float(z_text))
        readers.append(nodules)
    return uid, readers, marks


def read_series(folder: Path) -> Series:
    """The folder's DICOM slices as one volume in Hounsfield units, sorted by z."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    slices = []
    for path in sorted(folder.glob("*.dcm")):
        try:
            ds = pydicom.dcmread(path)
            pixels = ds.pixel_array.astype(np.float32)
            z = float(ds.ImagePositionPatient[2])
        except (
            InvalidDicomError,
            AttributeError,
            KeyError,
            ValueError,
            TypeError,
            OSError,
            EOFError,
            IndexError,
        ) as exc:
            raise CaseError(
                f"{path}: not a readable CT slice ({type(exc).__name__}: {exc}); "
                "re-download this series"
            ) from None
        hu = pixels * float(getattr(ds, "RescaleSlope", 1)) + float(
            getattr(ds, "RescaleIntercept", 0)
        )
        tags = [
            str(getattr(ds, t, "")) for t in ("SOPInstanceUID", "PatientID", "SeriesInstanceUID")
        ]
        slices.append((z, tags[0], hu, path, tags[1], tags[2]))
    if not slices:
        raise CaseError(f"{folder}: no DICOM slices (*.dcm)")
    shapes = {s[2].shape for s in slices}
    if len(shapes) > 1:
        raise CaseError(f"{folder}: slices of different sizes {sorted(shapes)}; not one CT series")
    slices.sort(key=lambda s: s[0])
    return Series(
        volume=np.stack([s[2] for s in slices]),
        z=np.array([s[0] for s in slices]),
        sop={s[1]: i for i, s in enumerate(slices) if s[1]},
        patient=slices[0][4],
        uid=slices[0][5],
    )


def contour_pixels(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The contour's own pixels, as a bool mask (points outside the image are dropped)."""
    out = np.zeros(shape, bool)
    x, y = points[:, 0], points[:, 1]
    ok = (x >= 0) & (x < shape[1]) & (y >= 0) & (y < shape[0])
    out[y[ok], x[ok]] = True
    return out


def polygon_inside(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside the polygon (even-odd rule), contour pixels excluded."""
    from matplotlib.path import Path as MplPath

    out = np.zeros(shape, bool)
    if len(points) < 3:
        return out
    x0, y0 = np.maximum(points.min(axis=0), 0)
    x1, y1 = np.minimum(points.max(axis=0), (shape[1] - 1, shape[0] - 1))
    if x1 < x0 or y1 < y0:
        return out
    yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    inside = MplPath(points.astype(float)).contains_points(
        np.column_stack([xx.ravel(), yy.ravel()]), radius=0.0
    )
    out[y0 : y1 + 1, x0 : x1 + 1] = inside.reshape(yy.shape)
    return out & ~contour_pixels(points, shape)


def roi_masks(rois: list[Roi], series: Series | Geometry, xml: Path) -> dict[int, np.ndarray]:
    """One reader's nodule as ``{slice index: mask}``: inclusions filled, exclusions carved.

    ``series`` gives the slices' positions (a :class:`Series` read from DICOM, or the
    :class:`Geometry` the annotation database records); ``xml`` names the source in errors.
    """
    shape = tuple(series.shape)
    step = float(np.median(np.diff(series.z))) if len(series.z) > 1 else 1.0
    per_slice: dict[int, list[Roi]] = {}
    for roi in rois:
        if roi.sop and roi.sop in series.sop:
            k = series.sop[roi.sop]
        else:
            k = int(np.argmin(np.abs(series.z - roi.z)))
            if abs(series.z[k] - roi.z) > max(abs(step) / 2, 1e-3):
                raise CaseError(
                    f"{xml}: a roi at z={roi.z} matches no slice of the series "
                    f"(slices at z {series.z.min():g}..{series.z.max():g}); is this "
                    "XML from another series?"
                )
        per_slice.setdefault(k, []).append(roi)
    out = {}
    for k, items in per_slice.items():
        mask = np.zeros(shape, bool)
        for roi in items:
            if roi.inclusion:
                mask |= polygon_inside(roi.points, shape)
        for roi in items:
            if not roi.inclusion:
                mask &= ~(polygon_inside(roi.points, shape) | contour_pixels(roi.points, shape))
        if mask.any():
            out[k] = mask
    return out


def _box(masks: dict[int, np.ndarray]) -> tuple[int, int, int, int, int, int]:
    zs = sorted(masks)
    union = np.any([masks[k] for k in zs], axis=0)
    rows, cols = np.nonzero(union)
    return zs[0], zs[-1], rows.min(), rows.max(), cols.min(), cols.max()


def _overlap(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return all(a[i] <= b[i + 1] and b[i] <= a[i + 1] for i in (0, 2, 4))


Marks = dict[int, np.ndarray]  # slice index -> mask


def group_nodules(readers: list[list[Marks]]) -> list[dict[int, Marks]]:
    """Physical nodules as ``{reader: {slice: mask}}``: marks joined when their boxes overlap."""
    marks = [(r, m) for r, nodules in enumerate(readers) for m in nodules if m]
    boxes = [_box(m) for _, m in marks]
    parent = list(range(len(marks)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(marks)):
        for j in range(i + 1, len(marks)):
            if marks[i][0] != marks[j][0] and _overlap(boxes[i], boxes[j]):
                parent[find(i)] = find(j)
    groups: dict[int, dict[int, dict[int, np.ndarray]]] = {}
    for i, (r, m) in enumerate(marks):
        g = groups.setdefault(find(i), {}).setdefault(r, {})
        for k, mask in m.items():
            g[k] = g[k] | mask if k in g else mask
    return [
        groups[k] for k in sorted(groups, key=lambda k: min(min(m) for m in groups[k].values()))
    ]


@dataclass
class NoduleCrops:
    """One physical nodule on its middle slice, before the boundary noise."""

    slice: int  # index of the middle slice
    center: tuple[float, float]  # (row, col) of the readers' union on that slice
    clean: list[np.ndarray]  # one crop x crop mask per reader who marked it (may be empty)
    truth: np.ndarray  # the readers' 50% consensus


def nodule_crops(nodule: dict[int, Marks], crop_size: int, max_readers: int) -> NoduleCrops:
    """The LIDC rules for one grouped nodule: the middle slice of the slices where the
    readers' 50% consensus is not empty, each reader's mask cropped around the readers'
    union there, and the truth = the 50% consensus of those masks."""
    who = sorted(nodule)[:max_readers]
    zs = sorted({k for r in who for k in nodule[r]})
    consensus = {
        k: np.mean(
            [nodule[r].get(k, np.zeros_like(next(iter(nodule[r].values())))) for r in who],
            axis=0,
        )
        >= 0.5
        for k in zs
    }
    good = [k for k in zs if consensus[k].any()] or zs
    k = good[len(good) // 2]
    union = np.any([nodule[r][k] for r in who if k in nodule[r]], axis=0)
    center = ndimage.center_of_mass(union)
    clean = [crop(nodule[r].get(k, np.zeros_like(union)), center, crop_size, False) for r in who]
    truth = np.mean(clean, axis=0) >= 0.5
    return NoduleCrops(k, center, clean, truth)


def noisy_masks(
    clean: list[np.ndarray], rng: np.random.Generator, passes: int, max_readers: int
) -> list[np.ndarray | None]:
    """The paper's boundary noise on every reader's mask; the readers who did not mark the
    nodule are missing slots (None) after them."""
    noisy = [boundary_noise(m, rng, steps=passes) if passes else m for m in clean]
    return noisy + [None] * (max_readers - len(noisy))


def prepare_case(case: str, folder: Path, opts: LidcOptions) -> tuple[str, list[Item]]:
    xmls = sorted(folder.glob("*.xml"))
    xml = xmls[0]
    uid, readers_rois, marks = parse_xml(xml)
    series = read_series(folder)
    if uid and series.uid and uid != series.uid:
        raise CaseError(
            f"{xml}: read of series {uid} but the DICOM files in {folder} are series {series.uid}"
        )
    readers = [[roi_masks(rois, series, xml) for rois in nodules] for nodules in readers_rois]
    nodules = group_nodules(readers)
    seed = int.from_bytes(hashlib.sha256(f"{opts.seed}:{case}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    base = safe_id("".join(ch if ch.isalnum() else "_" for ch in case)[-60:].strip("_"))
    items = []
    for n, nodule in enumerate(nodules):
        nc = nodule_crops(nodule, opts.crop, opts.max_readers)
        masks = noisy_masks(nc.clean, rng, opts.boundary_noise, opts.max_readers)
        image = window(
            crop(series.volume[nc.slice], nc.center, opts.crop, LUNG_WINDOW[0]), *LUNG_WINDOW
        )
        items.append(Item(f"{base}_n{n}", 1, image, masks, nc.truth))
    mark_idx = {int(np.argmin(np.abs(series.z - z))) for z in marks}
    free = [k for k in range(len(series.z)) if all(abs(k - m) > opts.margin for m in mark_idx)]
    for j in range(opts.negatives * len(nodules)):
        if not free:
            break
        k = int(rng.choice(free))
        sl = series.volume[k]
        half = opts.crop // 2
        body = np.argwhere(sl > -500)
        inner = body[
            (body[:, 0] >= half)
            & (body[:, 0] < sl.shape[0] - half)
            & (body[:, 1] >= half)
            & (body[:, 1] < sl.shape[1] - half)
        ]
        pool = inner if len(inner) else body
        center = (
            tuple(pool[rng.integers(len(pool))])
            if len(pool)
            else (sl.shape[0] / 2, sl.shape[1] / 2)
        )
        image = window(crop(sl, center, opts.crop, LUNG_WINDOW[0]), *LUNG_WINDOW)
        empty = np.zeros((opts.crop, opts.crop), bool)
        items.append(Item(f"{base}_neg{j}", 0, image, [None] * opts.max_readers, empty))
    return series.patient or case.split("/")[0], items
