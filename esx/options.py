"""The command line's arguments and options, one annotated type each, shared by the
commands of :mod:`esx.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def opt(help: str, *names: str) -> Any:
    return typer.Option(*names, help=help)


RecipeArg = Annotated[Path, typer.Argument(help="recipe YAML file")]  # required
SetOpt = Annotated[
    list[str] | None, opt("override a recipe key, e.g. --set train.epochs=3 (repeatable)", "--set")
]
OutOpt = Annotated[Path | None, opt("run folder (default: runs/<recipe>-<time>)")]
ResumeOpt = Annotated[Path | None, opt("continue an interrupted run from its folder")]
SeedsOpt = Annotated[
    list[str], opt("seeds: a list or a range, e.g. --seeds 0,1,2 or --seeds 0-4 (repeatable)")
]
JobsOpt = Annotated[
    str,
    opt(
        "runs at once, each its own process with the cores split among them (those this "
        "process may use: taskset, a SLURM allocation); 'auto': one per core (CPU) or four "
        "sharing the GPU"
    ),
]
VaryOpt = Annotated[
    list[str] | None,
    opt(
        "also vary a recipe key, e.g. --vary data.params.seed=0-2 (repeatable; the grid is "
        "every combination, and the report pairs runs on it)"
    ),
]
ExecutorOpt = Annotated[
    str,
    opt(
        "where runs go: local (this machine), slurm (a job array through submitit; pip "
        'install "esx[slurm]") or ray (Ray tasks; pip install "esx[ray]")'
    ),
]
ExecutorConfigOpt = Annotated[
    Path | None, opt("YAML of executor options (partition, time, cpus, gpus, ...)")
]
PartitionOpt = Annotated[str | None, opt("SLURM partition")]
AccountOpt = Annotated[str | None, opt("SLURM account")]
TimeOpt = Annotated[int | None, opt("minutes each run may take (SLURM)", "--time")]
CpusOpt = Annotated[int | None, opt("CPU cores per run (slurm, ray)")]
GpusOpt = Annotated[float | None, opt("GPUs per run (slurm, ray)")]
MemOpt = Annotated[float | None, opt("GB per run (slurm)", "--mem")]
RayOpt = Annotated[str | None, opt("Ray cluster address (default RAY_ADDRESS, else local)")]
DryOpt = Annotated[bool, opt("print what would start and where; start nothing")]
ReferenceOpt = Annotated[
    list[str] | None,
    opt(
        "compare every row with this one, by label (repeatable; default: the rows whose "
        "recipe says reference: true)"
    ),
]
MetricsOpt = Annotated[
    str,
    opt(
        "the metrics compared pairwise, comma-separated: test metrics (accuracy, auc, "
        "precision, recall, f1) or explanation metrics (epg, epg_ratio, pointing, pr_auc, "
        "iou, ...)"
    ),
]
HtmlOpt = Annotated[
    bool,
    opt(
        "also write report.html: one self-contained page with the tables, intervals, "
        "per-run plots and the figures of the runs --show picks",
        "--html",
    ),
]
ShowOpt = Annotated[
    list[str] | None,
    opt(
        "runs whose overlays and component figures the HTML page shows, as globs under the "
        "folder, e.g. --show 'a_magi/seed0*' (repeatable; default: each row's first run)"
    ),
]
CurveOpt = Annotated[
    str | None,
    opt(
        "also draw each row against a recipe key the sweep varied, e.g. --curve "
        "data.params.level: curve.png, curve.csv and the share of the ceiling's gain kept"
    ),
]
FloorOpt = Annotated[str | None, opt("the curve's floor row, by label (with --curve)")]
CeilingOpt = Annotated[str | None, opt("the curve's ceiling row, by label (with --curve)")]
VersusOpt = Annotated[
    str | None, opt("a row every other is compared with at each value, paired (with --curve)")
]
