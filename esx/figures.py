"""Figures written into the run folder."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402

from esx import outputs  # noqa: E402
from esx.types import Batch  # noqa: E402


def overlays(path: Path, batch: Batch, maps: Tensor, pred: Tensor, explainer: str = "") -> None:
    """One column per image: the image, the model's map over it, the true mask.

    Each column is titled with its label and prediction, "correct" or, in red,
    "MISTAKE"; the map row has a colour bar (maps are min-max normalised to [0, 1]).
    """
    batch = batch.to("cpu")
    n = len(batch)
    size = batch.image.shape[-2:]
    up = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    fig, axes = plt.subplots(3, n, figsize=(2.3 * n + 0.8, 7.0), squeeze=False)
    shown = None
    for j in range(n):
        img = batch.image[j, 0].numpy()
        label, guess = int(batch.label[j]), int(pred[j])
        axes[0, j].imshow(img, cmap="gray")
        right = "correct" if label == guess else "MISTAKE"
        axes[0, j].set_title(
            f"label {label}, predicted {guess}\n{right}",
            fontsize=10,
            color="black" if label == guess else "red",
        )
        axes[1, j].imshow(img, cmap="gray")
        shown = axes[1, j].imshow(up[j].numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        if batch.truth is not None:
            axes[2, j].imshow(batch.truth[j, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        for i in range(3):
            axes[i, j].axis("off")
    rows = ("image", f"{explainer or 'explanation'} map\n(predicted class)", "true mask")
    for i, name in enumerate(rows):
        axes[i, 0].text(
            -0.12,
            0.5,
            name,
            transform=axes[i, 0].transAxes,
            rotation=90,
            va="center",
            ha="right",
            fontsize=10,
        )
    right_n = sum(int(batch.label[j]) == int(pred[j]) for j in range(n))
    fig.suptitle(
        f"{right_n} correct predictions, {n - right_n} mistakes (test images)", fontsize=11
    )
    fig.tight_layout(rect=(0.02, 0, 0.88, 0.96))  # room on the right for the colour bar
    if shown is not None:
        box = axes[1, -1].get_position()
        bar = fig.colorbar(shown, cax=fig.add_axes((0.9, box.y0, 0.015, box.height)))
        bar.set_label("map value\n(1 = most attributed)", fontsize=8)
    save_png(fig, path)


def save_png(fig: plt.Figure, path: Path, dpi: int = 80) -> None:
    """Write a matplotlib figure as PNG, atomically, and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    outputs.write_bytes(path, buf.getvalue())
