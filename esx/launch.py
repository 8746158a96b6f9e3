"""One run from the command line, start to end: the processes and the runtime set up once,
the run folder's lifecycle (created, refused when in use, removed again when the run never
started), the trainer, and the run's page written when it has finished.

``esx run`` and an in-process sweep run call :func:`train`; the CLI only parses.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import track

from esx import __version__, checkpoint, outputs
from esx import distributed as dist
from esx.errors import EsxError
from esx.outputs import prepare_run_dir
from esx.plugins import Registry, registry
from esx.recipe import SLOTS, Recipe, load_recipe
from esx.reporting.html import write_run_page
from esx.runtime import Runtime, reuse_freed_memory
from esx.trainer import Trainer

log = logging.getLogger("esx")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run, with what was kept and how to go on."""


@dataclass
class Launch:
    """What ``esx run`` was asked to do, resolved: the recipe, the run folder and whether
    this command created it (and may remove it again if the run never starts)."""

    recipe: Recipe
    source: Path
    out: Path
    resume: bool
    created: bool = False


def clash_notes(console: Console, recipe: Recipe, reg: Registry) -> None:
    """Say, once per component, which registration of a clashing name the recipe uses."""
    seen = set()
    for loc, spec in recipe.slots().items():
        key = (SLOTS[loc], spec.name)
        note = reg.clash_note(*key)
        if note and key not in seen:
            seen.add(key)
            console.print(f"[yellow]note: {note}[/]", highlight=False)


def _resolve(
    recipe: Path | None, out: Path | None, sets: list[str], resume: Path | None, reg: Registry
) -> Launch:
    if resume is not None:
        if recipe is not None or out is not None:
            raise EsxError("--resume takes the run folder only: its recipe.yaml is reused")
        source = resume / "recipe.yaml"
        r = load_recipe(source, reg, checkpoint.resume_overrides(sets))
        return Launch(r, source, resume, resume=True)
    if recipe is None:
        raise EsxError("give a recipe (esx run RECIPE) or a run folder (esx run --resume DIR)")
    r = load_recipe(recipe, reg, sets)
    out = out or Path("runs") / f"{recipe.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Launch(r, recipe, out, resume=False)


def _claim(launch: Launch, world: Any, overwrite: bool) -> None:
    """Create (or, with ``overwrite``, reuse) the run folder on the main process; every
    process stops, or none."""
    launch.out = dist.broadcast(launch.out, world)
    launch.created = not launch.out.exists()
    problem = None
    if world.main:
        try:
            prepare_run_dir(launch.out, overwrite)
        except EsxError as err:
            problem = str(err)
    problem = dist.broadcast(problem, world)
    if problem:
        raise EsxError(problem)


def train(
    recipe: Recipe,
    out: Path,
    console: Console,
    source: str = "",
    runtime: Runtime | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train and evaluate ``recipe`` into ``out``; the main process writes its report.html."""
    trainer = Trainer(recipe, out, console, recipe_source=source, runtime=runtime)
    metrics = trainer.run(resume=resume)
    if trainer.rt.world.main:
        write_run_page(out)
    return metrics


def run(
    recipe: Path | None,
    out: Path | None,
    sets: list[str],
    overwrite: bool,
    resume: Path | None,
    console: Console,
    world: Any,
) -> tuple[dict[str, Any] | None, Path | None]:
    """``esx run``: the metrics and the run folder (None, None for a finished run given to
    ``--resume``, which is left as it is)."""
    reuse_freed_memory()  # the command owns its process; a library call does not
    if resume is not None and (resume / "metrics.json").is_file():
        console.print(checkpoint.finished_note(resume))
        return None, None
    launch: Launch | None = None
    try:
        reg = registry()
        launch = _resolve(recipe, out, sets, resume, reg)
        r = launch.recipe
        rt = Runtime.setup(r.device, r.train.precision, r.train.channels_last)
        if not launch.resume:
            _claim(launch, world, overwrite)
        clash_notes(console, r, reg)
        return train(r, launch.out, console, str(launch.source), rt, launch.resume), launch.out
    except EsxError:
        if launch is not None and launch.created and _empty_dir(launch.out):
            launch.out.rmdir()  # leave nothing behind for a run that never started
        raise
    except KeyboardInterrupt as exc:
        raise _interrupted(launch) from exc


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _interrupted(launch: Launch | None) -> Interrupted:
    if launch is not None and (launch.out / "recipe.yaml").is_file():
        log.warning("interrupted; resume with: esx run --resume %s", launch.out)
        return Interrupted(
            f"interrupted. Finished epochs are kept in {launch.out}; continue "
            f"with: esx run --resume {launch.out}"
        )
    return Interrupted(
        "interrupted before training started; nothing was written, so run the same command again"
    )


def validate(recipe: Path, sets: list[str], console: Console) -> Recipe:
    """``esx validate``: load the recipe (every error named) and say which registration of
    a clashing component name it uses."""
    reg = registry()
    r = load_recipe(recipe, reg, sets)
    clash_notes(console, r, reg)
    return r


def remeasure_all(paths: list[Path], console: Console) -> bool:
    """``esx evaluate``: re-measure every finished run under ``paths``; False when one
    could not be (each is named with its reason)."""
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
        raise EsxError(f"no finished runs (metrics.json) under {', '.join(map(str, paths))}")
    failed = 0
    for folder in track(folders, description="re-measuring", console=console):
        try:
            m = remeasure(folder)["explanation"]
        except EsxError as err:
            failed += 1
            console.print(f"[red]{folder}[/]: {escape(str(err))}", highlight=False)
            continue
        console.print(
            f"{folder}: EPG {m.get('epg', float('nan')):.4f} pointing "
            f"{m.get('pointing', float('nan')):.4f} PR-AUC {m.get('pr_auc', float('nan')):.4f}",
            highlight=False,
        )
    return failed == 0


def remeasure(folder: Path) -> dict[str, Any]:
    """``esx evaluate`` of one finished run: its explanations measured again from its chosen
    checkpoint with this esx's metrics, its metrics.json and report.html rewritten.

    The test predictions are made again on the way; when they differ from the recorded
    ones, the folder's data or weights are not what the run used, and nothing is written.
    """
    path = folder / "metrics.json"
    if not path.is_file() or not (folder / "best.safetensors").is_file():
        raise EsxError(f"{folder} is not a finished run (no metrics.json or best.safetensors)")
    recipe = load_recipe(folder / "recipe.yaml", registry())
    metrics = json.loads(path.read_text())
    test = Trainer(recipe, folder).test_chosen(None)
    recorded, now = metrics["test"].get("accuracy"), test["metrics"]["accuracy"]
    if recorded is None or abs(recorded - now) > 1e-9:
        raise EsxError(
            f"{folder}: test accuracy now {now:.6f}, recorded {recorded}; the folder's data "
            "or weights differ from the run's, so its explanations are not re-measured"
        )
    metrics["explanation"] = test.get("explanation", {})
    metrics.pop("explanations", None)
    if len(test.get("explanations", {})) > 1:
        metrics["explanations"] = test["explanations"]
    metrics["run"]["explanation_measured_by"] = f"esx {__version__} (esx evaluate)"
    outputs.write_json(path, metrics)
    write_run_page(folder)
    return metrics
