"""MSD Task07_Pancreas -> esx's folder format, with simulated annotators.

For every training volume (``imagesTr/<case>.nii.gz`` with its
``labelsTr/<case>.nii.gz``; labels 0 background, 1 pancreas, 2 tumour):

1. One positive image: the middle axial slice of the tumour's slices, cropped
   to ``crop`` x ``crop`` around the tumour, abdominal window [-160, 240] HU.
   The tumour (label 2) is the reference mask (``truth/``).
2. MSD has one annotation per case, so the annotators are simulated with the
   phantom's personality models (``esx_phantom.annotators``): each draws the
   tumour its way with probability ``p_annotate``; ``wrong_object`` marks the
   rest of the pancreas instead. A positive keeps at least one annotation: when
   no simulated annotator drew, the first one does.
3. ``negatives`` images per case: axial slices through the pancreas at least
   ``margin`` slices away from the tumour (any, in a case without tumour),
   centred on the pancreas.

The paper took its negatives from other patients (TCIA's healthy pancreas
scans), which MSD does not include; slices of the same patients away from
the tumour stand in, and the split keeps each patient in one split.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy import ndimage

from esx.data import safe_id
from esx_phantom.annotators import AnnotatorSpec, annotate
from esx_phantom.render import Slice
from esx_prepare.common import CaseError, Item, crop, window

ABDOMEN_WINDOW = (-160.0, 240.0)

DEFAULT_ANNOTATORS = [
    AnnotatorSpec(kind="accurate", p_annotate=1.0),
    AnnotatorSpec(kind="boundary_noisy", p_annotate=0.7, strength=1.5),
    AnnotatorSpec(kind="conservative", p_annotate=0.7),
    AnnotatorSpec(kind="aggressive", p_annotate=0.7),
]


class PancreasOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    crop: int = Field(224, ge=8)
    annotators: list[AnnotatorSpec] = Field(default_factory=lambda: list(DEFAULT_ANNOTATORS))
    negatives: int = Field(1, ge=0, description="negative slices per case")
    margin: int = Field(5, ge=0, description="slices between a negative and the tumour")
    seed: int = 0

    @field_validator("annotators", mode="before")
    @classmethod
    def _from_text(cls, value: object) -> object:
        return parse_annotators(value) if isinstance(value, str) else value


def parse_annotators(text: str) -> list[AnnotatorSpec]:
    """``"accurate:1,conservative:0.7"`` -> annotator specs (kind:p_annotate[:strength])."""
    from pydantic import ValidationError

    from esx.errors import EsxError

    specs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        bits = part.split(":")
        try:
            fields = dict(zip(("kind", "p_annotate", "strength"), bits, strict=False))
            if len(bits) > 3:
                raise ValueError
            specs.append(AnnotatorSpec.model_validate(fields))
        except (ValidationError, ValueError):
            kinds = ", ".join(AnnotatorSpec.model_fields["kind"].annotation.__args__)
            raise EsxError(
                f"--annotators: {part!r} is not kind[:p_annotate[:strength]] with kind "
                f"one of {kinds} and p_annotate in [0, 1]"
            ) from None
    if not specs:
        raise EsxError("--annotators: give at least one annotator, e.g. accurate:1")
    return specs


def find_cases(root: Path) -> list[tuple[str, Path]]:
    images = root / "imagesTr"
    if not images.is_dir():
        from esx.errors import EsxError

        raise EsxError(f"--root {root}: no imagesTr/ folder; point --root at Task07_Pancreas")
    files = sorted(p for p in images.glob("*.nii*") if not p.name.startswith("._"))
    return [(p.name.split(".nii")[0], p) for p in files]


def load(path: Path) -> np.ndarray:
    """A NIfTI volume as a 3-D array, or a :class:`CaseError` naming the file."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    if not path.is_file():
        raise CaseError(f"{path}: missing; every image in imagesTr/ needs its labelsTr/ file")
    try:
        arr = np.asanyarray(nib.load(path).dataobj)
    except (ImageFileError, EOFError, OSError, zlib.error, ValueError) as exc:
        raise CaseError(
            f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc}); re-download it"
        ) from None
    if arr.ndim != 3 or arr.size == 0:
        raise CaseError(f"{path}: expected a non-empty 3-D volume, got shape {arr.shape}")
    return arr


def prepare_case(case: str, image_path: Path, opts: PancreasOptions) -> tuple[str, list[Item]]:
    label_path = image_path.parent.parent / "labelsTr" / image_path.name
    vol = load(image_path).astype(np.float32)
    lab = load(label_path)
    if lab.shape != vol.shape:
        raise CaseError(f"{label_path}: labels of shape {lab.shape} but the image is {vol.shape}")
    values = set(np.unique(lab).tolist())
    if not values <= {0, 1, 2}:
        raise CaseError(
            f"{label_path}: label values {sorted(values)}; MSD pancreas labels are "
            "0 (background), 1 (pancreas), 2 (tumour)"
        )
    seed = int.from_bytes(hashlib.sha256(f"{opts.seed}:{case}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    tumour, pancreas = lab == 2, lab >= 1
    zs = np.nonzero(tumour.any(axis=(0, 1)))[0]
    items: list[Item] = []
    u = len(opts.annotators)
    if len(zs):
        k = int(zs[len(zs) // 2])
        t2d = tumour[:, :, k].T
        center = ndimage.center_of_mass(t2d)
        truth = crop(t2d, center, opts.crop, False)
        organ = crop(pancreas[:, :, k].T, center, opts.crop, False) & ~truth
        image = window(crop(vol[:, :, k].T, center, opts.crop, -1000.0), *ABDOMEN_WINDOW)
        sl = Slice(
            image=image,
            lesion=truth,
            lookalike=organ,
            cue=np.zeros_like(truth),
            lesion_radius=float(np.sqrt(truth.sum() / np.pi)),
        )
        drawn = [rng.random() < spec.p_annotate for spec in opts.annotators]
        if not any(drawn):
            drawn[0] = True
        masks: list[np.ndarray | None] = [
            annotate(spec, sl, rng).astype(bool) if d else None
            for spec, d in zip(opts.annotators, drawn, strict=True)
        ]
        items.append(Item(f"{safe_id(case)}_pos", 1, image, masks, truth))
    organ_z = np.nonzero(pancreas.any(axis=(0, 1)))[0]
    free = [
        z
        for z in organ_z
        if not len(zs) or z < zs.min() - opts.margin or z > zs.max() + opts.margin
    ]
    for j, z in enumerate(rng.permutation(free)[: opts.negatives]):
        p2d = pancreas[:, :, int(z)].T
        center = ndimage.center_of_mass(p2d)
        image = window(crop(vol[:, :, int(z)].T, center, opts.crop, -1000.0), *ABDOMEN_WINDOW)
        items.append(
            Item(
                f"{safe_id(case)}_neg{j}",
                0,
                image,
                [None] * u,
                np.zeros((opts.crop, opts.crop), bool),
            )
        )
    return case, items
