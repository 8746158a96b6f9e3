"""Self-contained HTML pages: a run's ``report.html`` and a sweep's.

One file each, readable offline on a laptop screen: images are embedded as
``data:`` URIs, the style sheet is inline, there are no scripts and no
external requests. The pages are built from what the run folder already
holds (``metrics.json``, ``history.csv``, ``recipe.yaml`` and its PNGs), so
a finished run's page can be rebuilt at any time with ``esx report RUN --html``.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from esx import outputs, report
from esx.types import Table

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1180px;
margin:1.2em auto;padding:0 1em;color:#1d1d1f;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.25em;margin-top:1.6em;
border-bottom:1px solid #ddd;padding-bottom:.2em} h3{font-size:1.05em}
nav{font-size:.9em;margin:.4em 0 1em} nav a{margin-right:1em}
.scroll{overflow-x:auto} table{border-collapse:collapse;font-size:.85em;margin:.4em 0}
th,td{border:1px solid #d0d0d0;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f2f2f4} td.text,th.text{text-align:left}
.note{color:#555;font-size:.88em;max-width:60em} .banner{background:#fff4d6;
border:1px solid #e6c65c;padding:.5em .8em;margin:.6em 0}
.better{color:#0a6b1f;font-weight:600} .worse{color:#a3140b;font-weight:600}
figure{margin:.8em 0} figcaption{font-size:.85em;color:#555}
img{max-width:100%;height:auto;border:1px solid #eee}
pre{background:#f7f7f8;padding:.6em;font-size:.8em;overflow-x:auto}
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def image(data: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG ``data`` inside it."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def figure(data: bytes, caption: str) -> str:
    return f"<figure>{image(data, caption)}<figcaption>{esc(caption)}</figcaption></figure>"


def png(fig: Any, dpi: int = 90) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def cell(value: Any, digits: int = 4) -> str:
    """A table cell's text: numbers rounded, ``(mean, sd, n)`` as mean ± sd, None as -."""
    if value is None:
        return "-"
    if isinstance(value, tuple) and len(value) == 3:
        mean, sd, n = value
        if not n:
            return "-"
        return f"{mean:.{digits}f}" if n <= 1 else f"{mean:.{digits}f} ± {sd:.{digits}f}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(columns: list[str], rows: Iterable[Iterable[Any]], classes: Any = None) -> str:
    """An HTML table; text cells are left-aligned. ``classes(i, j)`` may give a cell a CSS
    class (``better``/``worse``)."""
    head = "".join(f'<th class="text">{esc(c)}</th>' for c in columns)
    body = []
    for i, row in enumerate(rows):
        tds = []
        for j, v in enumerate(row):
            text = cell(v)
            kinds = [] if _numeric(v) else ["text"]
            if classes and classes(i, j):
                kinds.append(classes(i, j))
            tds.append(f'<td class="{" ".join(kinds)}">{esc(text)}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def _numeric(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) or isinstance(v, tuple)


def component_table(t: Table) -> str:
    note = f'<p class="note">{esc(t.note)}</p>' if t.note else ""
    return f"<h3>{esc(t.title)}</h3>" + table(t.columns, t.rows) + note


def page(title: str, sections: list[tuple[str, str]], intro: str = "") -> str:
    """A whole page: a title, links to each section, the sections."""
    anchors = [f"s{i}" for i in range(len(sections))]
    nav = " ".join(
        f'<a href="#{a}">{esc(name)}</a>' for a, (name, _) in zip(anchors, sections, strict=True)
    )
    body = "".join(
        f'<h2 id="{a}">{esc(name)}</h2>{content}'
        for a, (name, content) in zip(anchors, sections, strict=True)
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1>{intro}<nav>{nav}</nav>{body}</body></html>"
    )


def history_plot(history: list[dict[str, str]], best_epoch: int | None) -> bytes | None:
    """Learning curves: every training loss on the left, every validation metric on the
    right, the chosen epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return None
    epochs = [int(r["epoch"]) for r in history]
    keys = [k for k in history[0] if k != "epoch"]
    left = [k for k in keys if not k.startswith("val_") or k == "val_loss"]
    right = [k for k in keys if k.startswith("val_") and k != "val_loss"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, group, title in ((axes[0], left, "losses"), (axes[1], right, "validation")):
        for k in group:
            ys = [float(r[k]) if r.get(k) not in ("", None) else float("nan") for r in history]
            ax.plot(epochs, ys, marker=".", label=k)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label="chosen epoch")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)


def _pngs(folder: Path) -> list[Path]:
    """The run's figures, overlays first."""
    return sorted(folder.glob("*.png"), key=lambda p: (p.name != "overlays.png", p.name))


def run_sections(folder: Path, heading: str = "") -> list[tuple[str, str]]:
    """The sections of one run's page (also embedded, per run, in a sweep's page)."""
    metrics = json.loads((folder / "metrics.json").read_text())
    test, chosen = metrics.get("test", {}), metrics.get("validation", {})
    keys = list(dict.fromkeys([*test, *chosen]))
    keys = [k for k in keys if k not in ("best_epoch", "select_metric")]
    scores = table(  # a row per metric: ten classes and their groups stay within the page
        ["metric", "test", f"validation (epoch {chosen.get('best_epoch')})"],
        [[k, test.get(k), chosen.get(k)] for k in keys],
    )
    explained = metrics.get("explanation") or {}
    if explained:
        scores += "<h3>Explanations on the test split</h3>" + table(
            ["metric", "value"], [[k, v] for k, v in explained.items() if not isinstance(v, dict)]
        )
    sections = [(f"{heading}Scores", scores)]
    hist = folder / "history.csv"
    if hist.is_file():
        with hist.open(newline="") as f:
            plot = history_plot(list(csv.DictReader(f)), chosen.get("best_epoch"))
        if plot:
            sections.append((f"{heading}Learning curves", figure(plot, "history.csv")))
    tables = [Table.from_dict(t) for t in metrics.get("tables", [])]
    if tables:
        sections.append((f"{heading}Tables", "".join(component_table(t) for t in tables)))
    figs = [figure(p.read_bytes(), p.name) for p in _pngs(folder)]
    if figs:
        sections.append((f"{heading}Figures", "".join(figs)))
    return sections


def data_banner(metrics: dict[str, Any]) -> str:
    data = metrics.get("data", {})
    text = []
    if data.get("fallback_from"):
        wanted = data["fallback_from"]
        if isinstance(wanted, dict):
            wanted = "; ".join(f"{k}: {v}" for k, v in wanted.items())
        text.append(f"The recipe's data was absent ({wanted}); this run used ")
        text.append(f"{data.get('name')} instead. ")
    if data.get("synthetic"):
        text.append("Synthetic images: these numbers are not results on real scans.")
    return f'<p class="banner">{esc("".join(text))}</p>' if text else ""


def write_run_page(folder: Path) -> Path:
    """``report.html`` in a finished run's folder."""
    metrics = json.loads((folder / "metrics.json").read_text())
    run = metrics.get("run", {})
    facts = [f"run folder <code>{esc(folder)}</code>"]
    if run.get("recipe"):
        facts.append(f"recipe <code>{esc(run['recipe'])}</code>")
    if run.get("seed") is not None:
        facts.append(f"seed {esc(run['seed'])}")
    if run.get("seconds") is not None:
        facts.append(f"{run['seconds']:.0f} s")
    intro = data_banner(metrics) + f'<p class="note">{" · ".join(facts)}</p>'
    sections = run_sections(folder)
    recipe = folder / "recipe.yaml"
    if recipe.is_file():
        sections.append(("Recipe", f"<pre>{esc(recipe.read_text())}</pre>"))
    path = folder / "report.html"
    outputs.write_text(path, page(f"esx run: {folder.name}", sections, intro))
    return path


def _verdict_class(d: dict[str, Any]) -> str | None:
    return {"better": "better", "worse": "worse"}.get(d.get("verdict", ""))


def comparison_table(records: list[dict[str, Any]], metrics: tuple[str, ...]) -> str:
    first = metrics[0]
    rows, marks = [], {}
    for i, r in enumerate(records):
        need = r[first]["pairs_needed"]
        n1, n2 = (need[k] for k in sorted(need))
        rows.append(
            [r["group"], r["method"], r["reference"], r["pairs"]]
            + [report.diff_text(r[m]) for m in metrics]
            + [f"{n1 or '-'} / {n2 or '-'}"]
        )
        for j, m in enumerate(metrics):
            marks[(i, 4 + j)] = _verdict_class(r[m])
    cols = ["group", "method", "against", "pairs", *metrics, f"runs for 1 / 2 points ({first})"]
    return table(cols, rows, lambda i, j: marks.get((i, j)))


def paired_plot(records: list[dict[str, Any]], metrics: tuple[str, ...]) -> bytes | None:
    """Each row's paired difference from its reference, with the 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
            ax.errorbar(
                d["mean"],
                y,
                xerr=[[d["mean"] - d["low"]], [d["high"] - d["mean"]]],
                fmt="o",
                color=colour,
                capsize=3,
            )
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"{m}: difference, 95% interval", fontsize=9)
        ax.set_yticks(range(len(shown)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
    fig.tight_layout()
    return png(fig)


def runs_plot(runs_by_row: list[tuple[str, list[tuple[str, float]]]]) -> bytes | None:
    """Every run's test accuracy, one column of dots per row, the same run (seed, data
    seed) joined across rows by a faint line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not runs_by_row:
        return None
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(runs_by_row)), 3.4))
    by_run: dict[str, list[tuple[int, float]]] = {}
    for x, (_, runs) in enumerate(runs_by_row):
        for name, value in runs:
            by_run.setdefault(name, []).append((x, value))
    for points in by_run.values():
        if len(points) > 1:
            ax.plot(*zip(*points, strict=True), color="#bbb", lw=0.6, zorder=1)
    for x, (_, runs) in enumerate(runs_by_row):
        values = [v for _, v in runs]
        ax.scatter([x] * len(values), values, s=14, zorder=2)
        if values:
            ax.hlines(sum(values) / len(values), x - 0.3, x + 0.3, color="black", zorder=3)
    ax.set_xticks(range(len(runs_by_row)))
    ax.set_xticklabels([label for label, _ in runs_by_row], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("test accuracy")
    ax.set_title(
        "Each run (dots; a line joins the same seed and data seed), mean (bar)", fontsize=9
    )
    fig.tight_layout()
    return png(fig)


def write_sweep_page(
    root: Path,
    result: dict[str, Any],
    note: str,
    metrics: tuple[str, ...],
    shown: list[Path],
    columns: tuple[str, ...],
    data: str = "real",
) -> Path:
    """``report.html`` for a folder of runs, from :func:`esx.report.report`'s records, with
    the tables and figures of the runs in ``shown``; ``data`` (synthetic, real or mixed)
    decides the banner."""
    t1 = result["table1"]
    head = ["group", "method", "runs", "epochs", *columns]
    sections = [("Classification", table(head, [[r.get(c) for c in head] for r in t1]))]
    if result.get("groups"):
        cols = list(result["groups"][0])
        content = table(cols, [[r.get(c) for c in cols] for r in result["groups"]])
        groups_png = root / "groups.png"
        if groups_png.is_file():
            content += figure(groups_png.read_bytes(), "accuracy on each group of test images")
        sections.append(("Groups of test images", content))
    if result.get("explanations"):
        cols = ["group", "method", "runs", *report.EXPLAINED]
        rows = [[r.get(c) for c in cols] for r in result["explanations"]]
        sections.append(("Explanations", table(cols, rows)))
    if result["comparisons"]:
        content = (
            '<p class="note">Each cell: the mean difference (method − reference) over runs '
            "paired by seed and data seed, its 95% t-interval, wins/ties/losses, and a "
            "verdict only where the interval excludes zero (green: better, red: worse). "
            "Last column: paired runs needed to detect a 1- and 2-point difference at 80% "
            f"power, from the spread seen here. {len(result['comparisons']) * len(metrics)} "
            "intervals: where nothing differs, about one in 20 still excludes zero by chance."
            + report.lower_is_better_note(result["comparisons"], metrics)
            + "</p>"
            + comparison_table(result["comparisons"], metrics)
        )
        plot = paired_plot(result["comparisons"], metrics)
        if plot:
            content += figure(plot, "paired differences against the reference")
        sections.append(("Paired comparisons", content))
    by_row: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for r in result["runs"]:
        if r.get("accuracy") is not None:
            by_row.setdefault((r["group"], r["method"]), []).append((r["run"], r["accuracy"]))
    content = ""
    plot = runs_plot([(m, v) for (_, m), v in by_row.items()])
    if plot:
        content += figure(plot, "test accuracy of each run")
    names, cells = report.run_cells(result["runs"])
    content += (
        '<p class="note">Test accuracy of each run, with its 95% bootstrap interval over '
        "test images.</p>"
    )
    content += table(
        ["group", "method", *names],
        [[g, m, *(row.get(n, "") for n in names)] for (g, m), row in cells.items()],
    )
    sections.append(("Per run", content))
    for title, (t, records) in result["tables"].items():
        cols = ["group", "method", "runs", *t.columns]
        content = table(cols, [[rec.get(c) for c in cols] for rec in records])
        if t.note:
            content += f'<p class="note">{esc(t.note)}</p>'
        sections.append((title, content))
    for folder in shown:
        name = str(folder.relative_to(root)) if folder.is_relative_to(root) else str(folder)
        for section, content in run_sections(folder):
            if section in ("Figures", "Tables"):
                sections.append((f"{name}: {section.lower()}", content))
    path = root / "report.html"
    intro = f'<p class="note">{esc(note)}</p>'
    if data != "real":
        intro = data_banner({"data": {"synthetic": True}}) + intro
    outputs.write_text(path, page(f"esx report: {root.name}", sections, intro))
    return path
