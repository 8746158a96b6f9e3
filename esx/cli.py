"""The ``esx`` command line."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from esx.errors import EsxError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Explanation-supervised training from noisy multi-annotator masks.",
)

RecipeArg = Annotated[Path, typer.Argument(help="recipe YAML file")]  # required
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a recipe key, e.g. --set train.epochs=3 (repeatable)"),
]


def _fail(err: BaseException, code: int = 2) -> None:
    Console(stderr=True, soft_wrap=True).print(
        f"[bold red]error:[/] {err}", markup=True, highlight=False
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
    from esx import distributed as dist
    from esx.outputs import prepare_run_dir
    from esx.plugins import registry
    from esx.recipe import load_recipe
    from esx.trainer import Trainer, choose_device

    world = dist.from_env()  # torchrun: only the main process prints and writes
    console = Console(quiet=quiet or not world.main, soft_wrap=True)
    created = False
    try:
        reg = registry()
        if resume is not None:
            if recipe is not None or set_ or out is not None:
                raise EsxError("--resume takes the run folder only: its recipe.yaml is reused")
            out, recipe = resume, resume / "recipe.yaml"
            r = load_recipe(recipe, reg)
        elif recipe is None:
            raise EsxError("give a recipe (esx run RECIPE) or a run folder (esx run --resume DIR)")
        else:
            r = load_recipe(recipe, reg, set_ or [])
            out = out or Path("runs") / f"{recipe.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
            if world.distributed:
                dist.setup(world, choose_device(r.device, world).type)
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
        trainer = Trainer(r, reg, out, console, recipe_source=str(recipe))
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
        _fail(
            KeyboardInterrupt(
                f"interrupted. Finished epochs are saved in {out}; continue with: "
                f"esx run --resume {out}"
            ),
            130,
        )
    if not world.main:
        return
    console.print(_results_table(metrics))
    for table in _report_tables(metrics.get("aggregator", {})):
        console.print(table)
    console.print(f"run folder: [bold]{out}[/]")


def _results_table(metrics: dict) -> Table:
    table = Table(title="test results")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics["test"].items():
        table.add_row(k, "n/a" if v is None else f"{v:.4f}")
    for k in ("iou", "precision", "recall"):
        if k in metrics.get("explanation", {}):
            table.add_row(f"explanation {k}", f"{metrics['explanation'][k]:.4f}")
    return table


def _cell(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def _report_tables(report: dict) -> list[Table]:
    """Tables of an aggregator's report: each list of records, each dict of dicts."""
    tables = []
    for name, value in report.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            table = Table(title=f"aggregator: {name}")
            for col in value[0]:
                table.add_column(col)
            for row in value:
                table.add_row(*(_cell(row.get(c)) for c in value[0]))
            tables.append(table)
        elif isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
            rows = {
                k: v
                for k, v in value.items()
                if isinstance(v, dict) and all(isinstance(x, int | float) for x in v.values())
            }
            if not rows:
                continue
            cols = list(dict.fromkeys(c for v in rows.values() for c in v))
            table = Table(title=f"aggregator: {name}")
            table.add_column("")
            for c in cols:
                table.add_column(c)
            for k, v in rows.items():
                table.add_row(k, *(_cell(v.get(c)) for c in cols))
            tables.append(table)
        elif isinstance(value, dict) and value:
            table = Table(title=f"aggregator: {name}")
            table.add_column("")
            table.add_column("value")
            for k, v in value.items():
                table.add_row(k, _cell(v))
            tables.append(table)
    return tables


@app.command()
def validate(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Check a recipe (schema, component names, their params) without running it."""
    from esx.plugins import registry
    from esx.recipe import load_recipe

    try:
        load_recipe(recipe, registry(), set_ or [])
    except EsxError as err:
        _fail(err)
    typer.echo(f"{recipe}: ok")


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
) -> None:
    """Run every recipe for every seed; finished runs are skipped, interrupted ones resumed."""
    from esx.plugins import registry
    from esx.sweep import run_sweep

    console = Console(soft_wrap=True)
    try:
        counts = run_sweep(recipes, parse_seeds(seeds), out, registry(), set_ or [], console)
    except EsxError as err:
        _fail(err)
    console.print(f"sweep finished: {counts}; tables: esx report {out}")


@app.command("report")
def report_cmd(
    runs: Annotated[Path, typer.Argument(help="a sweep's folder (or any folder of runs)")],
) -> None:
    """Table 1 and Table 2 (Markdown, CSV) and a plot from a folder of runs."""
    from esx.report import report

    if not runs.is_dir():
        _fail(EsxError(f"no such folder: {runs}"))
    try:
        result = report(runs)
    except EsxError as err:
        _fail(err)
    typer.echo(result["markdown"])
    typer.echo(f"written: {runs / 'report.md'}, table1.csv, table2.csv, table1.png")


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List every component by family, with the plugin package it comes from."""
    from esx.plugins import registry

    data = registry().as_dict()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    console = Console(soft_wrap=True)
    table = Table(title="esx components")
    for col in ("family", "name", "plugin", "package"):
        table.add_column(col)
    for fam, entries in data["components"].items():
        for e in entries:
            table.add_row(fam, e["name"], e["plugin"], e["package"])
    console.print(table)
    for b in data["broken"]:
        console.print(f"[red]broken plugin {b['plugin']} ({b['package']}): {b['error']}[/]")


data_app = typer.Typer(no_args_is_help=True, help="Prepare datasets in esx's folder format.")
prepare_app = typer.Typer(
    no_args_is_help=True,
    help="Raw downloads -> esx's folder format (docs/data_format.md); reruns skip finished cases.",
)
data_app.add_typer(prepare_app, name="prepare")
app.add_typer(data_app, name="data")

RootOpt = Annotated[Path, typer.Option("--root", help="the raw download")]
OutOpt = Annotated[Path, typer.Option("--out", help="the prepared dataset folder")]
CropOpt = Annotated[int, typer.Option(help="side of the square crops, in pixels")]
NegOpt = Annotated[int, typer.Option(help="negative images per nodule (LIDC) or case (MSD)")]
SeedOpt = Annotated[int, typer.Option(help="seed of the noise, the negatives and the split")]
SizesOpt = Annotated[
    str, typer.Option(help="train,val,test images, balanced; 'rest' = all remaining")
]


@prepare_app.command("lidc")
def prepare_lidc(
    root: RootOpt,
    out: OutOpt = Path("data/lidc"),
    crop: CropOpt = 224,
    max_readers: Annotated[int, typer.Option(help="annotation slots per image")] = 4,
    boundary_noise: Annotated[
        int,
        typer.Option(help="passes of the paper's boundary noise on each reader's mask; 0 = none"),
    ] = 2,
    negatives: NegOpt = 1,
    margin: Annotated[int, typer.Option(help="slices between a negative and any mark")] = 2,
    sizes: SizesOpt = "100,2400,2400",
    seed: SeedOpt = 0,
) -> None:
    """LIDC-IDRI (DICOM series + XML reads) -> the paper's 2-D nodule dataset."""
    _prepare(
        "lidc",
        root,
        out,
        sizes,
        crop=crop,
        max_readers=max_readers,
        boundary_noise=boundary_noise,
        negatives=negatives,
        margin=margin,
        seed=seed,
    )


@prepare_app.command("msd-pancreas")
def prepare_msd_pancreas(
    root: RootOpt,
    out: OutOpt = Path("data/pancreas"),
    crop: CropOpt = 224,
    annotators: Annotated[
        str, typer.Option(help="simulated annotators, kind:p_annotate[:strength], comma-separated")
    ] = ("accurate:1,boundary_noisy:0.7:1.5,conservative:0.7,aggressive:0.7"),
    negatives: NegOpt = 1,
    margin: Annotated[int, typer.Option(help="slices between a negative and the tumour")] = 5,
    sizes: SizesOpt = "40,40,rest",
    seed: SeedOpt = 0,
) -> None:
    """MSD Task07_Pancreas (NIfTI) -> tumour vs no-tumour slices with simulated annotators."""
    _prepare(
        "msd-pancreas",
        root,
        out,
        sizes,
        crop=crop,
        annotators=annotators,
        negatives=negatives,
        margin=margin,
        seed=seed,
    )


def _prepare(name: str, root: Path, out: Path, sizes: str, **options: Any) -> None:
    import esx_prepare

    try:
        esx_prepare.prepare(name, root, out, options, sizes, Console(soft_wrap=True))
    except EsxError as err:
        _fail(err)


def main() -> None:
    try:
        app()
    except EsxError as err:  # errors raised outside a command body
        Console(stderr=True).print(f"[bold red]error:[/] {err}")
        sys.exit(2)


if __name__ == "__main__":
    main()
