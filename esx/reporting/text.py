"""The report's numbers as text: one formatter for Markdown and HTML, precise enough to tell
rows apart, and the Markdown report."""

from __future__ import annotations

import math
import re
from typing import Any

from esx.glossary import CLASSIFICATION, EXPLANATION, definitions

#: digits after the point: at least this many, more where a column's rows would look equal
DIGITS, MAX_DIGITS = 4, 6


def _digits_for(mean: float, digits: int) -> int:
    if 0 < abs(mean) < 0.01:  # small values (MSE of a small mask): three significant digits
        digits = max(digits, 2 - math.floor(math.log10(abs(mean))))
    return digits


def column_digits(values: list[Any]) -> int:
    """The fewest digits (from :data:`DIGITS` to :data:`MAX_DIGITS`) at which every distinct
    mean in a column prints differently."""
    means = sorted({v[0] if isinstance(v, tuple) else v for v in values if _finite(v)})
    for d in range(DIGITS, MAX_DIGITS + 1):
        if len({f"{m:.{_digits_for(m, d)}f}" for m in means}) == len(means):
            return d
    return MAX_DIGITS


def _finite(v: Any) -> bool:
    if isinstance(v, tuple):
        return bool(v[2]) and math.isfinite(v[0])
    return isinstance(v, float) and math.isfinite(v)


def fmt(value: Any, digits: int = DIGITS) -> str:
    """A cell's text: ``(mean, sd, n)`` as mean ± sd (the mean alone for one run), a float
    rounded, None as -."""
    if value is None:
        return "-"
    if isinstance(value, tuple) and len(value) == 3:
        mean, sd, n = value
        if not n:
            return "-"
        d = _digits_for(mean, digits)
        return f"{mean:.{d}f}" if n <= 1 else f"{mean:.{d}f} ± {sd:.{d}f}"
    if isinstance(value, float):
        return f"{value:.{_digits_for(value, digits)}f}"
    return str(value)


def columns_digits(records: list[dict[str, Any]], columns: list[str]) -> dict[str, int]:
    return {c: column_digits([r.get(c) for r in records]) for c in columns}


def best(records: list[dict[str, Any]], columns: tuple[str, ...]) -> set[tuple[int, str]]:
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


def filled(records: list[dict[str, Any]], columns: list[str]) -> list[str]:
    """The columns at least one record has a value in (a component's column that no run
    filled is not drawn)."""

    def has(v: Any) -> bool:
        return v not in (None, "", "-") and not (isinstance(v, tuple) and not v[2])

    return [c for c in columns if any(has(r.get(c)) for r in records)]


def md_table(
    records: list[dict[str, Any]], columns: list[str], bold: tuple[str, ...] = ()
) -> list[str]:
    columns = filled(records, columns)
    top, digits = best(records, bold), columns_digits(records, columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for i, rec in enumerate(records):
        cells = []
        for c in columns:
            text = fmt(rec.get(c), digits[c]).replace("|", "\\|")
            cells.append(f"**{text}**" if (i, c) in top and text != "-" else text)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


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


def comparison_note(records: list[dict[str, Any]], metrics: tuple[str, ...]) -> str:
    """What a comparison cell says, and how much a lone verdict is worth."""
    return (
        "Each cell: the mean difference (method − reference) over runs paired by seed "
        "(and data seed), its 95% t-interval, wins/ties/losses, and a verdict only where "
        "the interval excludes zero. The last column: how many paired runs a paired "
        f"t-test (α 0.05, power 80%) needs to detect a true {metrics[0]} difference of 1 and "
        "2 points, given the spread of the differences seen here."
        + lower_is_better_note(records, metrics)
        + f" {len(records) * len(metrics)} intervals: where nothing differs, about one in 20 "
        "still excludes zero by chance, so a lone verdict among many is weak evidence."
    )


def comparison_rows(records: list[dict[str, Any]], metrics: tuple[str, ...]) -> list[list]:
    """The comparison table's cells (columns: :func:`comparison_columns`)."""
    rows = []
    for r in records:
        need = r[metrics[0]]["pairs_needed"]
        n1, n2 = (need[k] for k in sorted(need))
        rows.append(
            [r["group"], r["method"], r["reference"], r["pairs"]]
            + [diff_text(r[m]) for m in metrics]
            + [f"{n1 or '-'} / {n2 or '-'}"]
        )
    return rows


def comparison_columns(metrics: tuple[str, ...]) -> list[str]:
    return [
        "group",
        "method",
        "against",
        "pairs",
        *metrics,
        f"runs for 1 / 2 points ({metrics[0]})",
    ]


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


def _md(columns: list[str], rows: list[list[Any]]) -> list[str]:
    head = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return head + ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]


def unfinished_md(left: list[dict[str, Any]]) -> list[str]:
    """The section on the runs that did not finish (nothing when all did)."""
    if not left:
        return []
    rows = [[u["run"], u["status"], u["where"], u["error"]] for u in left]
    return [
        "",
        "## Runs not finished (left out of every table)",
        "",
        *_md(["run", "status", "where", "error"], rows),
    ]


def glossary_md(shown: list[str]) -> list[str]:
    rows = [[f"`{n}`", d] for n, d in definitions(shown)]
    return ["", "## What the metrics mean", "", *_md(["metric", "definition"], rows)]


def markdown(result: dict[str, Any], note: str, metrics: tuple[str, ...]) -> str:
    """``report.md`` from :func:`esx.reporting.report.tables`' result."""
    t1, grouped, explained = result["table1"], result["groups"], result["explanations"]
    lines = ["# Results", "", note, "", "## Classification (test, mean ± std over runs)", ""]
    mixed = len({r["data"] for r in t1}) > 1
    head = ["group", "method", "runs", "epochs", *(["data"] if mixed else []), *CLASSIFICATION]
    lines += md_table(t1, head, CLASSIFICATION)
    lines += ["", "Bold: the highest mean of its group, where no other row ties it."]
    shown = [*CLASSIFICATION]
    if grouped:
        cols = [k for k in grouped[0] if k not in ("group", "method", "runs")]
        lines += ["", "## Groups of test images (accuracy, mean ± std over runs)", ""]
        lines += md_table(grouped, ["group", "method", "runs", *cols], tuple(cols))
        shown += cols
    if explained:
        lines += ["", "## Explanations (test images with a true mask, mean ± std over runs)", ""]
        lines += md_table(explained, ["group", "method", "runs", *EXPLANATION], EXPLANATION)
        shown += EXPLANATION
    compared = result["comparisons"]
    if compared:
        lines += ["", "## Paired comparisons", "", comparison_note(compared, metrics), ""]
        lines += _md(comparison_columns(metrics), comparison_rows(compared, metrics))
    else:
        lines += [
            "",
            "No reference row: mark one with `reference: true` in its recipe or "
            "name it with `esx report --reference LABEL` to get paired comparisons.",
        ]
    if result["runs"]:
        names, cells = run_cells(result["runs"])
        lines += ["", "## Per run: test accuracy and its 95% bootstrap interval over test images"]
        lines += [
            "",
            *_md(
                ["group", "method", *names],
                [[g, m, *(row.get(k, "") for k in names)] for (g, m), row in cells.items()],
            ),
        ]
    for title, (table, records) in result["tables"].items():
        lines += ["", f"## {title}", ""]
        lines += md_table(records, ["group", "method", "runs", *table.columns])
        if table.note:
            lines += ["", table.note]
    lines += unfinished_md(result["unfinished"])
    lines += glossary_md([*shown, *metrics])
    return "\n".join(lines) + "\n"


def slug(title: str) -> str:
    """A file name for a table title."""
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:48] or "table"
