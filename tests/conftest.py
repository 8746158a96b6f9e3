"""Shared fixtures. Tests never load third-party plugins installed on the machine."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["ESX_DISABLE_PLUGIN_AUTOLOAD"] = "1"

import csv  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def registry():
    from esx.plugins import build_registry

    return build_registry()


@pytest.fixture
def tiny_recipe() -> dict:
    """A valid recipe mapping for a run of a second or two."""
    return tiny()


def tiny() -> dict:
    """The ``tiny_recipe`` fixture's mapping, for module-scoped fixtures."""
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


def fake_distribution(root: Path, dist: str, ep_name: str, module: str, code: str) -> None:
    """A minimal installed distribution with one `esx` entry point, on ``root`` (put
    ``root`` on PYTHONPATH to install it for a subprocess)."""
    (root / f"{module}.py").write_text(code)
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[esx]\n{ep_name} = {module}\n")


def esx_cli(args: list[str], pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESX_")}
    env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "esx", *args], capture_output=True, text=True, env=env, timeout=300
    )
