"""Tables from a folder of runs: Table 1 (classification) and Table 2 (generation).

Runs are grouped by the folder above ``seed<k>`` (a sweep's layout) or, for a
flat folder of runs, by the recipe each ran. Each row gives mean ± std over
seeds; the best mean of each column within a group is in bold.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from esx import outputs
from esx.errors import EsxError

CLASSIFICATION = ("accuracy", "auc", "precision", "recall", "f1")
GENERATION = ("mse", "bce", "ssim")


@dataclass
class Row:
    key: str
    label: str
    group: str
    epochs: set[int] = field(default_factory=set)
    runs: list[dict[str, Any]] = field(default_factory=list)


def collect(root: Path) -> list[Row]:
    rows: dict[str, Row] = {}
    for metrics_path in sorted(root.rglob("metrics.json")):
        folder = metrics_path.parent
        key = folder.parent.name if folder.name.startswith("seed") else folder.name
        recipe = (
            yaml.safe_load((folder / "recipe.yaml").read_text())
            if (folder / "recipe.yaml").is_file()
            else {}
        )
        row = rows.setdefault(key, Row(key, recipe.get("label") or key, recipe.get("group") or ""))
        row.epochs.add(int(recipe.get("train", {}).get("epochs", 0)))
        row.runs.append(json.loads(metrics_path.read_text()))
    if not rows:
        raise EsxError(f"no runs (metrics.json files) under {root}; run `esx sweep` first")
    return sorted(rows.values(), key=lambda r: (r.group, r.key))


def _stats(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table1(rows: list[Row]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        rec = {
            "group": r.group,
            "method": r.label,
            "seeds": len(r.runs),
            "epochs": ",".join(map(str, sorted(r.epochs))),
        }
        for k in CLASSIFICATION:
            rec[k] = _stats([run["test"].get(k) for run in r.runs])
        out.append(rec)
    return out


def table2(rows: list[Row]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        gens = [
            run["aggregator"]["generation"]
            for run in r.runs
            if "generation" in run.get("aggregator", {})
        ]
        if not gens:
            continue
        for side in ("noisy", "generated"):
            rec = {"group": r.group, "method": r.label, "masks": side, "seeds": len(gens)}
            for k in GENERATION:
                rec[k] = _stats([g[side][k] for g in gens])
            out.append(rec)
    return out


def _fmt(ms: tuple[float, float], bold: bool) -> str:
    text = f"{ms[0]:.4f} ± {ms[1]:.4f}"
    return f"**{text}**" if bold else text


def markdown(t1: list[dict[str, Any]], t2: list[dict[str, Any]], note: str) -> str:
    lines = [
        "# Results",
        "",
        note,
        "",
        "## Table 1: classification (test, mean ± std over seeds)",
        "",
    ]
    lines.append("| group | method | seeds | epochs | " + " | ".join(CLASSIFICATION) + " |")
    lines.append("|" + " --- |" * (4 + len(CLASSIFICATION)))
    best = {}
    for rec in t1:
        for k in CLASSIFICATION:
            g = (rec["group"], k)
            if rec[k][0] == rec[k][0]:  # not NaN
                best[g] = max(best.get(g, float("-inf")), rec[k][0])
    for rec in t1:
        cells = [_fmt(rec[k], rec[k][0] == best.get((rec["group"], k))) for k in CLASSIFICATION]
        lines.append(
            f"| {rec['group']} | {rec['method']} | {rec['seeds']} | {rec['epochs']} | "
            + " | ".join(cells)
            + " |"
        )
    if t2:
        lines += [
            "",
            "## Table 2: aggregated masks vs the true mask (test)",
            "",
            "| group | method | masks | seeds | " + " | ".join(GENERATION) + " |",
            "|" + " --- |" * (4 + len(GENERATION)),
        ]
        for rec in t2:
            cells = [f"{rec[k][0]:.5f} ± {rec[k][1]:.5f}" for k in GENERATION]
            lines.append(
                f"| {rec['group']} | {rec['method']} | {rec['masks']} | {rec['seeds']} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines) + "\n"


def _csv(path: Path, records: list[dict[str, Any]], metrics: tuple[str, ...]) -> None:
    if not records:
        return
    head = [k for k in records[0] if k not in metrics]
    header = head + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    rows = [[rec[k] for k in head] + [v for m in metrics for v in rec[m]] for rec in records]
    outputs.write_csv(path, header, rows)


def plot(path: Path, t1: list[dict[str, Any]]) -> None:
    import matplotlib.pyplot as plt

    from esx.figures import save_png

    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(t1)), 3.2))
    names = [f"{r['method']}" for r in t1]
    x = range(len(t1))
    for i, k in enumerate(("accuracy", "f1", "auc")):
        ax.bar(
            [xi + 0.27 * (i - 1) for xi in x],
            [r[k][0] for r in t1],
            0.27,
            yerr=[r[k][1] for r in t1],
            label=k,
            capsize=2,
        )
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path, dpi=90)


def report(root: Path, paper_epochs: int = 30) -> dict[str, Any]:
    rows = collect(root)
    t1, t2 = table1(rows), table2(rows)
    epochs = sorted({e for r in rows for e in r.epochs})
    synthetic = {run["data"]["synthetic"] for r in rows for run in r.runs}
    note = (
        f"Runs under `{root}`. Epochs: {', '.join(map(str, epochs))}"
        + (f" (reduced from the paper's {paper_epochs})" if max(epochs) < paper_epochs else "")
        + ". Data: "
        + (
            "synthetic"
            if synthetic == {True}
            else "real"
            if synthetic == {False}
            else "mixed synthetic and real"
        )
        + ". Checkpoints chosen on validation; metrics on the test split."
    )
    md = markdown(t1, t2, note)
    outputs.write_text(root / "report.md", md)
    _csv(root / "table1.csv", t1, CLASSIFICATION)
    _csv(root / "table2.csv", t2, GENERATION)
    plot(root / "table1.png", t1)
    return {"markdown": md, "table1": t1, "table2": t2}
