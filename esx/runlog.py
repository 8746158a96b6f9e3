"""What a run tells its user: ``run.log``, the data banners and the progress bars."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
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
        if state == "running":  # who runs it, so that a run whose process died reads so
            info = {"host": socket.gethostname(), "pid": os.getpid(), **info}
        outputs.write_json(folder / "status.json", {"status": state, "time": time.time(), **info})


def read_status(folder: Path) -> str:
    """A run folder's status: ``finished`` (it has metrics.json), else status.json's word,
    with ``running`` read as ``interrupted`` when the process that wrote it, on this
    machine, is gone (killed before it could say so); ``unknown`` without status.json."""
    if (folder / "metrics.json").is_file():
        return "finished"
    try:
        st = json.loads((folder / "status.json").read_text())
    except (OSError, ValueError):
        return "unknown"
    state = str(st.get("status", "unknown"))
    if state == "running" and st.get("host") == socket.gethostname() and "pid" in st:
        try:
            os.kill(int(st["pid"]), 0)
        except (OSError, ValueError):
            return "interrupted"
    return state


def data_not_found(console: Console, reason: str, instead: str) -> None:
    """The moment the recipe's data is found missing, before the fallback is built (which
    can take a while), so the reader knows why that work is done."""
    console.print(
        f"[bold red]DATA NOT FOUND - {escape(reason)}\nBuilding the recipe's data.fallback "
        f"instead: {escape(instead)}[/]"
    )


def banners(
    console: Console, info: DataInfo, fallback: dict[str, str] | None, announced: bool = False
) -> None:
    """Say loudly when the data is not what the recipe asked for, or not real (a missing
    dataset already ``announced`` by :func:`data_not_found` is only logged)."""
    if fallback is not None:
        msg = (
            f"DATA NOT FOUND - {fallback['reason']}\n"
            f"Running on the recipe's data.fallback instead: {info.name}"
            + (" (SYNTHETIC)" if info.synthetic else "")
        )
        if not announced:
            console.print(f"[bold red]{escape(msg)}[/]")
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
    a reader that reads nothing shows nothing); ``dataset`` and ``len`` are the loader's.

    A reader that knows its own total (an aggregator pre-training for N steps, whatever
    the batches) calls :meth:`report` instead, and the bar then counts its steps, with
    their total and an ETA."""

    def __init__(self, loader: Any, progress: Any, label: str) -> None:
        self.loader, self.progress, self.label = loader, progress, label
        self.dataset = loader.dataset
        self.task: Any = None
        self.reported = False

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            if self.task is None:
                self.task = self.progress.add_task(f"{self.label} (batches)", total=None)
            yield batch
            if not self.reported:
                self.progress.advance(self.task)

    def report(self, done: int, total: int, unit: str = "steps") -> None:
        """Show ``done`` of ``total`` ``unit`` in place of the batch count."""
        if self.task is None:
            self.task = self.progress.add_task(f"{self.label} ({unit})", total=total)
        self.reported = True
        self.progress.update(
            self.task, description=f"{self.label} ({unit})", total=total, completed=done
        )

    def close(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None


def write_history(folder: Path, history: list[dict[str, Any]]) -> None:
    """``history.csv``: one row per finished epoch, a column per logged value."""
    keys = list(dict.fromkeys(k for row in history for k in row))
    outputs.write_csv(
        folder / "history.csv", keys, [[row.get(k, "") for k in keys] for row in history]
    )
