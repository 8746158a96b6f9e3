"""``esx report``: every table, comparison and figure of a folder of runs, written under it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from esx import outputs
from esx.errors import EsxError
from esx.reporting import curve, plots, runs, tables, text
from esx.reporting.html import write_run_page, write_sweep_page
from esx.reporting.tables import COMPARED, write_csv

#: ``(key, floor, ceiling, versus)`` of ``esx report --curve``
Curve = tuple[str, str, str, str | None]


def curve_options(
    key: str | None, floor: str | None, ceiling: str | None, versus: str | None
) -> Curve | None:
    """``--curve`` and its rows, checked: a curve needs its floor and ceiling rows."""
    if key is None:
        if floor or ceiling or versus:
            raise EsxError("--floor, --ceiling and --versus go with --curve KEY")
        return None
    if not (floor and ceiling):
        raise EsxError(
            f"--curve {key} needs the rows that bound it, by label: --floor LABEL (no "
            "guidance, e.g. a Baseline row) and --ceiling LABEL (the true masks)"
        )
    return key, floor, ceiling, versus


def _check_metrics(root: Path, rows: list[runs.Row], metrics: tuple[str, ...]) -> None:
    known = tables.known_metrics(rows)
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise EsxError(
            f"--metrics {','.join(metrics)}: no run under {root} has {unknown[0]!r}; "
            f"the runs have {', '.join(sorted(known))} (esx evaluate adds newer explanation "
            "metrics to older runs)"
        )


def _note(root: Path, rows: list[runs.Row]) -> str:
    epochs = sorted({e for r in rows for e in r.epochs})
    kinds = {r.synthetic for r in rows}
    data = {frozenset({True}): "synthetic", frozenset({False}): "real"}.get(
        frozenset(kinds), "mixed synthetic and real (the data column says which)"
    )
    return (
        f"Runs under `{root.name}`. Epochs: {', '.join(map(str, epochs))}. Data: {data}. "
        "One row per experiment (runs differing only in seed and data draw); "
        "checkpoints chosen on validation; metrics on the test split."
    )


def collect(root: Path, references: list[str] | None, metrics: tuple[str, ...]) -> dict:
    """Every table of the folder's runs, as records (what ``report.json`` holds)."""
    rows = runs.collect(root)
    _check_metrics(root, rows, metrics)
    return {
        "rows": rows,
        "table1": tables.classification_table(rows),
        "explanations": tables.explanation_table(rows),
        "groups": tables.group_table(rows),
        "unfinished": runs.unfinished(root),
        "comparisons": tables.comparisons(rows, references, metrics),
        "runs": tables.per_run(rows),
        "tables": tables.component_tables(rows),
    }


def _write_files(root: Path, result: dict[str, Any], metrics: tuple[str, ...]) -> list[str]:
    written = ["report.md"]
    named = {
        "table1.csv": result["table1"],
        "explanations.csv": result["explanations"],
        "groups.csv": result["groups"],
        "comparisons.csv": tables.flat_comparisons(result["comparisons"], metrics),
        "runs.csv": result["runs"],
        **{f"{text.slug(t)}.csv": recs for t, (_, recs) in result["tables"].items()},
    }
    written += [name for name, records in named.items() if write_csv(root / name, records)]
    keys = ("table1", "explanations", "groups", "unfinished", "comparisons", "runs")
    data = {k: result[k] for k in keys} | {
        "tables": {t: recs for t, (_, recs) in result["tables"].items()}
    }
    data["classification"] = data.pop("table1")
    outputs.write_json(root / "report.json", data)
    plots.classification(root / "table1.png", result["table1"])
    written += ["report.json", "table1.png"]
    if result["groups"]:
        plots.groups(root / "groups.png", result["groups"])
        written.append("groups.png")
    return written


def report(
    root: Path,
    references: list[str] | None = None,
    metrics: tuple[str, ...] = COMPARED,
    html: bool = False,
    show: list[str] | None = None,
    curve_over: Curve | None = None,
) -> dict[str, Any]:
    """Write ``report.md``, ``table1.csv`` (classification), ``comparisons.csv`` (paired
    differences against the reference rows), ``runs.csv`` (each run with its interval over
    test images), one CSV per component table, ``report.json`` with all of them, and
    ``table1.png`` under ``root`` (with ``html``, also ``report.html`` embedding the
    figures of the runs ``show`` selects; with ``curve_over``, ``curve.png``, ``curve.csv``
    and a section on the curve over that key); return the Markdown, the records and the
    names of the files written."""
    result = collect(root, references, metrics)
    note = _note(root, result["rows"])
    result["markdown"] = text.markdown(result, note, metrics)
    if curve_over is not None:
        result["curve"] = curve.write(root, result["rows"], *curve_over)
        result["markdown"] += result["curve"]["markdown"]
    outputs.write_text(root / "report.md", result["markdown"])
    result["written"] = _write_files(root, result, metrics)
    if curve_over is not None:
        result["written"] += ["curve.png", "curve.csv", "curve.md"]
    if html:
        shown = runs.shown_runs(root, result["rows"], show)
        write_sweep_page(root, result, note, metrics, shown)
        result["written"].append("report.html")
    return result


def command(
    root: Path,
    references: list[str] | None,
    metrics: str,
    html: bool,
    show: list[str] | None,
    curve_over: Curve | None = None,
) -> str:
    """``esx report``: what it prints. Given one run's folder with ``html``, that run's
    page is rebuilt."""
    if not root.is_dir():
        raise EsxError(f"no such folder: {root}")
    if html and (root / "metrics.json").is_file():
        return f"wrote {write_run_page(root)}"
    chosen = tuple(m.strip() for m in metrics.split(",") if m.strip())
    if not chosen:
        raise EsxError("--metrics: name at least one metric, e.g. --metrics accuracy,epg")
    result = report(root, references, chosen, html=html, show=show, curve_over=curve_over)
    return f"{result['markdown']}\nwritten under {root}: {', '.join(result['written'])}"
