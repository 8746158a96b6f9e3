"""A curve over one varied recipe key (``esx report --curve data.params.level``): each row's
metric against the key's value with its 95% interval band, the floor and ceiling rows,
and the share of the ceiling's gain over the floor each row keeps at each value.

Rows of one recipe at different values of the key are one line (their label, before
rows were told apart by the key). Runs pair across lines on their folder name (seed and
data draw), as in every comparison.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from esx import outputs, stats
from esx.errors import EsxError
from esx.reporting import plots
from esx.reporting.runs import Row, metric

#: the metrics a curve draws, the first the primary one
CURVE_METRICS = ("accuracy", "worst_group_accuracy")


def _value(row: Row, key: str) -> float:
    v = row.experiment.get(key)
    try:
        return float(v)
    except (TypeError, ValueError):
        raise EsxError(
            f"--curve {key}: row {row.name!r} has {key} = {v!r}, not a number; name a key "
            "the sweep varied over numbers (e.g. --vary data.params.level=0,0.5,1)"
        ) from None


def _runs(row: Row) -> str:
    return f"{len(row.runs)} run" + "s" * (len(row.runs) != 1)


def lines(rows: list[Row], key: str) -> dict[str, dict[float, Row]]:
    """Line name -> value of ``key`` -> the row of that recipe at that value."""
    if not any(key in r.experiment for r in rows):
        known = sorted({k for r in rows for k in r.experiment})
        near = [k for k in known if k.split(".")[-1] == key.split(".")[-1]]
        hint = f"; did you mean {near[0]}?" if near else ""
        raise EsxError(f"--curve {key}: no run's recipe has that key{hint}")
    out: dict[str, dict[float, Row]] = {}
    for r in rows:
        if key in r.experiment:
            points = out.setdefault(r.name, {})
            x = _value(r, key)
            if x in points:
                raise EsxError(
                    f"--curve {key}: line {r.name!r} has two rows at {key} = {x:g}, "
                    f"{points[x].label!r} ({_runs(points[x])}) and {r.label!r} "
                    f"({_runs(r)}), which ran different experiments; give their "
                    "recipes different labels, or move one's runs out of the report's folder"
                )
            points[x] = r
    return out


def _band(values: list[float]) -> tuple[float, float, float, int]:
    """Mean and its 95% t-interval."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan, 0
    if len(v) < 2:
        return float(v.mean()), math.nan, math.nan, 1
    half = sps.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half), len(v)


def _pairs(*rows: Row, name: str) -> list[list[float]]:
    """The metric of each row over the runs all of them share a folder name with."""
    maps = [r.by_pair() for r in rows]
    shared = sorted(set.intersection(*(set(m) for m in maps)))
    cols = [[metric(m[k], name) for k in shared] for m in maps]
    keep = [i for i in range(len(shared)) if all(isinstance(c[i], int | float) for c in cols)]
    return [[c[i] for i in keep] for c in cols]


def table(
    rows: list[Row],
    key: str,
    floor: str,
    ceiling: str,
    versus: str | None,
    name: str = "accuracy",
) -> list[dict[str, Any]]:
    """One record per line and value: the metric's mean and interval over runs, the share
    of the ceiling's gain kept, and the paired difference from the ``versus`` line."""
    by_line = lines(rows, key)
    for label, role in ((floor, "--floor"), (ceiling, "--ceiling"), (versus, "--versus")):
        if label is None:
            continue
        if label not in by_line:
            raise EsxError(f"{role} {label!r}: no such line; lines: {', '.join(by_line)}")
    out = []
    for label, points in by_line.items():
        for x in sorted(points):
            row = points[x]
            mean, low, high, n = _band([metric(run, name) for run in row.runs])
            rec = {"line": label, key: x, "runs": n, name: mean, "low": low, "high": high}
            lo_row, hi_row = by_line[floor].get(x), by_line[ceiling].get(x)
            if lo_row is not None and hi_row is not None:
                got, lo, hi = _pairs(row, lo_row, hi_row, name=name)
                rec["kept"], rec["kept_low"], rec["kept_high"] = stats.kept_share(got, lo, hi)
                rec["kept_pairs"] = len(got)
            other = by_line[versus].get(x) if versus else None
            if other is not None and other is not row:
                a, b = _pairs(row, other, name=name)
                d = stats.paired(a, b)
                rec[f"minus_{versus}"] = d.as_dict()
            out.append(rec)
    return out


def figure(
    path: Path, records: dict[str, list[dict[str, Any]]], key: str, floor: str, ceiling: str
) -> None:
    """One panel per metric: each line's mean with its interval band against ``key``."""
    fig, axes = plots.plt.subplots(1, len(records), figsize=(5.2 * len(records), 3.8))
    axes = np.atleast_1d(axes)
    for ax, (name, recs) in zip(axes, records.items(), strict=True):
        for label in dict.fromkeys(r["line"] for r in recs):
            pts = [r for r in recs if r["line"] == label]
            xs = [r[key] for r in pts]
            bound = label in (floor, ceiling)
            style = {"ls": "--", "color": "black" if label == ceiling else "grey"} if bound else {}
            (line,) = ax.plot(xs, [r[name] for r in pts], marker="o", ms=3, label=label, **style)
            if len(pts) > 1:
                ax.fill_between(
                    xs,
                    [r["low"] for r in pts],
                    [r["high"] for r in pts],
                    color=line.get_color(),
                    alpha=0.12,
                    lw=0,
                )
            else:
                # A band needs two values of the key; a line run at one shows its interval
                # as an error bar instead.
                r = pts[0]
                ax.errorbar(
                    xs,
                    [r[name]],
                    yerr=[[r[name] - r["low"]], [r["high"] - r[name]]],
                    color=line.get_color(),
                    capsize=3,
                    lw=1,
                )
        ax.set_xlabel(key)
        ax.set_ylabel(f"test {name}")
        ax.set_title(f"{name}: mean and 95% interval over runs", fontsize=9)
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    plots.write(path, fig)


def _cell(mean: float, low: float, high: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "-"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _uneven(counts: dict[tuple[str, float], int], what: str) -> list[str]:
    """A line naming the cells over fewer runs (or pairs) than the most, or nothing: a
    sweep still running, or a cell that failed, shows in the tables as an interval over
    fewer runs, which a reader must be told of."""
    if not counts or len(set(counts.values())) < 2:
        return []
    most = max(counts.values())
    short = [f"{line} at {x:g} ({n})" for (line, x), n in counts.items() if n < most]
    return ["", f"Fewer {what} than the {most} of the fullest cells: " + "; ".join(short) + "."]


def markdown(recs: list[dict[str, Any]], key: str, versus: str | None, name: str) -> list[str]:
    xs = sorted({r[key] for r in recs})
    head = "| line | " + " | ".join(f"{key} = {x:g}" for x in xs) + " |"
    rule = "|" + " --- |" * (len(xs) + 1)
    by = {(r["line"], r[key]): r for r in recs}
    names = list(dict.fromkeys(r["line"] for r in recs))

    def grid(cell: Any) -> list[str]:
        return [head, rule] + [
            f"| {n} | " + " | ".join(cell(by.get((n, x))) for x in xs) + " |" for n in names
        ]

    diffs = f"minus_{versus}"

    def diff(r: dict | None) -> str:
        d = (r or {}).get(diffs)
        if not d or d["n"] < 2:
            return "-"
        return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] {d['verdict']}"

    def counts(get: Any) -> dict[tuple[str, float], int]:
        return {(r["line"], r[key]): n for r in recs if (n := get(r))}

    return [
        "",
        f"### Test {name} (mean [95% t-interval over runs])",
        "",
        *grid(lambda r: _cell(r[name], r["low"], r["high"]) if r else "-"),
        *_uneven(counts(lambda r: r["runs"]), "runs"),
        "",
        "### Share of the ceiling's gain kept (mean [95% bootstrap interval over pairs])",
        "",
        *grid(
            lambda r: (
                _cell(
                    r.get("kept", math.nan),
                    r.get("kept_low", math.nan),
                    r.get("kept_high", math.nan),
                    2,
                )
                if r
                else "-"
            )
        ),
        *_uneven(counts(lambda r: r.get("kept_pairs")), "pairs"),
        "",
        f"### Minus {versus} (paired, 95% t-interval)",
        "",
        *grid(diff),
        *_uneven(counts(lambda r: (r.get(diffs) or {}).get("n")), "pairs"),
    ]


def write(
    root: Path, rows: list[Row], key: str, floor: str, ceiling: str, versus: str | None
) -> dict[str, Any]:
    """``curve.png``, ``curve.csv`` and the Markdown section of the curve over ``key``."""
    names = [
        m for m in CURVE_METRICS if any(metric(run, m) is not None for r in rows for run in r.runs)
    ]
    recs = {m: table(rows, key, floor, ceiling, versus, m) for m in names}
    figure(root / "curve.png", recs, key, floor, ceiling)
    flat = [
        {"metric": m, **{k: v for k, v in r.items() if not isinstance(v, dict)}}
        | {
            f"minus_{versus}_{k}": r.get(f"minus_{versus}", {}).get(k)
            for k in ("mean", "low", "high", "n")
            if versus
        }
        for m, rs in recs.items()
        for r in rs
    ]
    header = list(dict.fromkeys(k for r in flat for k in r))
    outputs.write_csv(root / "curve.csv", header, [[r.get(k, "") for k in header] for r in flat])
    md = [
        "",
        f"## Curve over {key}",
        "",
        f"Floor: {floor}; ceiling: {ceiling}. Kept share: (line − floor) / (ceiling − floor), "
        "means over the runs the three share (seed, data draw); NaN where the ceiling is "
        "not above the floor.",
    ]
    for m, rs in recs.items():
        md += markdown(rs, key, versus, m)
    outputs.write_text(root / "curve.md", "\n".join(md) + "\n")
    return {"records": recs, "markdown": "\n".join(md) + "\n"}
