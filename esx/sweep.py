"""A grid of recipes × seeds (× any varied recipe key), run into one folder.

``OUT/<recipe stem>/seed<k>/`` holds each run; with ``--vary KEY=VALUES`` the
folder names the varied values too (``seed<k>_data.params.seed=<v>``, the keys sorted),
and the report pairs runs of different rows on that folder name. A run with ``metrics.json`` is
skipped; one with ``last.safetensors`` but no ``metrics.json`` (interrupted)
is resumed; anything else starts afresh. Two recipes that differ only in
``label`` and ``group`` (the paper's "Proposed" row sits in both panels of
Table 1) are the same experiment: the second reuses the first's finished run,
made by this sweep or by an earlier one into the same folder (a copy, with
its own recipe.yaml and ``run.same_as`` in metrics.json; its checkpoints are
hard links where the file system allows, so they take no more disk). A run
that fails because the disk is full stops the sweep from starting the
queued runs, which would fail the same way; they are reported as not
started, and the same command, rerun once there is space, goes on.
Every recipe is validated before the first run starts, so a typo in the last
recipe fails in seconds, not hours.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from esx import checkpoint, executors, outputs
from esx.errors import DiskFullError, EsxError, RecipeError
from esx.launch import train
from esx.outputs import human_size
from esx.plugins import Registry, registry
from esx.recipe import Recipe, dump_recipe, load_recipe, recipe_data
from esx.runlog import read_status
from esx.runtime import reuse_freed_memory


@dataclass
class Job:
    recipe_path: Path
    seed: int
    folder: Path
    recipe: Recipe
    #: the ``--set`` overrides that make this job (varied keys and the seed)
    sets: list[str]


_VALUE = re.compile(r"[A-Za-z0-9._-]+")


def parse_vary(specs: list[str]) -> list[tuple[str, list[str]]]:
    """``["data.params.seed=0-2"]`` -> ``[("data.params.seed", ["0", "1", "2"])]``.

    Values are a comma list; a whole-number range ``a-b`` expands. They name run folders,
    so they keep to letters, digits, ``.``, ``_`` and ``-``."""
    out: list[tuple[str, list[str]]] = []
    for spec in specs:
        key, sep, text = spec.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise EsxError(
                f"--vary {spec!r}: write KEY=VALUES, e.g. --vary data.params.seed=0-2 "
                "or --vary loss.params.lam=0.5,1,2"
            )
        if key == "seed":
            raise EsxError("--vary seed=...: the training seed is varied with --seeds")
        if key in (k for k, _ in out):
            raise EsxError(f"--vary {key} given twice; put all its values in one --vary")
        values: list[str] = []
        for part in (x.strip() for x in text.split(",")):
            m = re.fullmatch(r"(\d+)-(\d+)", part)
            if m and int(m[2]) >= int(m[1]):
                values += [str(v) for v in range(int(m[1]), int(m[2]) + 1)]
            elif part and _VALUE.fullmatch(part):
                values.append(part)
            else:
                raise EsxError(
                    f"--vary {spec!r}: value {part!r} cannot name a run folder; "
                    "use letters, digits, '.', '_' and '-' (a range is written 0-4)"
                )
        out.append((key, list(dict.fromkeys(values))))
    return out


def _name(seed: int, varied: Iterable[tuple[str, str]]) -> str:
    return "".join([f"seed{seed}", *(f"_{k}={v}" for k, v in varied)])


def folder_name(seed: int, varied: list[tuple[str, str]]) -> str:
    """``seed3`` or ``seed3_data.params.seed=1``: the name that pairs runs across rows. The
    varied keys go in sorted order, whatever the order of ``--vary``, so that two sweeps
    that give the same keys in another order pair their runs."""
    return _name(seed, sorted(varied))


def run_folder(row: Path, seed: int, varied: list[tuple[str, str]]) -> Path:
    """The run's folder under ``row``: :func:`folder_name`, or a folder an earlier sweep
    named with the same keys (2 to 5 of them) in the order of its ``--vary`` (kept, so
    that rerunning that sweep skips or resumes its runs instead of starting them again
    under a second name)."""
    folder = row / folder_name(seed, varied)
    if folder.exists() or not 2 <= len(varied) <= 5:
        return folder
    earlier = (row / _name(seed, order) for order in itertools.permutations(varied))
    return next((f for f in earlier if f.is_dir()), folder)


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
    paths: list[Path],
    seeds: list[int],
    out: Path,
    registry: Registry,
    overrides: list[str],
    vary: list[tuple[str, list[str]]] = (),
) -> list[Job]:
    problems: list[str] = []
    jobs: list[Job] = []
    recipes = expand(paths)
    stems = [p.stem for p in recipes]
    if len(set(stems)) != len(stems):
        raise EsxError(f"two recipes share a file name, their runs would collide: {stems}")
    keys = [k for k, _ in vary]
    grid = [list(zip(keys, c, strict=True)) for c in itertools.product(*(v for _, v in vary))]
    for path in recipes:
        for varied, seed in itertools.product(grid, seeds):
            sets = [*(f"{k}={v}" for k, v in varied), f"seed={seed}"]
            try:
                r = load_recipe(path, registry, [*overrides, *sets])
            except RecipeError as exc:  # one report per recipe, not one per grid point
                problems += exc.problems
                break
            jobs.append(Job(path, seed, run_folder(out / path.stem, seed, varied), r, sets))
    if problems:
        raise RecipeError(problems, "sweep")
    return jobs


def experiment_key(recipe: Recipe | dict[str, Any]) -> str:
    """What a run computes: the resolved recipe (defaults filled in), or a finished run's
    recipe.yaml as read (the same data: a run writes its resolved recipe there), without
    its report labels. The recipe given is not changed."""
    data = recipe if isinstance(recipe, dict) else recipe_data(recipe)
    # report labels, not what the run computes
    key = {k: v for k, v in data.items() if k not in ("label", "group", "reference")}
    train = key.get("train")
    if isinstance(train, dict):  # what it keeps, not what it computes
        key["train"] = {k: v for k, v in train.items() if k != "keep_last_checkpoint"}
    return json.dumps(key, sort_keys=True)


def _link_or_copy(src: str, dst: str) -> None:
    """A checkpoint as a hard link (no disk used: esx only ever replaces a checkpoint
    whole, never edits it in place, so the two runs stay independent) where the file
    system allows; every other file, and a checkpoint where links are not possible, a
    copy."""
    if src.endswith(".safetensors"):
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def reuse(source: Path, job: Job) -> None:
    """Copy a finished run for a recipe that differs from its own only in labels."""
    tmp = job.folder.with_name(job.folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, copy_function=_link_or_copy)
    outputs.write_text(tmp / "recipe.yaml", dump_recipe(job.recipe))
    metrics = json.loads((tmp / "metrics.json").read_text())
    metrics["run"]["same_as"] = str(source)
    metrics["run"]["recipe"] = str(job.recipe_path)
    outputs.write_json(tmp / "metrics.json", metrics)
    shutil.rmtree(job.folder, ignore_errors=True)
    tmp.rename(job.folder)


#: libyaml's safe loader where PyYAML was built with it (several times faster), else PyYAML's
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def finished_runs(out: Path) -> dict[str, Path]:
    """Experiment key → folder of every finished run already under ``out``.

    Lets a later sweep reuse a run that an earlier sweep made for another recipe of the
    same experiment. The key is read from the run's recipe.yaml as written, not loaded
    again (a run written by an older esx, whose defaults differed, matches no recipe of
    this one's, so it is not offered for reuse; nor is one whose recipe.yaml does not
    read).
    """
    found: dict[str, Path] = {}
    if not out.is_dir():
        return found
    for metrics in sorted(out.glob("*/seed*/metrics.json")):
        folder = metrics.parent
        try:
            data = yaml.load((folder / "recipe.yaml").read_text(encoding="utf-8"), _LOADER)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(data, dict):
            found.setdefault(experiment_key(data), folder)
    return found


def job_slots(jobs: str | int) -> tuple[int, int]:
    """``--jobs`` as (runs at once, threads per run): ``auto`` gives every core its own run on
    a CPU (one thread each) and four runs sharing a GPU; N splits the cores among N runs.
    The cores are those this process may run on (its CPU affinity: ``taskset``, a SLURM
    allocation), not every core of the machine."""
    cores = executors.usable_cores()
    if str(jobs) == "auto":
        n = min(4, cores) if torch.cuda.is_available() else cores
    else:
        try:
            n = int(jobs)
        except ValueError:
            n = 0
        if n < 1:
            raise EsxError(
                f"--jobs {jobs!r}: give a whole number of runs at once (1 or more) or 'auto'"
            )
    return n, max(1, cores // n)


def _interrupted(folder: Path) -> bool:
    """Whether the run in ``folder`` stopped after a finished epoch, so that it resumes."""
    return (folder / checkpoint.LAST).is_file()


def _task(job: Job, overrides: list[str], where: executors.Where | None = None) -> executors.Job:
    """The job as an executor runs it: its ``esx run`` (a resume when it was interrupted),
    with absolute paths when it runs on a cluster node, whose working folder may differ."""
    resume = _interrupted(job.folder)
    folder, recipe = job.folder, job.recipe_path
    if where is not None and where.executor != "local":
        folder, recipe = folder.resolve(), recipe.resolve()
    cmd = executors.command(folder, recipe, [*overrides, *job.sets], resume)
    return executors.Job(folder=folder, command=cmd, ref=job)


def _run_here(job: Job) -> str | None:
    """Run or resume one job in this process under its claim; None when it finished,
    :data:`executors.ELSEWHERE` when another sweep holds it or has finished it, else the
    error."""
    if not executors.claim(job.folder, executors.ExecutorOptions()):
        return executors.ELSEWHERE
    resume = _interrupted(job.folder)
    try:
        train(job.recipe, job.folder, Console(quiet=True), str(job.recipe_path), resume=resume)
    except Exception as exc:  # the others go on; the error is reported at the end
        return f"{type(exc).__name__}: {exc}"
    finally:
        executors.release(job.folder)
    return None


#: the error of a queued run that was not started because the disk had filled up
NOT_STARTED = "not started: an earlier run found the disk full"


def _disk_full(error: str | None) -> bool:
    return error is not None and DiskFullError.PREFIX in error


def _results(
    todo: list[Job],
    overrides: list[str],
    slots: int,
    threads: int,
    where: executors.Where,
    out: Path,
) -> Iterator[tuple[Job, str | None]]:
    """(job, error or None) as each job ends: in this process one by one, or ``slots``
    ``esx run`` processes at once, or on a cluster. Once a run fails on a full disk no
    queued run starts; each is yielded with :data:`NOT_STARTED`."""
    tasks = [_task(job, overrides, where) for job in todo]
    if where.executor == "slurm":
        logs = out / ".slurm"
        found = executors.slurm(tasks, where.options.cpus, where.options, logs, _disk_full)
    elif where.executor == "ray":
        found = executors.ray_tasks(tasks, where.options.cpus, where.options, _disk_full)
    elif slots == 1:
        found = _one_by_one(todo)
    else:
        found = executors.local_pool(tasks, threads, slots, _disk_full)
    for job, error in found:
        yield job, NOT_STARTED if error == executors.STOPPED else error


def _one_by_one(todo: list[Job]) -> Iterator[tuple[Job, str | None]]:
    full = False
    for job in todo:
        error = NOT_STARTED if full else _run_here(job)
        full = full or _disk_full(error)
        yield job, error


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def disk_warning(pending: int, finished: list[Path], out: Path) -> str | None:
    """A warning when ``pending`` runs, each as large as the median finished run under
    ``out``, would not fit in the free space of its disk (no estimate without a finished
    run); None when they fit."""
    done = [f for f in finished if (f / "metrics.json").is_file()]
    if not pending or not done:
        return None
    sizes = sorted(_size(f) for f in done)
    per_run = sizes[len(sizes) // 2]
    probe = out if out.is_dir() else out.parent
    while not probe.is_dir():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if pending * per_run <= free:
        return None
    return (
        f"the {pending} runs to do will write about {human_size(pending * per_run)} "
        f"({human_size(per_run)} each, the median finished run under {out}) and the disk "
        f"has {human_size(free)} free; a run that finds it full stops the sweep. Free "
        "space, or leave train.keep_last_checkpoint false (last.safetensors only resumes "
        "an unfinished run)"
    )


@dataclass
class Outcome:
    counts: dict[str, int]
    #: (run folder, error) of every run that failed
    failed: list[tuple[Path, str]]


@dataclass
class Plan:
    """``esx sweep``'s arguments as given on the command line."""

    recipes: list[Path]
    seeds: list[str]
    out: Path
    sets: list[str]
    jobs: str = "1"
    vary: list[str] = field(default_factory=list)
    executor: str = "local"
    dry_run: bool = False


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


def command(plan: Plan, executor_config: Path | None, flags: dict, console: Console) -> bool:
    """``esx sweep``: run the plan and print how it went; False when a run failed."""
    reuse_freed_memory()  # for the runs of --jobs 1, in this process
    where = executors.where_from(plan.executor, executor_config, flags)
    try:
        result = run_sweep(
            plan.recipes,
            parse_seeds(plan.seeds),
            plan.out,
            registry(),
            plan.sets,
            console,
            plan.jobs,
            parse_vary(plan.vary),
            where,
            plan.dry_run,
        )
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            "sweep interrupted; finished runs are kept and interrupted ones resume "
            "from their last epoch: run the same command again"
        ) from None
    if plan.dry_run:
        console.print(f"dry run, nothing started: {result.counts}")
        return True
    console.print(f"sweep finished: {result.counts}; tables: esx report {plan.out}")
    for folder, error in result.failed:
        console.print(f"[bold red]failed:[/] {escape(f'{folder}: {error}')}", highlight=False)
    return not result.failed


@dataclass
class Tally:
    """A sweep's running account: counts, failures, queued runs, and its progress bar."""

    progress: Progress
    task: Any
    counts: dict[str, int] = field(
        default_factory=lambda: {"done": 0, "skipped": 0, "resumed": 0, "reused": 0, "failed": 0}
    )
    failed: list[tuple[Path, str]] = field(default_factory=list)
    queued: list[Path] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.progress.console.print(line, highlight=False)

    def fail(self, folder: Path, error: str) -> None:
        self.failed.append((folder, error))


def _sort(planned: list[Job], finished: dict[str, Path]) -> tuple[list, list, list[str]]:
    """The jobs to run, the twins of other jobs (to copy), and the lines for skipped ones."""
    todo: list[Job] = []
    twins: list[tuple[Job, str]] = []
    skipped: list[str] = []
    for job in planned:
        key = experiment_key(job.recipe)
        if (job.folder / "metrics.json").is_file():
            # A claim left in a finished run is stale: its worker was killed between the
            # run's end and the claim's removal (a cluster's worker dies with its sweep).
            (job.folder / executors.CLAIM).unlink(missing_ok=True)
            finished.setdefault(key, job.folder)
            skipped.append(f"skip {job.recipe_path.stem} {job.folder.name}: finished")
        elif key in finished:
            twins.append((job, key))
        else:
            finished[key] = job.folder
            todo.append(job)
    return todo, twins, skipped


def _dry_run(console: Console, todo: list[Job], elsewhere: list[Job], ctx: dict) -> None:
    where, threads = ctx["where"], ctx["threads"]
    tasks = [_task(job, ctx["overrides"], where) for job in todo]
    if where.executor != "local":
        threads = where.options.cpus
    console.print(
        executors.describe(where.executor, tasks, threads, where.options, ctx["out"] / ".slurm")
    )
    for job in elsewhere:
        console.print(f"wait for {job.folder}: another sweep's run is doing it")


def _run_todo(t: Tally, todo: list[Job], ctx: dict) -> list[Job]:
    """Run ``todo``; the jobs that another sweep took before this one came to them."""
    taken: list[Job] = []
    started = {job.folder: _interrupted(job.folder) for job in todo}
    for job in todo:
        if started[job.folder]:
            t.say(
                f"resume {job.recipe_path.stem} {job.folder.name}: "
                f"{read_status(job.folder)} after its last finished epoch"
            )
    args = (ctx["overrides"], ctx["slots"], ctx["threads"], ctx["where"], ctx["out"])
    for job, error in _results(todo, *args):
        label = f"{job.recipe_path.stem} {job.folder.name}"
        if error is None:
            t.counts["resumed" if started[job.folder] else "done"] += 1
            m = json.loads((job.folder / "metrics.json").read_text())["test"]
            t.say(
                f"{label}: accuracy {m['accuracy']:.4f} f1 {m['f1']:.4f} "
                f"auc {m['auc'] or float('nan'):.4f}"
            )
        elif error == NOT_STARTED:
            t.queued.append(job.folder)
        elif error == executors.ELSEWHERE:
            taken.append(job)  # waited for at the end, and counted then
            t.say(f"{label}: another sweep took it; waited for at the end")
            continue
        else:
            t.fail(job.folder, error)
            t.say(f"[red]{label} failed[/] (reported at the end)")
        t.progress.advance(t.task)
    return taken


def _wait_elsewhere(t: Tally, elsewhere: list[Job], options: Any, submitted: Any) -> None:
    if not elsewhere:
        return
    # those another sweep has finished by now are counted at once, not waited for
    running = [j for j in elsewhere if not (j.folder / "metrics.json").is_file()]
    if running:
        t.say(
            f"waiting for {len(running)} run(s) that another sweep's process or job is "
            "still doing (not started twice)"
        )
    executors.wait_for([j.folder for j in elsewhere], options, submitted)
    for job in elsewhere:
        if (job.folder / "metrics.json").is_file():
            t.counts["done"] += 1
            t.say(f"{job.recipe_path.stem} {job.folder.name}: finished")
        else:
            t.fail(job.folder, "its process or job ended unfinished; rerun the sweep to resume it")
        t.progress.advance(t.task)


def _copy_twins(t: Tally, twins: list[tuple[Job, str]], finished: dict[str, Path]) -> None:
    for job, key in twins:
        source = finished[key]
        if (source / "metrics.json").is_file():
            reuse(source, job)
            t.counts["reused"] += 1
            t.say(
                f"reuse {job.recipe_path.stem} {job.folder.name}: the same experiment as {source}"
            )
        else:
            t.fail(job.folder, f"the same experiment as {source}, which failed")
        t.progress.advance(t.task)


def run_sweep(
    paths: list[Path],
    seeds: list[int],
    out: Path,
    registry: Registry,
    overrides: list[str],
    console: Console,
    jobs: str | int = 1,
    vary: list[tuple[str, list[str]]] = (),
    where: executors.Where | None = None,
    dry_run: bool = False,
) -> Outcome:
    """Run every pending job, ``jobs`` at once (``esx run`` processes when more than one)
    or on the cluster ``where`` names; finished runs are skipped, interrupted ones resumed,
    runs another sweep's live process or job is doing waited for, identical experiments
    run once and copied, and a failed run is reported at the end while the others go on.
    With ``dry_run``, print what would start and where, and start nothing."""
    where = where or executors.Where()
    planned = plan(paths, seeds, out, registry, overrides, vary)
    slots, threads = job_slots(jobs)
    ctx = {"where": where, "threads": threads, "slots": slots, "overrides": overrides, "out": out}
    # the finished runs are read only where a planned run is not finished (a twin of it
    # may be): a rerun of a finished sweep plans and skips, reading nothing more
    pending = any(not (job.folder / "metrics.json").is_file() for job in planned)
    finished = finished_runs(out) if pending else {}
    todo, twins, skipped = _sort(planned, finished)
    submitted = executors.submitted_jobs(out / ".slurm")
    elsewhere = [j for j in todo if executors.running_elsewhere(j.folder, where.options, submitted)]
    todo = [j for j in todo if j not in elsewhere]
    if dry_run:
        _dry_run(console, todo, elsewhere, ctx)
        counts = {"done": 0, "skipped": len(skipped), "resumed": 0, "reused": 0, "failed": 0}
        return Outcome(counts | {"to start": len(todo), "running elsewhere": len(elsewhere)}, [])
    warning = disk_warning(len(todo), list(finished.values()), out)
    if warning:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        name = (
            f"sweep, {slots} at once" if where.executor == "local" else f"sweep, {where.executor}"
        )
        t = Tally(progress, progress.add_task(name, total=len(planned), completed=len(skipped)))
        t.counts["skipped"] = len(skipped)
        for line in skipped:
            t.say(line)
        taken = _run_todo(t, todo, ctx)
        _wait_elsewhere(t, elsewhere + taken, where.options, submitted)
        _copy_twins(t, twins, finished)
    t.counts["failed"] = len(t.failed)
    if t.queued:
        t.counts["not started"] = len(t.queued)
        n = f"{len(t.queued)} queued run{'s' if len(t.queued) != 1 else ''}"
        t.fail(
            out,
            f"{n} not started: the disk is full (the failure above says where); "
            "free space and run the same command again",
        )
    return Outcome(t.counts, t.failed)
