"""What a run tells its user: ``run.log``, the data banners and the progress bars."""

from __future__ import annotations

import logging
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from esx.interfaces import DataInfo

log = logging.getLogger("esx")


def start_log(folder: Path, append: bool = False) -> None:
    """Send the ``esx`` logger to ``folder/run.log`` (appending on resume)."""
    handler = logging.FileHandler(folder / "run.log", mode="a" if append else "w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    for h in list(log.handlers):
        if isinstance(h, logging.FileHandler):
            log.removeHandler(h)
            h.close()
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def banners(console: Console, info: DataInfo, fallback: dict[str, str] | None) -> None:
    """Say loudly when the data is not what the recipe asked for, or not real."""
    if fallback is not None:
        msg = (
            f"DATA NOT FOUND - {fallback['reason']}\n"
            f"Running on the recipe's data.fallback instead: {info.name}"
            + (" (SYNTHETIC)" if info.synthetic else "")
        )
        console.print(f"[bold red]{msg}[/]")
        log.warning(msg.replace("\n", " "))
    if info.synthetic:
        console.print(f"[bold yellow]Training on SYNTHETIC data ({info.name}), not real scans.[/]")


def progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:>12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
