"""Self-contained HTML pages: a run's ``report.html`` and a folder's.

One file each, readable offline on a laptop screen: images are embedded as
``data:`` URIs, the style sheet is inline, there are no scripts and no
external requests; wide tables scroll inside the page. The pages are built
from what the run folders already hold (``metrics.json``, ``history.csv``,
``recipe.yaml`` and their PNGs), so a finished run's page can be rebuilt at
any time with ``esx report RUN --html``.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from esx import outputs
from esx.glossary import CLASSIFICATION, EXPLANATION, definitions
from esx.reporting import plots, text
from esx.types import Table

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1180px;
margin:1.2em auto;padding:0 1em;color:#1d1d1f;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.25em;margin-top:1.6em;
border-bottom:1px solid #ddd;padding-bottom:.2em} h3{font-size:1.05em}
nav{font-size:.9em;margin:.4em 0 1em} nav a{margin-right:1em}
.scroll{overflow-x:auto;max-width:100%} table{border-collapse:collapse;font-size:.85em;
margin:.4em 0} th,td{border:1px solid #d0d0d0;padding:3px 8px;text-align:right;
white-space:nowrap} th{background:#f2f2f4} td.text,th.text{text-align:left}
td.wrap{white-space:normal;min-width:24em}
.note{color:#555;font-size:.88em;max-width:60em} .banner{background:#fff4d6;
border:1px solid #e6c65c;padding:.5em .8em;margin:.6em 0}
.method{font-size:1.05em;margin:.2em 0 .6em}
.better{color:#0a6b1f;font-weight:600} .worse{color:#a3140b;font-weight:600}
figure{margin:.8em 0} figcaption{font-size:.85em;color:#555}
img{max-width:100%;height:auto;border:1px solid #eee}
pre{background:#f7f7f8;padding:.6em;font-size:.8em;overflow-x:auto}
"""

#: the recipe slots a run page names at its top, in order, with the word it uses for each
SLOTS = {
    "data": "dataset",
    "backbone": "backbone",
    "explainer": "explainer",
    "aggregator": "aggregator",
    "loss": "loss",
}


def esc(value: Any) -> str:
    return html.escape(str(value))


def image(data: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG ``data`` inside it."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def figure(data: bytes, caption: str) -> str:
    return f"<figure>{image(data, caption)}<figcaption>{esc(caption)}</figcaption></figure>"


def _numeric(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) or isinstance(v, tuple)


def table(
    columns: list[str],
    rows: Iterable[Iterable[Any]],
    classes: Callable[[int, int], str | None] | None = None,
) -> str:
    """An HTML table inside a box that scrolls sideways; numbers keep the digits that tell
    a column's rows apart, text cells are left-aligned. ``classes(i, j)`` may give a cell a
    CSS class (``better``/``worse``/``wrap``)."""
    rows = [list(r) for r in rows]
    digits = [text.column_digits([r[j] for r in rows if j < len(r)]) for j in range(len(columns))]
    head = "".join(f'<th class="text">{esc(c)}</th>' for c in columns)
    body = []
    for i, row in enumerate(rows):
        tds = []
        for j, v in enumerate(row):
            kinds = [] if _numeric(v) else ["text"]
            if classes and classes(i, j):
                kinds.append(classes(i, j))
            tds.append(f'<td class="{" ".join(kinds)}">{esc(text.fmt(v, digits[j]))}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def records_table(records: list[dict[str, Any]], columns: list[str]) -> str:
    """Records as a table, without the columns no record fills (e.g. ``group`` when no
    recipe names one)."""
    columns = text.filled(records, columns)
    return table(columns, [[r.get(c) for c in columns] for r in records])


def glossary(names: list[str], explanation: bool = False) -> str:
    """The definitions of the metrics a page shows (:mod:`esx.glossary`)."""
    rows = definitions(names, explanation)
    return table(["metric", "definition"], rows, lambda i, j: "wrap" if j == 1 else None)


def component_table(t: Table) -> str:
    """A component's table with its note, without empty columns; nothing for a table with
    no values."""
    t = t.shown()
    if t is None:
        return ""
    note = f'<p class="note">{esc(t.note)}</p>' if t.note else ""
    return f"<h3>{esc(t.title)}</h3>" + table(t.columns, t.rows) + note


def page(title: str, sections: list[tuple[str, str]], intro: str = "") -> str:
    """A whole page: a title, links to each section, the sections (empty ones left out)."""
    sections = [(name, content) for name, content in sections if content]
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


def _pngs(folder: Path) -> list[Path]:
    """The run's figures, overlays first."""
    return sorted(folder.glob("*.png"), key=lambda p: (p.name != "overlays.png", p.name))


def _scores(metrics: dict[str, Any]) -> tuple[str, list[str]]:
    """The scores table (a row per metric) and the metric names it shows."""
    test, chosen = metrics.get("test", {}), metrics.get("validation", {})
    keys = [k for k in dict.fromkeys([*test, *chosen]) if k not in ("best_epoch", "select_metric")]
    scores = table(
        ["metric", "test", f"validation (epoch {chosen.get('best_epoch')})"],
        [[k, test.get(k), chosen.get(k)] for k in keys],
    )
    explained = {
        k: v for k, v in (metrics.get("explanation") or {}).items() if not isinstance(v, dict)
    }
    if explained:
        scores += "<h3>Explanations on the test split</h3>" + table(
            ["metric", "value"], [[k, v] for k, v in explained.items()]
        )
    return scores, keys + [f"explanation {k}" for k in explained]


def run_sections(folder: Path, heading: str = "") -> list[tuple[str, str]]:
    """The sections of one run's page (also embedded, per run, in a folder's page)."""
    metrics = json.loads((folder / "metrics.json").read_text())
    scores, names = _scores(metrics)
    sections = [(f"{heading}Scores", scores)]
    hist = folder / "history.csv"
    if hist.is_file():
        with hist.open(newline="") as f:
            plot = plots.history(
                list(csv.DictReader(f)), metrics.get("validation", {}).get("best_epoch")
            )
        if plot:
            sections.append((f"{heading}Learning curves", figure(plot, "history.csv")))
    tables = [Table.from_dict(t) for t in metrics.get("tables", [])]
    sections.append((f"{heading}Tables", "".join(component_table(t) for t in tables)))
    figs = [figure(p.read_bytes(), p.name) for p in _pngs(folder)]
    sections.append((f"{heading}Figures", "".join(figs)))
    plain = [n for n in names if not n.startswith("explanation ")]
    explained = [n.removeprefix("explanation ") for n in names if n.startswith("explanation ")]
    defs = glossary(plain)
    if explained:
        defs += "<h3>Explanation metrics</h3>" + glossary(explained, explanation=True)
    sections.append((f"{heading}What the metrics mean", defs))
    return sections


def data_banner(metrics: dict[str, Any]) -> str:
    """The banner of a run whose data was synthetic, or not what its recipe asked for."""
    data = metrics.get("data", {})
    words = []
    if data.get("fallback_from"):
        wanted = data["fallback_from"]
        if isinstance(wanted, dict):
            wanted = "; ".join(f"{k}: {v}" for k, v in wanted.items())
        words.append(f"The recipe's data was absent ({wanted}); this run used ")
        words.append(f"{data.get('name')} instead. ")
    if data.get("synthetic"):
        words.append("Synthetic images: these numbers are not results on real scans.")
    return f'<p class="banner">{esc("".join(words))}</p>' if words else ""


def method(recipe: dict[str, Any]) -> str:
    """``dataset NAME · backbone NAME (arch) · ...``: what a run ran, from its recipe."""
    parts = []
    for slot, word in SLOTS.items():
        spec = recipe.get(slot) or {}
        if not isinstance(spec, dict) or not spec.get("name"):
            continue
        params = spec.get("params") or {}
        detail = params.get("arch") or params.get("targets") or ""
        name = f"{word} <b>{esc(spec['name'])}</b>"
        parts.append(name + (f" ({esc(detail)})" if detail else ""))
    return " · ".join(parts)


def write_run_page(folder: Path) -> Path:
    """``report.html`` in a finished run's folder: what ran (its method at the top), its
    scores with their definitions, curves, tables, figures and recipe."""
    metrics = json.loads((folder / "metrics.json").read_text())
    recipe_path = folder / "recipe.yaml"
    recipe = yaml.safe_load(recipe_path.read_text()) if recipe_path.is_file() else {}
    recipe = recipe if isinstance(recipe, dict) else {}
    run = metrics.get("run", {})
    facts = [f"run folder <code>{esc(folder.name)}</code>"]
    if run.get("recipe"):
        facts.append(f"recipe <code>{esc(run['recipe'])}</code>")
    if run.get("seed") is not None:
        facts.append(f"seed {esc(run['seed'])}")
    if run.get("seconds") is not None:
        facts.append(f"{run['seconds']:.0f} s")
    intro = data_banner(metrics) + f'<p class="method">{method(recipe)}</p>'
    intro += f'<p class="note">{" · ".join(facts)}</p>'
    sections = run_sections(folder)
    if recipe_path.is_file():
        sections.append(("Recipe", f"<pre>{esc(recipe_path.read_text())}</pre>"))
    label = recipe.get("label") or " on ".join(
        str((recipe.get(s) or {}).get("name", "?")) for s in ("loss", "aggregator")
    )
    path = folder / "report.html"
    outputs.write_text(path, page(f"esx run: {label}", sections, intro))
    return path


def _comparisons(result: dict[str, Any], metrics: tuple[str, ...]) -> str:
    compared = result["comparisons"]
    if not compared:
        return ""
    marks = {
        (i, 4 + j): {"better": "better", "worse": "worse"}.get(r[m].get("verdict", ""))
        for i, r in enumerate(compared)
        for j, m in enumerate(metrics)
    }
    content = f'<p class="note">{esc(text.comparison_note(compared, metrics))}</p>'
    content += table(
        text.comparison_columns(metrics),
        text.comparison_rows(compared, metrics),
        lambda i, j: marks.get((i, j)),
    )
    plot = plots.paired(compared, metrics)
    return content + (figure(plot, "paired differences against the reference") if plot else "")


def _curve(root: Path, records: dict[str, list[dict[str, Any]]]) -> str:
    """The curve's figure and, per metric, each line's mean and kept share at each value."""
    content = figure((root / "curve.png").read_bytes(), "each line against the varied key")
    for name, recs in records.items():
        key = next(k for k in recs[0] if k not in ("line", "runs"))
        rows = [
            [
                r["line"],
                f"{r[key]:g}",  # a float (curve._value), written as curve.md writes it
                r["runs"],
                r[name],
                r["low"],
                r["high"],
                r.get("kept"),
                r.get("kept_low"),
                r.get("kept_high"),
            ]
            for r in recs
        ]
        cols = [
            "line",
            key,
            "runs",
            f"mean {name}",
            "low",
            "high",
            "kept share",
            "kept low",
            "kept high",
        ]
        content += f"<h3>Test {esc(name)}</h3>" + table(cols, rows)
    note = (
        "low/high: the 95% t-interval of the mean over runs. Kept share: (line − floor) / "
        "(ceiling − floor) over the runs the three share, with a 95% bootstrap interval over "
        "those pairs; '-' where the ceiling is not above the floor."
    )
    return content + f'<p class="note">{esc(note)}</p>'


def _per_run(result: dict[str, Any]) -> str:
    by_row: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for r in result["runs"]:
        if r.get("accuracy") is not None:
            by_row.setdefault((r["group"], r["method"]), []).append((r["run"], r["accuracy"]))
    plot = plots.runs([(m, v) for (_, m), v in by_row.items()])
    content = figure(plot, "test accuracy of each run") if plot else ""
    names, cells = text.run_cells(result["runs"])
    content += (
        '<p class="note">Test accuracy of each run, with its 95% bootstrap interval over '
        "test images.</p>"
    )
    rows = [[g, m, *(row.get(n, "") for n in names)] for (g, m), row in cells.items()]
    return content + table(["group", "method", *names], rows)


def _banner(result: dict[str, Any]) -> str:
    """One banner for a folder whose rows all ran on synthetic data; for a mixed folder,
    the rows that did."""
    synthetic = [r["method"] for r in result["table1"] if r["data"] != "real"]
    if not synthetic:
        return ""
    if len(synthetic) == len(result["table1"]):
        return data_banner({"data": {"synthetic": True}})
    return (
        f'<p class="banner">{esc("Synthetic images in some rows: ")}'
        f"{esc(', '.join(synthetic))}{esc('. Their numbers are not results on real scans.')}</p>"
    )


def write_sweep_page(
    root: Path, result: dict[str, Any], note: str, metrics: tuple[str, ...], shown: list[Path]
) -> Path:
    """``report.html`` for a folder of runs, from :func:`esx.reporting.report.report`'s
    records, with the tables and figures of the runs in ``shown``."""
    mixed = len({r["data"] for r in result["table1"]}) > 1
    head = ["group", "method", "runs", "epochs", *(["data"] if mixed else []), *CLASSIFICATION]
    sections = [("Classification", records_table(result["table1"], head))]
    if result.get("groups"):
        content = records_table(result["groups"], list(result["groups"][0]))
        if (root / "groups.png").is_file():
            content += figure((root / "groups.png").read_bytes(), "accuracy on each group")
        sections.append(("Groups of test images", content))
    if result.get("explanations"):
        cols = ["group", "method", "runs", *EXPLANATION]
        sections.append(("Explanations", records_table(result["explanations"], cols)))
    sections.append(("Paired comparisons", _comparisons(result, metrics)))
    if result.get("curve"):
        sections.append(("Curve", _curve(root, result["curve"]["records"])))
    sections.append(("Per run", _per_run(result)))
    for title, (t, records) in result["tables"].items():
        content = records_table(
            records, text.filled(records, ["group", "method", "runs", *t.columns])
        )
        sections.append((title, content + (f'<p class="note">{esc(t.note)}</p>' if t.note else "")))
    if result["unfinished"]:
        cols = ["run", "status", "where", "error"]
        rows = [[u[c] for c in cols] for u in result["unfinished"]]
        sections.append(
            ("Runs not finished", table(cols, rows, lambda i, j: "wrap" if j == 3 else None))
        )
    for folder in shown:
        name = str(folder.relative_to(root)) if folder.is_relative_to(root) else str(folder)
        banner = data_banner(json.loads((folder / "metrics.json").read_text()))
        for section, content in run_sections(folder):
            if section in ("Figures", "Tables") and content:
                sections.append((f"{name}: {section.lower()}", banner + content))
    shown_metrics = [
        *CLASSIFICATION,
        *(list(result["groups"][0])[3:] if result.get("groups") else []),
    ]
    defs = glossary([*shown_metrics, *metrics])
    if result.get("explanations"):
        defs += "<h3>Explanation metrics</h3>" + glossary(list(EXPLANATION), explanation=True)
    sections.append(("What the metrics mean", defs))
    intro = _banner(result) + f'<p class="note">{esc(note)}</p>'
    path = root / "report.html"
    outputs.write_text(path, page(f"esx report: {root.name}", sections, intro))
    return path
