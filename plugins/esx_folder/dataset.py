"""A dataset read from esx's folder format (documented in docs/howto/own-data.md).

```
ROOT/
  samples.csv            id,label,split   (split: train | val | test)
  images/<id>.png|.npy   grayscale or RGB PNG, or a .npy array (H, W) or (C, H, W)
  masks/<id>_<k>.png|.npy   annotation slot k = 0..U-1; a missing file = a missing annotation
  truth/<id>.png|.npy    optional: the reference mask (evaluation only)
```

Masks are binary: PNG values {0, 255} or {0, 1}, arrays {0, 1}. Every file is
checked when the dataset is built, so a bad file stops the run before the
first step with an error naming the file, what is wrong and the fix.

An id is a name, never a path: letters, digits, ``-``, ``_`` and ``.``, not
starting with ``.`` (so no ``..``, separator, wildcard or absolute path).
Mask files are matched exactly (``<id>_<k>.png|.npy``), never by pattern, and
every file read must resolve inside the dataset folder, symbolic links
included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from esx.data import SAFE_ID, SAFE_ID_RULE, Sample, validate_sample
from esx.errors import DataError, DataMissingError
from esx.inputs import read_csv
from esx.interfaces import BuildContext, DataInfo, Dataset, Params

SUFFIXES = (".png", ".npy")


class FolderParams(Params):
    root: str = Field(description="the dataset folder (holds samples.csv)")
    num_annotators: int = Field(4, ge=1, le=8, description="annotation slots U")
    mean: float = Field(0.5, description="image standardisation: (x - mean) / std, x in [0, 1]")
    std: float = Field(0.25, gt=0, description="image standardisation divisor")
    allow_unannotated: bool = Field(
        False, description="let positive images without any mask train on their label only"
    )
    synthetic: bool = Field(False, description="set true for generated data")


def read_array(path: Path) -> np.ndarray:
    """A PNG or .npy file as a float array, ``(C, H, W)`` for images; never unpickles."""
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(path) as im:
                arr = np.asarray(im)
                if arr.ndim == 3:
                    arr = arr.transpose(2, 0, 1)
    except Exception as exc:  # decoders raise many kinds (EOFError on an empty .npy, ...)
        raise DataError(
            f"{path}: cannot read this file ({type(exc).__name__}: {exc}); re-export it as "
            "PNG or .npy"
        ) from None
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DataError(f"{path}: expected (H, W) or (C, H, W), got shape {arr.shape}")
    return arr.astype(np.float32)


def _find(folder: Path, stem: str) -> Path | None:
    for suffix in SUFFIXES:
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def _mask_files(folder: Path) -> dict[str, dict[int, Path]]:
    """``masks/<id>_<k>.png|.npy`` by id and slot, from one listing of the folder."""
    found: dict[str, dict[int, Path]] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        stem, _, slot = path.stem.rpartition("_")
        if path.suffix in SUFFIXES and stem and slot.isdigit():
            found.setdefault(stem, {}).setdefault(int(slot), path)
    return found


def _binary(arr: np.ndarray, path: Path) -> np.ndarray:
    values = np.unique(arr)
    if set(values.tolist()) <= {0.0, 255.0} and 255.0 in values:
        arr = arr / 255.0
    elif not set(values.tolist()) <= {0.0, 1.0}:
        bad = next(v for v in values.tolist() if v not in (0.0, 1.0, 255.0))
        raise DataError(
            f"{path}: masks must be binary (0/1 or 0/255), found value {bad}; "
            "threshold the mask before saving it"
        )
    return arr[:1]


class FolderSplit(torch.utils.data.Dataset):
    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]


class FolderDataset(Dataset):
    """Reads, validates and keeps in memory every sample of the folder."""

    Params = FolderParams

    @classmethod
    def example_params(cls, workdir: Path) -> dict[str, Any]:
        """Writes the smallest valid folder (two 16-px images per split, two annotators)."""
        from PIL import Image

        rows = ["id,label,split"]
        for split in cls.SPLITS:
            for i in range(2):
                sid = f"{split}{i}"
                rows.append(f"{sid},{i},{split}")
                (workdir / "images").mkdir(parents=True, exist_ok=True)
                (workdir / "masks").mkdir(exist_ok=True)
                image = np.full((16, 16), 40 * (i + 1), np.uint8)
                Image.fromarray(image).save(workdir / "images" / f"{sid}.png")
                if i:  # positives carry two masks
                    mask = np.zeros((16, 16), np.uint8)
                    mask[4:10, 4:10] = 255
                    for slot in range(2):
                        Image.fromarray(np.roll(mask, slot, 0)).save(
                            workdir / "masks" / f"{sid}_{slot}.png"
                        )
        (workdir / "samples.csv").write_text("\n".join(rows) + "\n")
        return {"root": str(workdir), "num_annotators": 2}

    def __init__(self, params: FolderParams, context: BuildContext) -> None:
        super().__init__(params, context)
        self.root = Path(params.root).expanduser()
        if not (self.root / "samples.csv").is_file():
            raise DataMissingError(
                f"data.params.root: no samples.csv in {self.root}; point root at a folder in "
                "esx's format (docs/howto/own-data.md) or prepare one with `esx data prepare "
                "lidc|msd-pancreas --root RAW --out FOLDER`"
            )
        self._splits = self._load()

    def _inside(self, path: Path) -> Path:
        """``path``, checked to resolve inside the dataset folder (links followed)."""
        real, root = path.resolve(), self.root.resolve()
        if not real.is_relative_to(root):
            raise DataError(
                f"{path} resolves to {real}, outside the dataset folder {root}; a dataset "
                "reads only files inside its own folder: copy the file in instead of linking it"
            )
        return path

    def _rows(self) -> list[dict[str, str]]:
        path = self.root / "samples.csv"
        rows = read_csv(path)
        missing = {"id", "label", "split"} - set(rows[0] if rows else {})
        if missing:
            raise DataError(
                f"{path}: missing column(s) {sorted(missing)}; the header must be id,label,split"
            )
        problems, seen = [], {}
        for n, row in enumerate(rows, 2):
            sid = row["id"] or ""
            if not SAFE_ID.fullmatch(sid):
                problems.append(f"{path}:{n}: id {sid!r} refused: {SAFE_ID_RULE}")
            elif sid in seen:
                problems.append(
                    f"{path}:{n}: id {sid!r} already on line {seen[sid]}; ids are unique"
                )
            seen.setdefault(sid, n)
        if problems:
            raise DataError(
                "\n".join(
                    [
                        f"{len(problems)} refused id(s); rename them in "
                        "samples.csv and their files:",
                        *problems,
                    ]
                )
            )
        for n, row in enumerate(rows, 2):
            if row["split"] not in self.SPLITS:
                raise DataError(f"{path}:{n}: split {row['split']!r} is not train, val or test")
            if row["label"] not in ("0", "1"):
                raise DataError(f"{path}:{n}: label {row['label']!r} must be 0 or 1")
        return rows

    def _load(self) -> dict[str, list[Sample]]:
        p = self.params
        splits: dict[str, list[Sample]] = {s: [] for s in self.SPLITS}
        shape = None
        mask_files = _mask_files(self.root / "masks")
        for row in self._rows():
            sid = row["id"]
            img_path = _find(self.root / "images", sid)
            if img_path is None:
                raise DataError(
                    f"{self.root / 'images'}: no image for id {sid!r} "
                    f"(expected {sid}.png or {sid}.npy)"
                )
            image = read_array(self._inside(img_path))
            if img_path.suffix == ".png":
                image = image / 255.0
            shape = shape or image.shape
            if image.shape != shape:
                raise DataError(
                    f"{img_path}: shape {image.shape} differs from the first "
                    f"image's {shape}; resize all images to one size"
                )
            masks = np.zeros((p.num_annotators, *image.shape[-2:]), np.float32)
            valid = np.zeros(p.num_annotators, bool)
            for slot, mpath in mask_files.get(sid, {}).items():
                if slot >= p.num_annotators:
                    raise DataError(
                        f"{mpath}: annotation slot {slot} but the recipe allows "
                        f"{p.num_annotators} annotators; raise "
                        "data.params.num_annotators"
                    )
                m = _binary(read_array(self._inside(mpath)), mpath)
                if m.shape[-2:] != image.shape[-2:]:
                    raise DataError(
                        f"{mpath}: mask is {m.shape[-2]}x{m.shape[-1]} but its "
                        f"image is {image.shape[-2]}x{image.shape[-1]}"
                    )
                masks[slot], valid[slot] = m[0], True
            label = int(row["label"])
            if label == 1 and not valid.any() and not p.allow_unannotated:
                raise DataError(
                    f"{self.root / 'masks'}: positive image {sid!r} has no "
                    "annotation; add its masks or set data.params.allow_unannotated:"
                    " true to train it on its label only"
                )
            truth_path = _find(self.root / "truth", sid)
            truth = None
            if truth_path is not None:
                truth = torch.from_numpy(
                    _binary(read_array(self._inside(truth_path)), truth_path)
                ).to(torch.uint8)
            sample = Sample(
                image=(torch.from_numpy(image) - p.mean) / p.std,
                label=label,
                masks=torch.from_numpy(masks).to(torch.uint8),
                mask_valid=torch.from_numpy(valid),
                index=len(splits[row["split"]]),
                truth=truth,
            )
            validate_sample(sample, str(img_path))
            splits[row["split"]].append(sample)
        for name, items in splits.items():
            if not items:
                raise DataError(
                    f"{self.root / 'samples.csv'}: the {name} split is empty; "
                    "every split needs at least one image"
                )
        if not any(s.mask_valid.any() for s in splits["train"]):
            raise DataError(
                f"{self.root}: no training image has any annotation, so nothing can "
                "supervise the explanations; add masks under masks/"
            )
        truths = {s.truth is not None for items in splits.values() for s in items}
        if len(truths) > 1:
            raise DataError(
                f"{self.root / 'truth'}: some images have a true mask and others "
                "not; give every image one or none"
            )
        self._shape = shape
        self._has_truth = truths == {True}
        return splits

    @property
    def info(self) -> DataInfo:
        return DataInfo(
            name=f"folder:{self.root.name}",
            synthetic=self.params.synthetic,
            in_chans=self._shape[0],
            num_classes=2,
            image_size=tuple(self._shape[-2:]),
            num_annotators=self.params.num_annotators,
            has_truth=self._has_truth,
            splits={k: len(v) for k, v in self._splits.items()},
            details={"root": str(self.root), **self._provenance()},
        )

    def _provenance(self) -> dict[str, str]:
        """What ``esx data prepare`` recorded it made this folder from, if it did."""
        import json

        try:
            return {
                "prepared_from": str(
                    json.loads((self.root / "prepare.json").read_text(encoding="utf-8"))["source"]
                )
            }
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def split(self, name: str) -> FolderSplit:
        return FolderSplit(self._splits[name])
