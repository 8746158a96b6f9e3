"""What the command line prints: a run's results, a component's table, the component list
and one component's description (rich tables on the terminal, JSON with --json)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from esx.errors import UnknownComponentError
from esx.glossary import EXPLANATION
from esx.params import describe_params
from esx.plugins import Registry
from esx.types import Table


def results_table(metrics: dict[str, Any]) -> RichTable:
    """A finished run's test metrics, then its explanation metrics."""
    table = RichTable(title="test results")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics["test"].items():
        table.add_row(k, "n/a" if v is None else f"{v:.4f}")
    for k in EXPLANATION:
        if k in metrics.get("explanation", {}):
            table.add_row(f"explanation {k}", f"{metrics['explanation'][k]:.4f}")
    return table


def _cell(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def print_table(console: Console, table: Table) -> None:
    """A component's :class:`~esx.types.Table`, with its note under it (empty columns left
    out, an empty table not printed)."""
    table = table.shown()
    if table is None:
        return
    out = RichTable(title=table.title)
    for col in table.columns:
        out.add_column(col)
    for row in table.rows:
        out.add_row(*(_cell(v) for v in row))
    console.print(out)
    if table.note:
        console.print(f"[dim]{table.note}[/]")


def print_results(console: Console, metrics: dict[str, Any]) -> None:
    console.print(results_table(metrics))
    for data in metrics.get("tables", []):
        print_table(console, Table.from_dict(data))


def components(console: Console, reg: Registry, as_json: bool) -> None:
    """Every component by family, with the plugin and package it comes from."""
    data = reg.as_dict()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = RichTable(title="esx components (esx plugins NAME describes one)")
    for col in ("family", "name", "plugin", "package", "version"):
        table.add_column(col)
    for fam, entries in data["components"].items():
        for e in entries:
            table.add_row(fam, e["name"], e["plugin"], e["package"], e["version"])
    console.print(table)
    for b in data["broken"]:
        console.print(f"[red]broken plugin {b['plugin']} ({b['package']}): {b['error']}[/]")


def descriptions(reg: Registry, name: str) -> list[dict[str, Any]]:
    """Every component called ``name`` (one per family): summary, provenance, parameters."""
    found = [reg.entry(f, name) for f in reg.entries if name in reg.entries[f]]
    if not found:
        every = {n for f in reg.entries for n in reg.entries[f]}
        raise UnknownComponentError("component", name, every)
    out = []
    for e in found:
        doc = (e.cls.__doc__ or "").strip().split("\n\n")[0]
        out.append(
            {
                "family": e.family,
                "name": e.name,
                "package": e.package,
                "version": e.version,
                "plugin": e.plugin,
                "class": f"{e.cls.__module__}.{e.cls.__qualname__}",
                "summary": " ".join(doc.split()),
                "params": describe_params(e.cls.Params),
            }
        )
    return out


def describe(console: Console, reg: Registry, name: str, as_json: bool) -> None:
    """``esx plugins NAME``."""
    out = descriptions(reg, name)
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return
    for d in out:
        console.print(
            f"[bold]{d['family']} {d['name']}[/] from {d['package']} {d['version']} "
            f"(plugin {d['plugin']}, {d['class']})",
            highlight=False,
        )
        if d["summary"]:
            console.print(d["summary"], highlight=False)
        table = RichTable(title=f"params of {d['family']} {d['name']!r}")
        for col in ("param", "type", "default", "description"):
            table.add_column(col)
        for p in d["params"]:
            table.add_row(p["name"], p["type"], p["default"], p["description"])
        console.print(table if d["params"] else "no parameters")
