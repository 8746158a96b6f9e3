"""MAGI's figures: a gallery like the paper's Fig. 4, and the learned annotator weights."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from esx.figures import save_png  # noqa: E402
from esx.masks import vote  # noqa: E402
from esx.types import Batch  # noqa: E402


@torch.no_grad()
def gallery(magi, batch: Batch, path: Path) -> None:
    """Rows: annotated test positives. Columns: image, observed masks, generated masks
    per slot, noisy consensus, generated consensus, true mask. Observed and generated masks
    share one colour map, so they compare at a glance; generated panels are titled so."""
    magi.eval()
    rows = (batch.annotated & (batch.label > 0)).nonzero().flatten()
    if len(rows) == 0:
        return
    b = Batch(
        **{k: (v[rows] if isinstance(v, torch.Tensor) else v) for k, v in vars(batch).items()}
    )
    probs, _, _ = magi.generate(b)
    gen = (magi.to_image(probs, b) > 0.5).float()
    u = gen.shape[1]
    noisy_c = vote(b.masks, b.mask_valid)
    gen_c = vote(gen, torch.ones_like(b.mask_valid))
    cols = 1 + u + u + 2 + (b.truth is not None)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.6 * cols, 1.7 * len(rows)), squeeze=False)
    for i in range(len(rows)):
        panels = [("image", b.image[i, 0], "gray")]
        panels += [
            (
                f"observed {v}" if b.mask_valid[i, v] else "missing\n(not drawn)",
                b.masks[i, v],
                "gray",
            )
            for v in range(u)
        ]
        panels += [(f"generated\nslot {k}", gen[i, k], "gray") for k in range(u)]
        panels += [
            ("vote of\nobserved", noisy_c[i, 0], "gray"),
            ("vote of\ngenerated", gen_c[i, 0], "gray"),
        ]
        if b.truth is not None:
            panels.append(("true mask", b.truth[i, 0], "gray"))
        for j, (title, img, cmap) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(
                img.cpu().numpy(), cmap=cmap, vmin=None if j == 0 else 0, vmax=None if j == 0 else 1
            )
            ax.axis("off")
            if i == 0 or title.startswith("missing"):
                ax.set_title(
                    title, fontsize=9, color="red" if title.startswith("missing") else "black"
                )
    fig.tight_layout()
    save_png(fig, path)


def weights(magi, path: Path) -> None:
    """The learned annotator weights w = softmax(ω); drawn only with ``targets: weighted``,
    the one mode in which they weigh the targets (otherwise they stay uniform)."""
    if magi.params.targets != "weighted":
        return
    w = magi.weights.detach().cpu().numpy()
    fig, ax = plt.subplots(figsize=(1 + 0.8 * len(w), 2.5))
    ax.bar([f"slot {i}" for i in range(len(w))], w, color="tab:blue")
    ax.axhline(1 / len(w), color="gray", linestyle="--", linewidth=1, label="uniform")
    ax.set_ylabel("weight w_u")
    ax.set_title("learned annotator weights")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)
