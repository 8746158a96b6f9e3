"""The ``esx`` command line: each command parses its options and hands them to the module
that does the work (``run`` -> :mod:`esx.launch`, ``sweep`` -> :mod:`esx.sweep`, ``report``
-> :mod:`esx.reporting.report`, ``plugins`` -> :mod:`esx.printing`). A command imports
that module when it runs, so ``esx --help`` starts without importing torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from esx import __version__
from esx.errors import EsxError
from esx.options import (
    AccountOpt,
    CeilingOpt,
    CpusOpt,
    CurveOpt,
    DryOpt,
    ExecutorConfigOpt,
    ExecutorOpt,
    FloorOpt,
    GpusOpt,
    HtmlOpt,
    JobsOpt,
    MemOpt,
    MetricsOpt,
    OutOpt,
    PartitionOpt,
    RayOpt,
    RecipeArg,
    ReferenceOpt,
    ResumeOpt,
    SeedsOpt,
    SetOpt,
    ShowOpt,
    TimeOpt,
    VaryOpt,
    VersusOpt,
    opt,
)


class EsxGroup(TyperGroup):
    """The ``esx`` command group: an :class:`EsxError` raised by any command, esx's own or a
    plugin's, ends it with the error's message and exit status 2, never a traceback; Ctrl-C
    ends it with what was kept and exit status 130."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except EsxError as err:
            _fail(err)
        except KeyboardInterrupt as err:
            _fail(err if str(err) else KeyboardInterrupt("interrupted"), 130)


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


def _fail(err: BaseException, code: int = 2) -> None:
    Console(stderr=True, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(str(err))}", markup=True, highlight=False
    )
    raise typer.Exit(code)


@app.command()
def run(
    recipe: Annotated[Path | None, typer.Argument(help="recipe YAML file")] = None,
    out: OutOpt = None,
    set_: SetOpt = None,
    overwrite: Annotated[bool, opt("reuse a non-empty run folder")] = False,
    resume: ResumeOpt = None,
    quiet: Annotated[bool, opt("no progress bars or tables")] = False,
) -> None:
    """Train and evaluate one recipe; write metrics, predictions, checkpoint and figures.

    Freed memory is reused (a faster CPU step, the same bytes); ESX_ALLOCATOR=system: not."""
    from esx import distributed as dist
    from esx import launch, printing

    world = dist.from_env()  # torchrun: only the main process prints and writes
    console = Console(quiet=quiet or not world.main, soft_wrap=True)
    metrics, folder = launch.run(recipe, out, set_ or [], overwrite, resume, console, world)
    if metrics is not None and world.main:
        printing.print_results(console, metrics)
        console.print(f"run folder: [bold]{folder}[/]")


@app.command()
def validate(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Check a recipe (schema, component names, their params) without running it."""
    from esx import launch

    launch.validate(recipe, set_ or [], Console(stderr=True, soft_wrap=True))
    typer.echo(f"{recipe}: ok")


@app.command()
def sweep(
    recipes: Annotated[list[Path], typer.Argument(help="recipe files or folders of recipes")],
    seeds: SeedsOpt = ["0"],  # noqa: B006
    out: Annotated[Path, opt("folder of the grid's runs")] = Path("runs/sweep"),
    set_: SetOpt = None,
    jobs: JobsOpt = "1",
    vary: VaryOpt = None,
    executor: ExecutorOpt = "local",
    executor_config: ExecutorConfigOpt = None,
    partition: PartitionOpt = None,
    account: AccountOpt = None,
    time_min: TimeOpt = None,
    cpus: CpusOpt = None,
    gpus: GpusOpt = None,
    mem_gb: MemOpt = None,
    ray_address: RayOpt = None,
    dry_run: DryOpt = False,
) -> None:
    """Run every recipe for every seed (and varied key); finished runs are skipped,
    interrupted ones resumed, a failed run is reported at the end while the others go on.

    Its runs reuse freed memory as esx run does (ESX_ALLOCATOR=system: not)."""
    from esx import sweep as grid

    flags = {"partition": partition, "account": account, "time": time_min, "cpus": cpus}
    flags |= {"gpus": gpus, "mem_gb": mem_gb, "ray_address": ray_address}
    plan = grid.Plan(recipes, seeds, out, set_ or [], jobs, vary or [], executor, dry_run)
    if not grid.command(plan, executor_config, flags, Console(soft_wrap=True)):
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
    from esx import launch

    if not launch.remeasure_all(paths, Console(soft_wrap=True)):
        raise typer.Exit(1)


@app.command("report")
def report_cmd(
    runs: Annotated[Path, typer.Argument(help="a sweep's folder (or any folder of runs)")],
    reference: ReferenceOpt = None,
    metrics: MetricsOpt = "accuracy,auc,f1",
    html: HtmlOpt = False,
    show: ShowOpt = None,
    curve: CurveOpt = None,
    floor: FloorOpt = None,
    ceiling: CeilingOpt = None,
    versus: VersusOpt = None,
) -> None:
    """Classification, paired comparisons with confidence intervals, every component's
    tables (Markdown, CSV, JSON, and with --html a page) and a plot, from a folder of runs.
    Given one run's folder with --html, rebuilds that run's report.html."""
    from esx.reporting import report

    over = report.curve_options(curve, floor, ceiling, versus)
    typer.echo(report.command(runs, reference or None, metrics, html, show, over))


@app.command()
def plugins(
    name: Annotated[
        str | None, typer.Argument(help="a component: describe it and list its parameters")
    ] = None,
    as_json: Annotated[bool, opt("machine-readable output", "--json")] = False,
    markdown: Annotated[bool, opt("the table README.md shows, as Markdown", "--markdown")] = False,
) -> None:
    """List every component by family with the package (and version) it comes from, or
    describe one component: its summary, its parameters with type, default and description."""
    from esx import printing
    from esx.plugins import components_markdown, registry

    reg, console = registry(), Console(soft_wrap=True)
    if markdown:
        typer.echo(components_markdown(reg), nl=False)
    elif name is not None:
        printing.describe(console, reg, name, as_json)
    else:
        printing.components(console, reg, as_json)


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
