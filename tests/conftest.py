"""Shared fixtures. Tests never load third-party plugins installed on the machine."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["ESX_DISABLE_PLUGIN_AUTOLOAD"] = "1"

import csv  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def registry():
    from esx.plugins import build_registry

    return build_registry()


@pytest.fixture
def tiny_recipe() -> dict:
    """A valid recipe mapping for a run of a second or two."""
    return {
        "version": 1,
        "seed": 0,
        "data": {
            "name": "phantom",
            "params": {"image_size": 64, "n_train": 8, "n_val": 8, "n_test": 8},
        },
        "backbone": {"name": "timm", "params": {"arch": "test_resnet", "zero_init_last": False}},
        "explainer": {"name": "gradcam"},
        "aggregator": {"name": "consensus"},
        "loss": {"name": "gradia"},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3, "eval_batch_size": 8},
        "eval": {"overlays": 2},
    }


def make_batch(b: int = 4, u: int = 3, size: int = 32, seed: int = 0):
    """A random batch: half positive, random masks, some missing."""
    from esx.types import Batch

    g = torch.Generator().manual_seed(seed)
    label = torch.arange(b) % 2
    masks = (torch.rand(b, u, size, size, generator=g) > 0.7).float()
    valid = torch.rand(b, u, generator=g) > 0.3
    valid[:, 0] |= label.bool()
    valid &= label.bool()[:, None]
    masks = masks * valid[..., None, None]
    truth = (torch.rand(b, 1, size, size, generator=g) > 0.8).float() * label[:, None, None, None]
    return Batch(
        image=torch.randn(b, 1, size, size, generator=g),
        label=label,
        masks=masks,
        mask_valid=valid,
        truth=truth,
        index=torch.arange(b),
    )


SIZE = 32


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)


def make_folder(root, n=4):
    """A valid dataset in the folder format: n images per split, 2 annotators."""
    rng = np.random.default_rng(0)
    rows = []
    for split in ("train", "val", "test"):
        for i in range(n):
            sid = f"{split}{i}"
            label = i % 2
            rows.append({"id": sid, "label": label, "split": split})
            _png(root / "images" / f"{sid}.png", rng.integers(0, 255, (SIZE, SIZE)))
            truth = np.zeros((SIZE, SIZE))
            if label:
                truth[8:16, 8:16] = 255
                _png(root / "masks" / f"{sid}_0.png", truth)
                _png(root / "masks" / f"{sid}_1.png", np.roll(truth, 2, axis=0))
            _png(root / "truth" / f"{sid}.png", truth)
    with (root / "samples.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["id", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    return root
