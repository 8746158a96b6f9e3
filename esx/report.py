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

import csv
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from esx import inputs, outputs, stats
from esx.errors import EsxError
from esx.runlog import read_status
from esx.types import Table

CLASSIFICATION = ("accuracy", "auc", "precision", "recall", "f1")
#: the ``metrics.json`` key listing the run's metrics where a lower value is the better one;
#: their paired verdicts and wins are turned round
LOWER_IS_BETTER_KEY = "lower_is_better"


@dataclass
class Row:
    key: str
    label: str
    group: str
    reference: bool = False
    epochs: set[int] = field(default_factory=set)
    runs: list[dict[str, Any]] = field(default_factory=list)
    #: each run's folder; its name (seed0, seed3-...) pairs it with other rows' runs
    folders: list[Path] = field(default_factory=list)

    def by_pair(self) -> dict[str, dict[str, Any]]:
        return {f.name: run for f, run in zip(self.folders, self.runs, strict=True)}


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
        row.reference |= bool(recipe.get("reference"))
        row.epochs.add(int(recipe.get("train", {}).get("epochs", 0)))
        fix = "rerun that run, or move its folder out of the report's"
        run = inputs.read_json(metrics_path, fix)
        _declared_lower(run, metrics_path)  # a malformed declaration stops here, naming the file
        row.runs.append(run)
        row.folders.append(folder)
    if not rows:
        raise EsxError(f"no runs (metrics.json files) under {root}; run `esx sweep` first")
    return sorted(rows.values(), key=lambda r: (r.group, r.key))


def unfinished(root: Path) -> list[dict[str, Any]]:
    """The run folders under ``root`` without metrics.json that say why (status.json): each
    with its status (:func:`esx.runlog.read_status`: a run whose process is gone reads as
    interrupted), where it stopped and its error."""
    out = []
    for status in sorted(root.rglob("status.json")):
        folder = status.parent
        if (folder / "metrics.json").is_file():
            continue
        try:
            st = json.loads(status.read_text())
        except (OSError, ValueError):
            st = {}
        out.append(
            {
                "run": str(folder.relative_to(root)),
                "status": read_status(folder),
                "where": st.get("where", ""),
                "error": " ".join(str(st.get("error", "")).split())[:200],
            }
        )
    return out


def _unfinished_md(left: list[dict[str, Any]]) -> str:
    """The report's section on the runs that did not finish (empty when all did)."""
    if not left:
        return ""
    rows = "".join(f"| {u['run']} | {u['status']} | {u['where']} | {u['error']} |\n" for u in left)
    return (
        "\n## Runs not finished (left out of every table)\n\n"
        "| run | status | where | error |\n| --- | --- | --- | --- |\n" + rows
    )


def _declared_lower(run: dict[str, Any], path: Path) -> set[str]:
    """The metrics a run's ``metrics.json`` declares lower-is-better: whoever writes a
    metric says which way it reads, so that the core need not know it."""
    names = run.get(LOWER_IS_BETTER_KEY, [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise EsxError(
            f"{path}: {LOWER_IS_BETTER_KEY!r} is {names!r}; it must be a list of metric names "
            f'such as ["cue_reliance"] (the metrics where a lower value is the better one)'
        )
    return set(names)


def lower_is_better(rows: list[Row]) -> frozenset[str]:
    """The metrics any run under the report declares lower-is-better."""
    return frozenset(m for r in rows for run in r.runs for m in run.get(LOWER_IS_BETTER_KEY, []))


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
            "runs": len(r.runs),
            "epochs": ",".join(map(str, sorted(r.epochs))),
        }
        for k in CLASSIFICATION:
            rec[k] = _stats([run["test"].get(k) for run in r.runs])
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
        {"group": r.group, "method": r.label, "runs": len(r.runs)}
        | {k: _stats([run["test"].get(k) for run in r.runs]) for k in cols}
        for r in rows
    ]


#: explanation metrics (metrics.json ``explanation``) tabled per row when the runs have them
EXPLAINED = ("epg", "epg_ratio", "pointing", "pr_auc", "iou")


def metric(run: dict[str, Any], name: str) -> Any:
    """A run's test metric, or its explanation metric of that name."""
    if name in run.get("test", {}):
        return run["test"][name]
    return (run.get("explanation") or {}).get(name)


def explanation_table(rows: list[Row]) -> list[dict[str, Any]]:
    """Mean ± std over each row's runs of the explanation metrics (none when no run has them)."""
    if not any(metric(run, k) is not None for r in rows for run in r.runs for k in EXPLAINED):
        return []
    out = []
    for r in rows:
        rec = {"group": r.group, "method": r.label, "runs": len(r.runs)}
        for k in EXPLAINED:
            rec[k] = _stats([(run.get("explanation") or {}).get(k) for run in r.runs])
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


#: metrics compared pairwise by default, and the differences whose needed runs are printed
COMPARED = ("accuracy", "auc", "f1")
DETECT = (0.01, 0.02)


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
        theirs = ref.by_pair()
        for row in rows:
            if row is ref or (id(ref), id(row)) in done:  # B vs A is A vs B mirrored
                continue
            done.add((id(row), id(ref)))
            mine = row.by_pair()
            shared = sorted(set(mine) & set(theirs))
            rec: dict[str, Any] = {
                "group": row.group,
                "method": row.label,
                "reference": ref.label,
                "pairs": len(shared),
            }
            for m in metrics:
                pairs = [(metric(mine[k], m), metric(theirs[k], m)) for k in shared]
                pairs = [(a, b) for a, b in pairs if _number(a) and _number(b)]
                diff = stats.paired(
                    [a for a, _ in pairs],
                    [b for _, b in pairs],
                    lower_is_better=m in lower,
                )
                rec[m] = diff.as_dict() | {"lower_is_better": m in lower}
                rec[m]["pairs_needed"] = {
                    f"{round(d * 100)} points": stats.pairs_needed(diff.sd, d)
                    if diff.n >= 2
                    else None
                    for d in DETECT
                }
            out.append(rec)
    return out


def per_run(rows: list[Row]) -> list[dict[str, Any]]:
    """Each run's test accuracy with a 95% bootstrap interval over its test images."""
    out = []
    for row in rows:
        for folder, run in zip(row.folders, row.runs, strict=True):
            rec = {
                "group": row.group,
                "method": row.label,
                "run": folder.name,
                "accuracy": run["test"].get("accuracy"),
            }
            preds = folder / "predictions.csv"
            if preds.is_file():
                with preds.open(newline="") as f:
                    correct = [int(r["label"]) == int(r["pred"]) for r in csv.DictReader(f)]
                rec["low"], rec["high"] = stats.bootstrap_mean(np.array(correct, dtype=float))
            out.append(rec)
    return out


def diff_text(d: dict[str, Any]) -> str:
    """A paired difference as one cell: mean [interval] wins/ties/losses verdict."""
    if d["n"] < 2:
        return f"{d['mean']:+.4f} ({d['verdict']})" if d["n"] else "-"
    return (
        f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] {d['wins']}/{d['ties']}/"
        f"{d['losses']} {d['verdict']}"
    )


def lower_is_better_note(records: list[dict[str, Any]], metrics: tuple[str, ...]) -> str:
    """The sentence that tells a reader which compared metrics read the other way round."""
    lower = [m for m in metrics if records and records[0][m].get("lower_is_better")]
    if not lower:
        return ""
    return (
        f" Lower is better for {', '.join(lower)}: a win there is a pair where the method is "
        "lower, and an interval below zero reads better."
    )


def _comparison_md(records: list[dict[str, Any]], metrics: tuple[str, ...]) -> list[str]:
    if not records:
        return [
            "",
            "No reference row: mark one with `reference: true` in its recipe or "
            "name it with `esx report --reference LABEL` to get paired comparisons.",
        ]
    first = metrics[0]
    lines = [
        "",
        "## Paired comparisons",
        "",
        "Each cell: the mean difference (method − reference) over runs paired by seed "
        "(and data seed), its 95% t-interval, wins/ties/losses, and a verdict only where "
        "the interval excludes zero. The last column: how many paired runs a paired "
        f"t-test (α 0.05, power 80%) needs to detect a true {first} difference of 1 and "
        "2 points, given the spread of the differences seen here."
        + lower_is_better_note(records, metrics),
        "",
        f"{len(records) * len(metrics)} intervals: where nothing differs, about one in 20 "
        "still excludes zero by chance, so a lone verdict among many is weak evidence.",
        "",
        "| group | method | against | pairs | "
        + " | ".join(metrics)
        + f" | runs for 1 / 2 points ({first}) |",
        "|" + " --- |" * (5 + len(metrics)),
    ]
    for r in records:
        need = r[first]["pairs_needed"]
        n1, n2 = (need[k] for k in sorted(need))
        lines.append(
            f"| {r['group']} | {r['method']} | {r['reference']} | {r['pairs']} | "
            + " | ".join(diff_text(r[m]) for m in metrics)
            + f" | {n1 if n1 else '-'} / {n2 if n2 else '-'} |"
        )
    return lines


def _per_run_md(records: list[dict[str, Any]]) -> list[str]:
    runs, cells = run_cells(records)
    lines = [
        "",
        "## Per run: test accuracy and its 95% bootstrap interval over test images",
        "",
        "| group | method | " + " | ".join(runs) + " |",
        "|" + " --- |" * (2 + len(runs)),
    ]
    for (group, method), row in cells.items():
        lines.append(f"| {group} | {method} | " + " | ".join(row.get(k, "") for k in runs) + " |")
    return lines


def run_cells(records: list[dict[str, Any]]) -> tuple[list[str], dict[tuple[str, str], dict]]:
    """The per-run table: run names (columns) and, per (group, method), each run's cell."""
    runs = sorted({r["run"] for r in records})
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for r in records:
        text = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        if "low" in r:
            text += f" [{r['low']:.3f}, {r['high']:.3f}]"
        cells.setdefault((r["group"], r["method"]), {})[r["run"]] = text
    return runs, cells


def _fmt(ms: Any, bold: bool = False, digits: int = 4) -> str:
    if not isinstance(ms, tuple):
        return "-" if ms is None else str(ms)
    mean, sd, n = ms
    if n == 0:
        return "-"
    if 0 < abs(mean) < 0.01:  # small values (MSE of a small mask): three significant digits
        digits = max(digits, 2 - math.floor(math.log10(abs(mean))))
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
    t1: list[dict[str, Any]],
    extra: dict[str, tuple[Table, list[dict[str, Any]]]],
    note: str,
    compared: list[dict[str, Any]] | None = None,
    runs: list[dict[str, Any]] | None = None,
    metrics: tuple[str, ...] = COMPARED,
    explained: list[dict[str, Any]] | None = None,
    grouped: list[dict[str, Any]] | None = None,
) -> str:
    lines = ["# Results", "", note, "", "## Classification (test, mean ± std over runs)", ""]
    head = ["group", "method", "runs", "epochs", *CLASSIFICATION]
    lines += _md_table(t1, head, CLASSIFICATION)
    lines += ["", "Bold: the highest mean of its group, where no other row ties it."]
    if grouped:
        cols = [k for k in grouped[0] if k not in ("group", "method", "runs")]
        lines += ["", "## Groups of test images (accuracy, mean ± std over runs)", ""]
        lines += _md_table(grouped, ["group", "method", "runs", *cols], tuple(cols))
        lines += [
            "",
            "Each group's accuracy, as its dataset names its groups of test images; "
            "worst_group_accuracy: each run's lowest group accuracy, averaged over runs.",
        ]
    if explained:
        lines += ["", "## Explanations (test positives, mean ± std over runs)", ""]
        lines += _md_table(explained, ["group", "method", "runs", *EXPLAINED], EXPLAINED)
        lines += [
            "",
            "EPG: share of the map's positive energy inside the true mask; epg_ratio: EPG over "
            "the mask's share of the image (1 = a uniform map); pointing: the map's maximum "
            "inside the mask; pr_auc: average precision of map vs mask; iou: of the map "
            "thresholded at eval.threshold. All at the input resolution.",
        ]
    if compared is not None:
        lines += _comparison_md(compared, metrics)
    if runs:
        lines += _per_run_md(runs)
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
    ax.set_ylabel("test score (mean ± std over runs)")
    ax.set_title("Classification on the test split")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path, dpi=90)


def plot_groups(path: Path, grouped: list[dict[str, Any]]) -> None:
    """Each row's accuracy on each group of test images, mean ± std over runs."""
    import matplotlib.pyplot as plt

    from esx.figures import save_png

    cols = [k for k in grouped[0] if k not in ("group", "method", "runs")]
    width = 0.8 / len(cols)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(grouped) + 3), 3.4))
    for i, k in enumerate(cols):
        ax.bar(
            [x + width * (i - (len(cols) - 1) / 2) for x in range(len(grouped))],
            [r[k][0] for r in grouped],
            width,
            yerr=[r[k][1] for r in grouped],
            label=k.removeprefix("accuracy_"),
            capsize=2,
        )
    ax.set_xticks(list(range(len(grouped))))
    ax.set_xticklabels([r["method"] for r in grouped], rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy (mean ± std over runs)")
    ax.set_title("Accuracy on each group of test images")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    save_png(fig, path, dpi=90)


def shown_runs(root: Path, rows: list[Row], patterns: list[str] | None) -> list[Path]:
    """The run folders whose figures a sweep's HTML page embeds: those matching any of
    ``patterns`` (globs relative to ``root``, e.g. ``a_magi/seed0``), else each row's
    first run."""
    if patterns is None:
        return [sorted(r.folders)[0] for r in rows]
    found = [f for r in rows for f in r.folders]
    out = [f for f in found if any(f.relative_to(root).match(p) for p in patterns)]
    if not out:
        some = ", ".join(str(f.relative_to(root)) for f in found[:3])
        raise EsxError(f"--show {patterns}: no run folder under {root} matches; e.g. {some}")
    return sorted(out)


def report(
    root: Path,
    references: list[str] | None = None,
    metrics: tuple[str, ...] = COMPARED,
    html: bool = False,
    show: list[str] | None = None,
) -> dict[str, Any]:
    """Write ``report.md``, ``table1.csv`` (classification), ``comparisons.csv`` (paired
    differences against the reference rows), ``runs.csv`` (each run with its interval over
    test images), one CSV per component table, ``report.json`` with all of them, and
    ``table1.png`` under ``root`` (with ``html``, also ``report.html`` embedding the
    figures of the runs ``show`` selects); return the Markdown and the records."""
    rows = collect(root)
    known = {
        k
        for r in rows
        for run in r.runs
        for k, v in (*run["test"].items(), *(run.get("explanation") or {}).items())
        if _number(v) and k not in ("threshold", "images", "pointing_tolerance")
    }
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise EsxError(
            f"--metrics {','.join(metrics)}: no run under {root} has {unknown[0]!r}; "
            f"the runs have {', '.join(sorted(known))} (esx evaluate adds newer explanation "
            "metrics to older runs)"
        )
    t1, extra = classification_table(rows), component_tables(rows)
    compared, runs = comparisons(rows, references, metrics), per_run(rows)
    epochs = sorted({e for r in rows for e in r.epochs})
    synthetic = {run["data"]["synthetic"] for r in rows for run in r.runs}
    data = {frozenset({True}): "synthetic", frozenset({False}): "real"}.get(
        frozenset(synthetic), "mixed synthetic and real"
    )
    note = (
        f"Runs under `{root}`. Epochs: {', '.join(map(str, epochs))}. Data: {data}. "
        "Checkpoints chosen on validation; metrics on the test split."
    )
    explained, grouped = explanation_table(rows), group_table(rows)
    md = markdown(t1, extra, note, compared, runs, metrics, explained, grouped)
    left = unfinished(root)
    md += _unfinished_md(left)
    outputs.write_text(root / "report.md", md)
    _csv(root / "table1.csv", t1)
    _csv(root / "explanations.csv", explained)
    _csv(root / "groups.csv", grouped)
    flat = [
        {k: v for k, v in r.items() if k not in metrics}
        | {f"{m}_{k}": v for m in metrics for k, v in r[m].items() if k != "pairs_needed"}
        | {
            f"{m}_runs_for_{k.replace(' ', '_')}": v
            for m in metrics
            for k, v in r[m]["pairs_needed"].items()
        }
        for r in compared
    ]
    _csv(root / "comparisons.csv", flat)
    _csv(root / "runs.csv", runs)
    outputs.write_json(
        root / "report.json",
        {
            "classification": t1,
            "explanations": explained,
            "groups": grouped,
            "unfinished": left,
            "comparisons": compared,
            "runs": runs,
            "tables": {t: recs for t, (_, recs) in extra.items()},
        },
    )
    written = [
        "report.md",
        "table1.csv",
        *(["explanations.csv"] if explained else []),
        *(["groups.csv", "groups.png"] if grouped else []),
        "comparisons.csv",
        "runs.csv",
        "report.json",
        "table1.png",
    ]
    for title, (_, records) in extra.items():
        _csv(root / f"{slug(title)}.csv", records)
        written.append(f"{slug(title)}.csv")
    plot(root / "table1.png", t1)
    if grouped:
        plot_groups(root / "groups.png", grouped)
    result = {
        "markdown": md,
        "table1": t1,
        "explanations": explained,
        "groups": grouped,
        "tables": extra,
        "comparisons": compared,
        "runs": runs,
        "written": written,
    }
    if html:
        from esx.html import write_sweep_page

        shown = shown_runs(root, rows, show)
        write_sweep_page(root, result, note, metrics, shown, CLASSIFICATION, data)
        written.append("report.html")
    return result
