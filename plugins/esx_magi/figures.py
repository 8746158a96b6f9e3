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


def crop_box(masks: torch.Tensor, margin: float = 0.5, least: int = 16) -> tuple[int, ...]:
    """``(top, bottom, left, right)``: a square around every set pixel of ``masks (K, H,
    W)``, grown by ``margin`` of its side on each side and at least ``least`` pixels wide,
    kept inside the image; the whole image when no pixel is set."""
    h, w = masks.shape[-2:]
    ys, xs = masks.amax(0).nonzero(as_tuple=True)
    if len(ys) == 0:
        return 0, h, 0, w
    cy, cx = (int(ys.min()) + int(ys.max())) / 2, (int(xs.min()) + int(xs.max())) / 2
    span = max(int(ys.max()) - int(ys.min()), int(xs.max()) - int(xs.min())) + 1
    side = min(max(least, round(span * (1 + 2 * margin))), h, w)
    top = int(min(max(0, round(cy - side / 2)), h - side))
    left = int(min(max(0, round(cx - side / 2)), w - side))
    return top, top + side, left, left + side


@torch.no_grad()
def gallery(magi, batch: Batch, path: Path) -> None:
    """Rows: annotated test positives. Columns: image, observed masks, generated masks
    per slot, noisy consensus, generated consensus, true mask. Observed and generated masks
    share one colour map, so they compare at a glance; generated panels are titled so.
    Every panel of a row is cropped to one square around that row's masks (observed,
    generated and true), so masks a few pixels wide are visible; every panel is framed,
    so a mask marked everywhere (white) is not mistaken for an empty panel."""
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
        top, bottom, left, right = crop_box(torch.stack([p[1] for p in panels[1:]]).float())
        for j, (title, img, cmap) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(
                img[top:bottom, left:right].cpu().numpy(),
                cmap=cmap,
                vmin=None if j == 0 else 0,
                vmax=None if j == 0 else 1,
            )
            # a frame, not axis("off"): a mask marked everywhere is white on white otherwise
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("0.6")
                spine.set_linewidth(0.6)
            if i == 0 or title.startswith("missing"):
                ax.set_title(
                    title, fontsize=9, color="red" if title.startswith("missing") else "black"
                )
        axes[i, 0].set_ylabel(f"rows {top}-{bottom}\ncols {left}-{right}", fontsize=7)
    fig.suptitle(
        "masks: white = marked, black = not; each row cropped around its masks "
        "(the crop's pixels on the left)",
        fontsize=9,
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
