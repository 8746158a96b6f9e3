"""What a run tells its user: ``run.log``, the data banners and the progress bars."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from esx import outputs
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


def status(folder: Path, world: Any, state: str, **info: Any) -> None:
    """``status.json``: running, finished, failed or interrupted (the main process writes).

    A run folder without ``metrics.json`` is unfinished whatever else it holds;
    this file says why, for people and for ``esx sweep``.
    """
    if world.main and folder.is_dir():
        outputs.write_json(folder / "status.json", {"status": state, "time": time.time(), **info})


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
        real = info.details.get("annotations")
        if real:  # real annotations drawn on generated images
            console.print(
                f"[bold yellow]Training on SYNTHETIC images ({info.name}), not real scans; "
                f"the annotations are real: {real}.[/]"
            )
        else:
            console.print(
                f"[bold yellow]Training on SYNTHETIC data ({info.name}), not real scans.[/]"
            )


def epoch_line(
    console: Console,
    row: dict[str, Any],
    epochs: int,
    metric: str,
    loop: dict[str, Any],
    seconds: float,
) -> None:
    """One line per epoch: the training loss terms, the validation metric with the best
    epoch so far, and the epoch's time (silent under ``--quiet``)."""
    losses = " ".join(f"{k[6:]} {v:.4f}" for k, v in row.items() if k.startswith("train_"))
    console.print(
        f"epoch {row['epoch']}/{epochs}  loss {losses} | val {metric} {row['val_' + metric]:.4f} "
        f"(best {loop['best']:.4f} at epoch {loop['best_epoch']}) | {seconds:.1f} s",
        highlight=False,
    )


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


class Counted:
    """A loader whose batches advance a progress bar (shown from the first batch read, so
    a reader that reads nothing shows nothing); ``dataset`` and ``len`` are the loader's."""

    def __init__(self, loader: Any, progress: Any, label: str) -> None:
        self.loader, self.progress, self.label = loader, progress, label
        self.dataset = loader.dataset
        self.task: Any = None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            if self.task is None:
                self.task = self.progress.add_task(f"{self.label} (batches)", total=None)
            yield batch
            self.progress.advance(self.task)

    def close(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
