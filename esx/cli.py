"""The ``esx`` command line."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import track
from rich.table import Table as RichTable
from typer.core import TyperGroup

from esx import __version__
from esx.errors import EsxError
from esx.types import Table


class EsxGroup(TyperGroup):
    """The ``esx`` command group: an :class:`EsxError` raised by any command, esx's own or a
    plugin's, ends it with the error's message and exit status 2, never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except EsxError as err:
            _fail(err)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"esx {__version__}")
        raise typer.Exit()


def _typer() -> typer.Typer:
    """The ``esx`` command group as every ``esx`` app is made."""
    return typer.Typer(
        cls=EsxGroup,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # plain help: no '<bool>' after flags
        help="Explanation-supervised training from noisy multi-annotator masks.",
    )


app = _typer()


@app.callback()
def _main(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = None,
) -> None:
    """Explanation-supervised training from noisy multi-annotator masks."""


RecipeArg = Annotated[Path, typer.Argument(help="recipe YAML file")]  # required
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a recipe key, e.g. --set train.epochs=3 (repeatable)"),
]


def _fail(err: BaseException, code: int = 2) -> None:
    Console(stderr=True, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(str(err))}", markup=True, highlight=False
    )
    raise typer.Exit(code)


@app.command()
def run(
    recipe: Annotated[Path | None, typer.Argument(help="recipe YAML file")] = None,
    out: Annotated[
        Path | None, typer.Option(help="run folder (default: runs/<recipe>-<time>)")
    ] = None,
    set_: SetOpt = None,
    overwrite: Annotated[bool, typer.Option(help="reuse a non-empty run folder")] = False,
    resume: Annotated[
        Path | None, typer.Option(help="continue an interrupted run from its folder")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bars or tables")] = False,
) -> None:
    """Train and evaluate one recipe; write metrics, predictions, checkpoint and figures."""
    from esx import checkpoint
    from esx import distributed as dist
    from esx.outputs import prepare_run_dir
    from esx.plugins import registry
    from esx.recipe import load_recipe
    from esx.runtime import Runtime
    from esx.trainer import Trainer

    world = dist.from_env()  # torchrun: only the main process prints and writes
    console = Console(quiet=quiet or not world.main, soft_wrap=True)
    created = False
    try:
        reg = registry()
        if resume is not None:
            if recipe is not None or out is not None:
                raise EsxError("--resume takes the run folder only: its recipe.yaml is reused")
            if (resume / "metrics.json").is_file():
                console.print(checkpoint.finished_note(resume))
                return
            out, recipe = resume, resume / "recipe.yaml"
            r = load_recipe(recipe, reg, checkpoint.resume_overrides(set_ or []))
            rt = Runtime.setup(r.device, r.train.precision, r.train.channels_last)
        elif recipe is None:
            raise EsxError("give a recipe (esx run RECIPE) or a run folder (esx run --resume DIR)")
        else:
            r = load_recipe(recipe, reg, set_ or [])
            out = out or Path("runs") / f"{recipe.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
            rt = Runtime.setup(r.device, r.train.precision, r.train.channels_last)
            out = dist.broadcast(out, world)
            created = not out.exists()
            problem = None
            if world.main:
                try:
                    prepare_run_dir(out, overwrite)
                except EsxError as err:
                    problem = str(err)
            problem = dist.broadcast(problem, world)  # every process stops, or none
            if problem:
                raise EsxError(problem)
        _clash_notes(console, r, reg)
        trainer = Trainer(r, out, console, recipe_source=str(recipe), runtime=rt)
        metrics = trainer.run(resume=resume is not None)
    except EsxError as err:
        if (
            resume is None
            and out is not None
            and created
            and out.is_dir()
            and not any(out.iterdir())
        ):
            out.rmdir()  # leave nothing behind for a run that never started
        _fail(err)
    except KeyboardInterrupt:
        if out is not None and (out / "recipe.yaml").is_file():
            logging.getLogger("esx").warning("interrupted; resume with: esx run --resume %s", out)
            _fail(
                KeyboardInterrupt(
                    f"interrupted. Finished epochs are kept in {out}; continue "
                    f"with: esx run --resume {out}"
                ),
                130,
            )
        _fail(
            KeyboardInterrupt(
                "interrupted before training started; nothing was written, "
                "so run the same command again"
            ),
            130,
        )
    if not world.main:
        return
    console.print(_results_table(metrics))
    for data in metrics.get("tables", []):
        print_table(console, Table.from_dict(data))
    console.print(f"run folder: [bold]{out}[/]")


def _results_table(metrics: dict) -> RichTable:
    table = RichTable(title="test results")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics["test"].items():
        table.add_row(k, "n/a" if v is None else f"{v:.4f}")
    for k in ("epg", "epg_ratio", "pointing", "pr_auc", "iou"):
        if k in metrics.get("explanation", {}):
            table.add_row(f"explanation {k}", f"{metrics['explanation'][k]:.4f}")
    return table


def _cell(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def print_table(console: Console, table: Table) -> None:
    """A component's :class:`~esx.types.Table`, with its note under it."""
    out = RichTable(title=table.title)
    for col in table.columns:
        out.add_column(col)
    for row in table.rows:
        out.add_row(*(_cell(v) for v in row))
    console.print(out)
    if table.note:
        console.print(f"[dim]{table.note}[/]")


@app.command()
def validate(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Check a recipe (schema, component names, their params) without running it."""
    from esx.plugins import registry
    from esx.recipe import load_recipe

    reg = registry()
    try:
        r = load_recipe(recipe, reg, set_ or [])
    except EsxError as err:
        _fail(err)
    _clash_notes(Console(stderr=True, soft_wrap=True), r, reg)
    typer.echo(f"{recipe}: ok")


def _clash_notes(console: Console, recipe: Any, reg: Any) -> None:
    """Say, once per component, which registration of a clashing name the recipe uses."""
    from esx.recipe import SLOTS

    seen = set()
    for loc, spec in recipe.slots().items():
        key = (SLOTS[loc], spec.name)
        note = reg.clash_note(*key)
        if note and key not in seen:
            seen.add(key)
            console.print(f"[yellow]note: {note}[/]", highlight=False)


def parse_seeds(specs: list[str]) -> list[int]:
    """``["0,1", "3-5"]`` -> ``[0, 1, 3, 4, 5]``, in order, without repeats."""
    seeds: list[int] = []
    for spec in specs:
        for part in spec.replace(" ", ",").split(","):
            if not part:
                continue
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if m is None or (m[2] is not None and int(m[2]) < int(m[1])):
                raise EsxError(
                    f"--seeds {spec!r}: {part!r} is not a seed or a range; "
                    "write e.g. --seeds 0,1,2 or --seeds 0-2"
                )
            last = int(m[2]) if m[2] is not None else int(m[1])
            seeds += [s for s in range(int(m[1]), last + 1) if s not in seeds]
    return seeds


@app.command()
def sweep(
    recipes: Annotated[list[Path], typer.Argument(help="recipe files or folders of recipes")],
    seeds: Annotated[
        list[str],
        typer.Option(
            "--seeds",
            help="seeds: a list or a range, e.g. --seeds 0,1,2 or --seeds 0-4 (repeatable)",
        ),
    ] = ["0"],  # noqa: B006
    out: Annotated[Path, typer.Option(help="folder of the grid's runs")] = Path("runs/sweep"),
    set_: SetOpt = None,
    jobs: Annotated[
        str,
        typer.Option(
            help="runs at once, each its own process with the cores split among "
            "them; 'auto': one per core (CPU) or four sharing the GPU"
        ),
    ] = "1",
    vary: Annotated[
        list[str] | None,
        typer.Option(
            help="also vary a recipe key, e.g. --vary data.params.seed=0-2 (repeatable; "
            "the grid is every combination, and the report pairs runs on it)"
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            help="where runs go: local (this machine), slurm (a job array through submitit; "
            'pip install "esx[slurm]") or ray (Ray tasks; pip install "esx[ray]")'
        ),
    ] = "local",
    executor_config: Annotated[
        Path | None,
        typer.Option(help="YAML of executor options (partition, time, cpus, gpus, ...)"),
    ] = None,
    partition: Annotated[str | None, typer.Option(help="SLURM partition")] = None,
    account: Annotated[str | None, typer.Option(help="SLURM account")] = None,
    time_min: Annotated[
        int | None, typer.Option("--time", help="minutes each run may take (SLURM)")
    ] = None,
    cpus: Annotated[int | None, typer.Option(help="CPU cores per run (slurm, ray)")] = None,
    gpus: Annotated[float | None, typer.Option(help="GPUs per run (slurm, ray)")] = None,
    mem_gb: Annotated[float | None, typer.Option("--mem", help="GB per run (slurm)")] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default RAY_ADDRESS, else local)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="print what would start and where; start nothing")
    ] = False,
) -> None:
    """Run every recipe for every seed (and varied key); finished runs are skipped,
    interrupted ones resumed, a failed run is reported at the end while the others go on."""
    from esx.executors import where_from
    from esx.plugins import registry
    from esx.sweep import parse_vary, run_sweep

    console = Console(soft_wrap=True)
    flags = {"partition": partition, "account": account, "time": time_min, "cpus": cpus}
    flags |= {"gpus": gpus, "mem_gb": mem_gb, "ray_address": ray_address}
    try:
        where = where_from(executor, executor_config, flags)
        result = run_sweep(
            recipes,
            parse_seeds(seeds),
            out,
            registry(),
            set_ or [],
            console,
            jobs,
            parse_vary(vary or []),
            where,
            dry_run,
        )
    except EsxError as err:
        _fail(err)
    except KeyboardInterrupt:
        _fail(
            KeyboardInterrupt(
                "sweep interrupted; finished runs are kept and interrupted ones resume "
                "from their last epoch: run the same command again"
            ),
            130,
        )
    if dry_run:
        console.print(f"dry run, nothing started: {result.counts}")
        return
    console.print(f"sweep finished: {result.counts}; tables: esx report {out}")
    for folder, error in result.failed:
        console.print(f"[bold red]failed:[/] {escape(f'{folder}: {error}')}", highlight=False)
    if result.failed:
        raise typer.Exit(1)


@app.command()
def evaluate(
    paths: Annotated[
        list[Path], typer.Argument(help="finished run folders, or folders holding runs")
    ],
) -> None:
    """Measure the explanations of finished runs again with this esx's metrics (EPG,
    pointing game, PR-AUC, ...) from their chosen checkpoints, updating metrics.json and
    report.html; the classification metrics must come out as recorded."""
    from esx.plugins import registry
    from esx.recipe import load_recipe
    from esx.trainer import Trainer

    console = Console(soft_wrap=True)
    folders = sorted(
        {
            m.parent
            for p in paths
            for m in (
                [p / "metrics.json"] if (p / "metrics.json").is_file() else p.rglob("metrics.json")
            )
        }
    )
    if not folders:
        _fail(EsxError(f"no finished runs (metrics.json) under {', '.join(map(str, paths))}"))
    failed = 0
    for folder in track(folders, description="re-measuring", console=console):
        try:
            recipe = load_recipe(folder / "recipe.yaml", registry())
            m = Trainer(recipe, folder).remeasure()["explanation"]
        except EsxError as err:
            failed += 1
            console.print(f"[red]{folder}[/]: {err}", highlight=False)
            continue
        console.print(
            f"{folder}: EPG {m.get('epg', float('nan')):.4f} pointing "
            f"{m.get('pointing', float('nan')):.4f} PR-AUC {m.get('pr_auc', float('nan')):.4f}",
            highlight=False,
        )
    if failed:
        raise typer.Exit(1)


@app.command("report")
def report_cmd(
    runs: Annotated[Path, typer.Argument(help="a sweep's folder (or any folder of runs)")],
    reference: Annotated[
        list[str] | None,
        typer.Option(
            help="compare every row with this one, by label (repeatable; default: "
            "the rows whose recipe says reference: true)"
        ),
    ] = None,
    metrics: Annotated[
        str,
        typer.Option(
            help="the metrics compared pairwise, comma-separated: test metrics (accuracy, auc, "
            "precision, recall, f1) or explanation metrics (epg, epg_ratio, pointing, pr_auc, "
            "iou, ...)"
        ),
    ] = "accuracy,auc,f1",
    html: Annotated[
        bool,
        typer.Option(
            "--html",
            help="also write report.html: one self-contained page with the tables, "
            "intervals, per-run plots and the figures of the runs --show picks",
        ),
    ] = False,
    show: Annotated[
        list[str] | None,
        typer.Option(
            help="runs whose overlays and component figures the HTML page shows, as globs "
            "under the folder, e.g. --show 'a_magi/seed0*' (repeatable; default: each "
            "row's first run)"
        ),
    ] = None,
) -> None:
    """Classification, paired comparisons with confidence intervals, every component's
    tables (Markdown, CSV, JSON, and with --html a page) and a plot, from a folder of runs.
    Given one run's folder with --html, rebuilds that run's report.html."""
    from esx.report import report

    if not runs.is_dir():
        _fail(EsxError(f"no such folder: {runs}"))
    if html and (runs / "metrics.json").is_file():
        from esx.html import write_run_page

        typer.echo(f"wrote {write_run_page(runs)}")
        return
    try:
        chosen = tuple(m.strip() for m in metrics.split(",") if m.strip())
        if not chosen:
            raise EsxError("--metrics: name at least one metric, e.g. --metrics accuracy,epg")
        result = report(runs, reference or None, chosen, html=html, show=show)
    except EsxError as err:
        _fail(err)
    typer.echo(result["markdown"])
    typer.echo(f"written under {runs}: {', '.join(result['written'])}")


@app.command()
def plugins(
    name: Annotated[
        str | None, typer.Argument(help="a component: describe it and list its parameters")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="the table README.md shows, as Markdown")
    ] = False,
) -> None:
    """List every component by family with the package (and version) it comes from, or
    describe one component: its summary, its parameters with type, default and description."""
    from esx.plugins import components_markdown, registry

    reg = registry()
    if markdown:
        typer.echo(components_markdown(reg), nl=False)
        return
    if name is not None:
        _describe(reg, name, as_json)
        return
    data = reg.as_dict()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    console = Console(soft_wrap=True)
    table = RichTable(title="esx components (esx plugins NAME describes one)")
    for col in ("family", "name", "plugin", "package", "version"):
        table.add_column(col)
    for fam, entries in data["components"].items():
        for e in entries:
            table.add_row(fam, e["name"], e["plugin"], e["package"], e["version"])
    console.print(table)
    for b in data["broken"]:
        console.print(f"[red]broken plugin {b['plugin']} ({b['package']}): {b['error']}[/]")


def _describe(reg: Any, name: str, as_json: bool) -> None:
    from esx.errors import UnknownComponentError
    from esx.params import describe_params

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
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    console = Console(soft_wrap=True)
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


def build_app(reg: Any = None) -> typer.Typer:
    """The ``esx`` command line: esx's own commands plus every plugin's ``register_commands``.

    Args:
        reg: the registry whose plugins add commands (default: the process-wide one).
    """
    from esx.plugins import registry

    full = _typer()
    full.registered_callback = app.registered_callback
    full.registered_commands = list(app.registered_commands)
    full.registered_groups = list(app.registered_groups)
    (reg or registry()).add_commands(full)
    return full


def main() -> None:
    try:
        build_app()()
    except EsxError as err:  # errors raised outside a command body
        Console(stderr=True).print(f"[bold red]error:[/] {err}")
        sys.exit(2)


if __name__ == "__main__":
    main()
