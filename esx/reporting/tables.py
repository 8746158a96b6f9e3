"""The tables of a report, as records: one dict per row, numbers as ``(mean, sd, n)`` over
the row's runs. Formatting is :mod:`esx.reporting.text`'s and :mod:`esx.reporting.html`'s.

Component tables (:class:`esx.types.Table` with ``summary``) are merged by title: rows
are matched on their non-numeric cells and every numeric cell is averaged over the
runs. The core does not know which component wrote a table.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from esx import stats
from esx.errors import EsxError
from esx.glossary import CLASSIFICATION, EXPLANATION
from esx.reporting.runs import Row, lower_is_better, metric
from esx.types import Table

#: metrics compared pairwise by default, and the differences whose needed runs are printed
COMPARED = ("accuracy", "auc", "f1")
DETECT = (0.01, 0.02)


def number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def mean_sd(values: list[Any]) -> tuple[float, float, int]:
    """Mean, standard deviation and count of the numbers among ``values``."""
    values = [v for v in values if number(v)]
    if not values:
        return float("nan"), float("nan"), 0
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), sd, len(values)


def _head(r: Row, runs: int | None = None) -> dict[str, Any]:
    return {"group": r.group, "method": r.label, "runs": len(r.runs) if runs is None else runs}


def classification_table(rows: list[Row]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        data = {True: "synthetic", False: "real", None: "mixed"}[r.synthetic]
        rec = _head(r) | {"epochs": ",".join(map(str, sorted(r.epochs))), "data": data}
        for k in CLASSIFICATION:
            rec[k] = mean_sd([run["test"].get(k) for run in r.runs])
        out.append(rec)
    return out


def group_columns(rows: list[Row]) -> list[str]:
    """The per-group test metrics the runs wrote (``accuracy_<group>`` of the groups their
    dataset declares, not the per-class ones), then ``worst_group_accuracy``."""
    keys = {k for r in rows for run in r.runs for k in run["test"]}
    named = sorted(
        k for k in keys if k.startswith("accuracy_") and not k.startswith("accuracy_class_")
    )
    return [*named, *(["worst_group_accuracy"] if "worst_group_accuracy" in keys else [])]


def group_table(rows: list[Row]) -> list[dict[str, Any]]:
    """Per row, each group's test accuracy and the worst group's (mean ± std over runs); empty
    when no run's dataset declares groups."""
    cols = group_columns(rows)
    if cols == ["worst_group_accuracy"] or not cols:  # the classes only: the table adds nothing
        return []
    return [
        _head(r) | {k: mean_sd([run["test"].get(k) for run in r.runs]) for k in cols} for r in rows
    ]


def explanation_table(rows: list[Row]) -> list[dict[str, Any]]:
    """Mean ± std over each row's runs of the explanation metrics (none when no run has them)."""
    if not any(metric(run, k) is not None for r in rows for run in r.runs for k in EXPLANATION):
        return []
    return [
        _head(r)
        | {
            k: mean_sd([(run.get("explanation") or {}).get(k) for run in r.runs])
            for k in EXPLANATION
        }
        for r in rows
    ]


def component_tables(rows: list[Row]) -> dict[str, tuple[Table, list[dict[str, Any]]]]:
    """Title -> (the first table of that title, records over rows): the ``summary`` tables of
    every run, each row's runs merged; a table empty in every run is left out."""
    merged: dict[str, tuple[Table, list[dict[str, Any]]]] = {}
    for r in rows:
        per_title: dict[str, dict[tuple, list[list[Any]]]] = {}
        for run in r.runs:
            for data in run.get("tables", []):
                t = Table.from_dict(data)
                if not t.summary or t.shown() is None:
                    continue
                merged.setdefault(t.title, (t, []))
                for cells in t.rows:
                    key = tuple(c if not number(c) else None for c in cells)
                    per_title.setdefault(t.title, {}).setdefault(key, []).append(cells)
        for title, by_key in per_title.items():
            first = merged[title][0]
            for key, runs in by_key.items():
                rec: dict[str, Any] = _head(r, len(runs))
                for i, col in enumerate(first.columns):
                    rec[col] = key[i] if key[i] is not None else mean_sd([c[i] for c in runs])
                merged[title][1].append(rec)
    return merged


def comparisons(
    rows: list[Row], references: list[str] | None = None, metrics: tuple[str, ...] = COMPARED
) -> list[dict[str, Any]]:
    """Every row against every reference row (``references`` by label, else the rows whose
    recipe says ``reference: true``), over the runs the two share a folder name with (the
    same seed, and data seed): the paired difference of each metric with its t-interval,
    wins/ties/losses and verdict, and how many paired runs would detect 1 and 2 points."""
    refs = [r for r in rows if (r.label in references if references else r.reference)]
    if references:
        missing = sorted(set(references) - {r.label for r in refs})
        if missing:
            known = ", ".join(sorted({r.label for r in rows}))
            raise EsxError(f"--reference {missing[0]!r}: no such row; rows: {known}")
    out = []
    done: set[tuple[int, int]] = set()
    lower = lower_is_better(rows)
    for ref in refs:
        for row in rows:
            if row is ref or (id(ref), id(row)) in done:  # B vs A is A vs B mirrored
                continue
            done.add((id(row), id(ref)))
            out.append(_compared(row, ref, metrics, lower))
    return out


def _compared(row: Row, ref: Row, metrics: tuple[str, ...], lower: frozenset[str]) -> dict:
    mine, theirs = row.by_pair(), ref.by_pair()
    shared = sorted(set(mine) & set(theirs))
    rec: dict[str, Any] = _head(row, len(shared)) | {"reference": ref.label}
    rec["pairs"] = rec.pop("runs")
    for m in metrics:
        pairs = [(metric(mine[k], m), metric(theirs[k], m)) for k in shared]
        pairs = [(a, b) for a, b in pairs if number(a) and number(b)]
        diff = stats.paired(
            [a for a, _ in pairs], [b for _, b in pairs], lower_is_better=m in lower
        )
        rec[m] = diff.as_dict() | {"lower_is_better": m in lower}
        rec[m]["pairs_needed"] = {
            f"{round(d * 100)} points": stats.pairs_needed(diff.sd, d) if diff.n >= 2 else None
            for d in DETECT
        }
    return rec


def per_run(rows: list[Row]) -> list[dict[str, Any]]:
    """Each run's test accuracy with a 95% bootstrap interval over its test images."""
    out = []
    for row in rows:
        for folder, run in zip(row.folders, row.runs, strict=True):
            rec = _head(row) | {"run": folder.name, "accuracy": run["test"].get("accuracy")}
            del rec["runs"]
            preds = folder / "predictions.csv"
            if preds.is_file():
                with preds.open(newline="") as f:
                    correct = [int(r["label"]) == int(r["pred"]) for r in csv.DictReader(f)]
                rec["low"], rec["high"] = stats.bootstrap_mean(np.array(correct, dtype=float))
            out.append(rec)
    return out


def known_metrics(rows: list[Row]) -> set[str]:
    """The numeric test and explanation metrics the runs have (what --metrics may name)."""
    return {
        k
        for r in rows
        for run in r.runs
        for k, v in (*run["test"].items(), *(run.get("explanation") or {}).items())
        if number(v) and k not in ("threshold", "images", "pointing_tolerance")
    }


def flat_comparisons(compared: list[dict[str, Any]], metrics: tuple[str, ...]) -> list[dict]:
    """The comparison records as flat rows (``comparisons.csv``)."""
    return [
        {k: v for k, v in r.items() if k not in metrics}
        | {f"{m}_{k}": v for m in metrics for k, v in r[m].items() if k != "pairs_needed"}
        | {
            f"{m}_runs_for_{k.replace(' ', '_')}": v
            for m in metrics
            for k, v in r[m]["pairs_needed"].items()
        }
        for r in compared
    ]


def write_csv(path: Path, records: list[dict[str, Any]]) -> bool:
    """``records`` as CSV, ``(mean, sd, n)`` cells as two columns; False (nothing written)
    when there are none."""
    from esx import outputs

    if not records:
        return False
    header: list[str] = []
    for k, v in records[0].items():
        header += [f"{k}_mean", f"{k}_std"] if isinstance(v, tuple) else [k]
    rows = [
        [x for v in rec.values() for x in (v[:2] if isinstance(v, tuple) else (v,))]
        for rec in records
    ]
    outputs.write_csv(path, header, rows)
    return True
