"""A grid of recipes × seeds, run one after another into one folder.

``OUT/<recipe stem>/seed<k>/`` holds each run. A run with ``metrics.json`` is
skipped; one with ``last.safetensors`` but no ``metrics.json`` (interrupted)
is resumed; anything else starts afresh. Two recipes that differ only in
``label`` and ``group`` (the paper's "Proposed" row sits in both panels of
Table 1) are the same experiment: the second reuses the first's finished run,
made by this sweep or by an earlier one into the same folder (a copy, with
its own recipe.yaml and ``run.same_as`` in metrics.json).
Every recipe is validated before the first run starts, so a typo in the last
recipe fails in seconds, not hours.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from esx.errors import EsxError, RecipeError
from esx.plugins import Registry
from esx.recipe import Recipe, dump_recipe, load_recipe


@dataclass
class Job:
    recipe_path: Path
    seed: int
    folder: Path
    recipe: Recipe


def expand(paths: list[Path]) -> list[Path]:
    """Recipe files, with folders expanded to their ``*.yaml`` files (sorted); a folder's
    files whose name starts with ``_`` are bases other recipes inherit, not experiments."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.glob("*.yaml") if not f.name.startswith("_"))
            if not found:
                raise EsxError(f"no *.yaml recipes in folder {p}")
            out += found
        else:
            out.append(p)
    return out


def plan(
    paths: list[Path], seeds: list[int], out: Path, registry: Registry, overrides: list[str]
) -> list[Job]:
    problems: list[str] = []
    jobs: list[Job] = []
    recipes = expand(paths)
    stems = [p.stem for p in recipes]
    if len(set(stems)) != len(stems):
        raise EsxError(f"two recipes share a file name, their runs would collide: {stems}")
    for path in recipes:
        for seed in seeds:
            try:
                r = load_recipe(path, registry, [*overrides, f"seed={seed}"])
            except RecipeError as exc:
                problems += exc.problems
                break
            jobs.append(Job(path, seed, out / path.stem / f"seed{seed}", r))
    if problems:
        raise RecipeError(problems, "sweep")
    return jobs


def experiment_key(recipe: Recipe) -> str:
    """What a run computes: the resolved recipe (defaults filled in, as a run
    folder's recipe.yaml holds it) without its report labels."""
    data = yaml.safe_load(dump_recipe(recipe))
    data.pop("label", None)
    data.pop("group", None)
    return json.dumps(data, sort_keys=True)


def reuse(source: Path, job: Job) -> None:
    """Copy a finished run for a recipe that differs from its own only in labels."""
    from esx import outputs

    tmp = job.folder.with_name(job.folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    outputs.write_text(tmp / "recipe.yaml", dump_recipe(job.recipe))
    metrics = json.loads((tmp / "metrics.json").read_text())
    metrics["run"]["same_as"] = str(source)
    metrics["run"]["recipe"] = str(job.recipe_path)
    outputs.write_json(tmp / "metrics.json", metrics)
    shutil.rmtree(job.folder, ignore_errors=True)
    tmp.rename(job.folder)


def finished_runs(out: Path, registry: Registry) -> dict[str, Path]:
    """Experiment key → folder of every finished run already under ``out``.

    Lets a later sweep reuse a run that an earlier sweep made for another
    recipe of the same experiment. A run whose saved recipe no longer loads
    (written by an older esx, say) is simply not offered for reuse.
    """
    found: dict[str, Path] = {}
    if not out.is_dir():
        return found
    for metrics in sorted(out.glob("*/seed*/metrics.json")):
        folder = metrics.parent
        try:
            recipe = load_recipe(folder / "recipe.yaml", registry)
        except (RecipeError, EsxError):
            continue
        found.setdefault(experiment_key(recipe), folder)
    return found


def run_sweep(
    paths: list[Path],
    seeds: list[int],
    out: Path,
    registry: Registry,
    overrides: list[str],
    console: Console,
) -> dict[str, int]:
    from esx.trainer import Trainer

    jobs = plan(paths, seeds, out, registry, overrides)
    counts = {"done": 0, "skipped": 0, "resumed": 0, "reused": 0}
    finished = finished_runs(out, registry)
    quiet = Console(quiet=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("sweep", total=len(jobs))
        for job in jobs:
            label = f"{job.recipe_path.stem} seed {job.seed}"
            key = experiment_key(job.recipe)
            same = finished.get(key)
            if not (job.folder / "metrics.json").is_file() and same is not None:
                reuse(same, job)
                counts["reused"] += 1
                progress.console.print(f"reuse {label}: the same experiment as {same}")
                progress.advance(task)
                continue
            finished.setdefault(key, job.folder)
            if (job.folder / "metrics.json").is_file():
                counts["skipped"] += 1
                progress.console.print(f"skip {label}: finished")
                progress.advance(task)
                continue
            resume = (job.folder / "last.safetensors").is_file()
            job.folder.mkdir(parents=True, exist_ok=True)
            progress.update(task, description=f"{'resume' if resume else 'run'} {label}")
            m = Trainer(job.recipe, job.folder, quiet, recipe_source=str(job.recipe_path)).run(
                resume=resume
            )
            counts["resumed" if resume else "done"] += 1
            t = m["test"]
            progress.console.print(
                f"{label}: accuracy {t['accuracy']:.4f} f1 {t['f1']:.4f} "
                f"auc {t['auc'] or float('nan'):.4f}"
            )
            progress.advance(task)
    return counts
