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


def overlays(path: Path, batch: Batch, maps: Tensor, pred: Tensor) -> None:
    """One column per image: the image, the model's map over it, the true mask."""
    batch = batch.to("cpu")
    n = len(batch)
    size = batch.image.shape[-2:]
    up = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    fig, axes = plt.subplots(3, n, figsize=(2.2 * n, 6.6), squeeze=False)
    for j in range(n):
        img = batch.image[j, 0].numpy()
        axes[0, j].imshow(img, cmap="gray")
        axes[0, j].set_title(f"label {int(batch.label[j])} / pred {int(pred[j])}", fontsize=8)
        axes[1, j].imshow(img, cmap="gray")
        axes[1, j].imshow(up[j].numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        if batch.truth is not None:
            axes[2, j].imshow(batch.truth[j, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        for i in range(3):
            axes[i, j].axis("off")
    axes[0, 0].text(-0.15, 0.5, "image", transform=axes[0, 0].transAxes, rotation=90, va="center")
    axes[1, 0].text(-0.15, 0.5, "map", transform=axes[1, 0].transAxes, rotation=90, va="center")
    axes[2, 0].text(
        -0.15, 0.5, "true mask", transform=axes[2, 0].transAxes, rotation=90, va="center"
    )
    fig.tight_layout()
    save_png(fig, path)


def save_png(fig: plt.Figure, path: Path, dpi: int = 80) -> None:
    """Write a matplotlib figure as PNG, atomically, and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    outputs.write_bytes(path, buf.getvalue())
