"""Tables from a folder of runs: classification, then every table the runs' components attached.

Runs are grouped by the folder above ``seed<k>`` (a sweep's layout) or, for a
flat folder of runs, by the run folder. Each row gives mean ± std over runs
(the value alone for a single run); the best mean of a column within a group
is in bold when no other row ties it. Component tables (:class:`esx.types.Table`
with ``summary``) are merged by title: rows are matched on their non-numeric
cells and every numeric cell is averaged over the runs. The core does not
know which component wrote a table.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from esx import outputs
from esx.errors import EsxError
from esx.types import Table

CLASSIFICATION = ("accuracy", "auc", "precision", "recall", "f1")


@dataclass
class Row:
    key: str
    label: str
    group: str
    epochs: set[int] = field(default_factory=set)
    runs: list[dict[str, Any]] = field(default_factory=list)


def _label(recipe: dict[str, Any], key: str) -> str:
    """The recipe's ``label``; else what it ran (``loss on aggregator``); else the folder."""
    if recipe.get("label"):
        return str(recipe["label"])
    try:
        return f"{recipe['loss']['name']} on {recipe['aggregator']['name']}"
    except (KeyError, TypeError):
        return key


def collect(root: Path) -> list[Row]:
    rows: dict[str, Row] = {}
    for metrics_path in sorted(root.rglob("metrics.json")):
        folder = metrics_path.parent
        key = folder.parent.name if folder.name.startswith("seed") else folder.name
        recipe_path = folder / "recipe.yaml"
        recipe = yaml.safe_load(recipe_path.read_text()) if recipe_path.is_file() else {}
        row = rows.setdefault(key, Row(key, _label(recipe, key), recipe.get("group") or ""))
        row.epochs.add(int(recipe.get("train", {}).get("epochs", 0)))
        row.runs.append(json.loads(metrics_path.read_text()))
    if not rows:
        raise EsxError(f"no runs (metrics.json files) under {root}; run `esx sweep` first")
    return sorted(rows.values(), key=lambda r: (r.group, r.key))


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _stats(values: list[Any]) -> tuple[float, float, int]:
    """Mean, standard deviation and count of the numbers among ``values``."""
    values = [v for v in values if _number(v)]
    if not values:
        return float("nan"), float("nan"), 0
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), sd, len(values)


def classification_table(rows: list[Row]) -> list[dict[str, Any]]:
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


def component_tables(rows: list[Row]) -> dict[str, tuple[Table, list[dict[str, Any]]]]:
    """Title -> (the first table of that title, records over rows): the ``summary`` tables of
    every run, each row's runs merged."""
    merged: dict[str, tuple[Table, list[dict[str, Any]]]] = {}
    for r in rows:
        per_title: dict[str, dict[tuple, list[list[Any]]]] = {}
        for run in r.runs:
            for data in run.get("tables", []):
                t = Table.from_dict(data)
                if not t.summary:
                    continue
                merged.setdefault(t.title, (t, []))
                for cells in t.rows:
                    key = tuple(c if not _number(c) else None for c in cells)
                    per_title.setdefault(t.title, {}).setdefault(key, []).append(cells)
        for title, by_key in per_title.items():
            first = merged[title][0]
            for key, runs in by_key.items():
                rec: dict[str, Any] = {"group": r.group, "method": r.label, "runs": len(runs)}
                for i, col in enumerate(first.columns):
                    rec[col] = key[i] if key[i] is not None else _stats([c[i] for c in runs])
                merged[title][1].append(rec)
    return merged


def _fmt(ms: Any, bold: bool = False, digits: int = 4) -> str:
    if not isinstance(ms, tuple):
        return "-" if ms is None else str(ms)
    mean, sd, n = ms
    text = f"{mean:.{digits}f}" if n <= 1 else f"{mean:.{digits}f} ± {sd:.{digits}f}"
    return f"**{text}**" if bold else text


def _best(records: list[dict[str, Any]], columns: tuple[str, ...]) -> set[tuple[int, str]]:
    """(record index, column) of each group's single highest mean (ties: none)."""
    out = set()
    for k in columns:
        groups: dict[str, list[tuple[float, int]]] = {}
        for i, rec in enumerate(records):
            if isinstance(rec.get(k), tuple) and rec[k][2]:
                groups.setdefault(rec["group"], []).append((rec[k][0], i))
        for values in groups.values():
            top = max(v for v, _ in values)
            winners = [i for v, i in values if v == top]
            if len(winners) == 1 and len(values) > 1:
                out.add((winners[0], k))
    return out


def _md_table(
    records: list[dict[str, Any]], columns: list[str], bold: tuple[str, ...] = ()
) -> list[str]:
    best = _best(records, bold)
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for i, rec in enumerate(records):
        lines.append("| " + " | ".join(_fmt(rec.get(c), (i, c) in best) for c in columns) + " |")
    return lines


def markdown(
    t1: list[dict[str, Any]], extra: dict[str, tuple[Table, list[dict[str, Any]]]], note: str
) -> str:
    lines = ["# Results", "", note, "", "## Classification (test, mean ± std over seeds)", ""]
    head = ["group", "method", "seeds", "epochs", *CLASSIFICATION]
    lines += _md_table(t1, head, CLASSIFICATION)
    lines += ["", "Bold: the highest mean of its group, where no other row ties it."]
    for title, (table, records) in extra.items():
        lines += ["", f"## {title}", ""]
        lines += _md_table(records, ["group", "method", "runs", *table.columns])
        if table.note:
            lines += ["", table.note]
    return "\n".join(lines) + "\n"


def slug(title: str) -> str:
    """A file name for a table title."""
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:48] or "table"


def _csv(path: Path, records: list[dict[str, Any]]) -> None:
    if not records:
        return
    header: list[str] = []
    for k, v in records[0].items():
        header += [f"{k}_mean", f"{k}_std"] if isinstance(v, tuple) else [k]
    rows = [
        [x for v in rec.values() for x in (v[:2] if isinstance(v, tuple) else (v,))]
        for rec in records
    ]
    outputs.write_csv(path, header, rows)


def plot(path: Path, t1: list[dict[str, Any]]) -> None:
    import matplotlib.pyplot as plt

    from esx.figures import save_png

    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(t1)), 3.4))
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
    ax.set_xticklabels([r["method"] for r in t1], rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test score (mean ± std over seeds)")
    ax.set_title("Classification on the test split")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path, dpi=90)


def report(root: Path) -> dict[str, Any]:
    """Write ``report.md``, ``table1.csv`` (classification), one CSV per component table and
    ``table1.png`` under ``root``; return the Markdown and the records."""
    rows = collect(root)
    t1, extra = classification_table(rows), component_tables(rows)
    epochs = sorted({e for r in rows for e in r.epochs})
    synthetic = {run["data"]["synthetic"] for r in rows for run in r.runs}
    data = {frozenset({True}): "synthetic", frozenset({False}): "real"}.get(
        frozenset(synthetic), "mixed synthetic and real"
    )
    note = (
        f"Runs under `{root}`. Epochs: {', '.join(map(str, epochs))}. Data: {data}. "
        "Checkpoints chosen on validation; metrics on the test split."
    )
    md = markdown(t1, extra, note)
    outputs.write_text(root / "report.md", md)
    _csv(root / "table1.csv", t1)
    written = ["report.md", "table1.csv", "table1.png"]
    for title, (_, records) in extra.items():
        _csv(root / f"{slug(title)}.csv", records)
        written.append(f"{slug(title)}.csv")
    plot(root / "table1.png", t1)
    return {"markdown": md, "table1": t1, "tables": extra, "written": written}
