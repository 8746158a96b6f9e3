"""The report's figures, as PNG bytes (matplotlib, headless)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from esx import outputs  # noqa: E402


def png(fig: Any, dpi: int = 90, tight: bool = True) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return buf.getvalue()


def write(path: Path, fig: Any) -> None:
    outputs.write_bytes(path, png(fig, tight=False))


def _bars(ax: Any, records: list[dict[str, Any]], cols: list[str], labels: list[str]) -> None:
    width = 0.8 / len(cols)
    for i, (k, label) in enumerate(zip(cols, labels, strict=True)):
        ax.bar(
            [x + width * (i - (len(cols) - 1) / 2) for x in range(len(records))],
            [r[k][0] for r in records],
            width,
            yerr=[r[k][1] for r in records],
            label=label,
            capsize=2,
        )
    ax.set_xticks(list(range(len(records))))
    ax.set_xticklabels([r["method"] for r in records], rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0, 1)


def classification(path: Path, t1: list[dict[str, Any]]) -> None:
    """Accuracy, F1 and AUC of each row, mean ± std over runs."""
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(t1)), 3.4))
    _bars(ax, t1, ["accuracy", "f1", "auc"], ["accuracy", "f1", "auc"])
    ax.set_ylabel("test score (mean ± std over runs)")
    ax.set_title("Classification on the test split")
    ax.legend(fontsize=7)
    fig.tight_layout()
    write(path, fig)


def groups(path: Path, grouped: list[dict[str, Any]]) -> None:
    """Each row's accuracy on each group of test images, mean ± std over runs."""
    cols = [k for k in grouped[0] if k not in ("group", "method", "runs")]
    fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(grouped) + 3), 3.4))
    _bars(ax, grouped, cols, [k.removeprefix("accuracy_") for k in cols])
    ax.set_ylabel("test accuracy (mean ± std over runs)")
    ax.set_title("Accuracy on each group of test images")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    write(path, fig)


def history(rows: list[dict[str, str]], best_epoch: int | None) -> bytes | None:
    """Learning curves: every training loss on the left, every validation metric on the
    right, the chosen epoch marked."""
    if not rows:
        return None
    epochs = [int(r["epoch"]) for r in rows]
    keys = [k for k in rows[0] if k != "epoch"]
    left = [k for k in keys if not k.startswith("val_") or k == "val_loss"]
    right = [k for k in keys if k.startswith("val_") and k != "val_loss"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, group, title in ((axes[0], left, "losses"), (axes[1], right, "validation")):
        for k in group:
            ys = [float(r[k]) if r.get(k) not in ("", None) else float("nan") for r in rows]
            ax.plot(epochs, ys, marker=".", label=k)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label="chosen epoch")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)


def paired(records: list[dict[str, Any]], metrics: tuple[str, ...]) -> bytes | None:
    """Each row's paired difference from its reference, with the 95% interval."""
    shown = [r for r in records if r[metrics[0]].get("n", 0) >= 2]
    if not shown:
        return None
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(3.6 * len(metrics), 0.42 * len(shown) + 1.2), sharey=True
    )
    axes = list(axes) if len(metrics) > 1 else [axes]
    labels = [f"{r['method']} − {r['reference']}" for r in shown]
    for ax, m in zip(axes, metrics, strict=True):
        for y, r in enumerate(shown):
            d = r[m]
            colour = {"better": "#0a6b1f", "worse": "#a3140b"}.get(d.get("verdict"), "#555")
            err = [[d["mean"] - d["low"]], [d["high"] - d["mean"]]]
            ax.errorbar(d["mean"], y, xerr=err, fmt="o", color=colour, capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"{m}: difference, 95% interval", fontsize=9)
        ax.set_yticks(range(len(shown)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
    fig.tight_layout()
    return png(fig)


def runs(runs_by_row: list[tuple[str, list[tuple[str, float]]]]) -> bytes | None:
    """Every run's test accuracy, one column of dots per row, the same run (seed, data
    seed) joined across rows by a faint line."""
    if not runs_by_row:
        return None
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(runs_by_row)), 3.4))
    by_run: dict[str, list[tuple[int, float]]] = {}
    for x, (_, values) in enumerate(runs_by_row):
        for name, value in values:
            by_run.setdefault(name, []).append((x, value))
    for points in by_run.values():
        if len(points) > 1:
            ax.plot(*zip(*points, strict=True), color="#bbb", lw=0.6, zorder=1)
    for x, (_, values) in enumerate(runs_by_row):
        ys = [v for _, v in values]
        ax.scatter([x] * len(ys), ys, s=14, zorder=2)
        if ys:
            ax.hlines(sum(ys) / len(ys), x - 0.3, x + 0.3, color="black", zorder=3)
    ax.set_xticks(range(len(runs_by_row)))
    ax.set_xticklabels([label for label, _ in runs_by_row], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("test accuracy")
    ax.set_title(
        "Each run (dots; a line joins the same seed and data seed), mean (bar)", fontsize=9
    )
    fig.tight_layout()
    return png(fig)
