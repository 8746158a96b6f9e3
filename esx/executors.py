"""Where a sweep's runs execute: this machine, a SLURM cluster (submitit) or a Ray cluster.

The sweep (:mod:`esx.sweep`) plans, skips finished runs, resumes interrupted ones,
reuses twins, stops on a full disk and summarises failures the same way for every
executor; an executor only starts each job and says how it ended, as ``(job, error
or None)`` pairs in the order jobs end:

- ``local`` (the default): the sweep's own pool, in this process for ``--jobs 1``,
  else one ``esx run`` process per job, ``--jobs`` at once.
- ``slurm``: one SLURM job array per sweep through submitit (``pip install
  "esx[slurm]"``); each array task runs the job's ``esx run`` on its node.
- ``ray``: one Ray task per job, with its CPU and GPU request, on the cluster at
  ``--ray-address`` (or ``RAY_ADDRESS``), else on a Ray instance started here
  (``pip install "esx[ray]"``).

Every job runs the same command (:func:`command`) through :func:`run_task`, which
first checks that the machine has the esx version that planned the sweep. Just before
a run starts, its sweep takes a *claim* in the run folder (host, process, job id;
:func:`claim`), created only if there is none, and it names the run's process while
it runs; the SLURM executor also records the job id of every run it submitted. A
sweep asks whether a claimed run's process or SLURM job is still alive
(:func:`running_elsewhere`) when it plans and again when it comes to start the run;
if so it waits for it instead of starting it twice, so two sweeps into one folder
share its runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from esx import __version__
from esx.errors import EsxError

EXECUTORS = ("local", "slurm", "ray")
#: the claim a job leaves in its run folder while it runs
CLAIM = ".esx-claim.json"
#: SLURM states in which a job may still write its run folder
SLURM_ALIVE = {"PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "CONFIGURING"}
#: seconds between two looks at runs that another sweep's job is still doing
POLL = 5.0


class ExecutorOptions(BaseModel):
    """What a cluster executor asks for each run; from ``--executor-config FILE`` (YAML)
    and the flags, the flags winning."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = Field(None, description="SLURM partition")
    account: str | None = Field(None, description="SLURM account to charge")
    time: int = Field(240, ge=1, description="minutes each run may take (SLURM's time limit)")
    cpus: int = Field(1, ge=1, description="CPU cores per run (also its torch threads)")
    gpus: float = Field(0, ge=0, description="GPUs per run (Ray may share one: 0.25)")
    mem_gb: float | None = Field(None, gt=0, description="memory per run, GB")
    array_parallelism: int = Field(256, ge=1, description="SLURM array tasks at once")
    slurm: dict[str, Any] = Field(
        default_factory=dict,
        description="any other submitit SLURM parameter without its slurm_ prefix, e.g. "
        "{constraint: a100, qos: high}",
    )
    cluster: Literal["slurm", "local"] = Field(
        "slurm",
        description="slurm; or local: submitit's local executor, the same pickling and "
        "process path on this machine (for testing a sweep before a cluster sees it)",
    )
    ray_address: str | None = Field(
        None, description="Ray cluster address; default RAY_ADDRESS, else a local instance"
    )


def load_options(config: Path | None, flags: dict[str, Any]) -> ExecutorOptions:
    """The executor options from ``config`` (a YAML mapping) overridden by the flags that
    were given (None: not given); one error naming the file and the key otherwise."""
    raw: dict[str, Any] = {}
    where = "the --executor flags"
    if config is not None:
        where = str(config)
        try:
            raw = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise EsxError(f"--executor-config {config}: no such file") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise EsxError(f"--executor-config {config}: not YAML ({exc})") from None
        if not isinstance(raw, dict):
            raise EsxError(f"--executor-config {config}: must be a mapping of option: value")
    raw |= {k: v for k, v in flags.items() if v is not None}
    try:
        return ExecutorOptions.model_validate(raw)
    except ValidationError as exc:
        e = exc.errors()[0]
        key = ".".join(str(p) for p in e["loc"])
        known = ", ".join(ExecutorOptions.model_fields)
        raise EsxError(f"{where}: {key}: {e['msg']} (the options: {known})") from None


def command(folder: Path, recipe: Path, sets: list[str], resume: bool) -> list[str]:
    """The ``esx run`` that does one job, in its own process."""
    if resume:
        return [sys.executable, "-m", "esx", "run", "--resume", str(folder), "--quiet"]
    flags = [x for s in sets for x in ("--set", s)]
    return [sys.executable, "-m", "esx", "run", str(recipe), "--out", str(folder)] + [
        "--overwrite",
        "--quiet",
        *flags,
    ]


def _die_with_parent() -> None:
    """In a child of the sweep (Linux): be sent SIGTERM when the sweep dies, even by
    SIGKILL, so a killed sweep leaves no run behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS reports one
    (``taskset``, a SLURM allocation), else every core of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def run_command(
    cmd: list[str],
    threads: int,
    folder: Path,
    job_id: str = "",
    options: ExecutorOptions | None = None,
) -> str | None:
    """Run one ``esx run`` process with ``threads`` torch threads, its claim in ``folder``
    while it runs (:func:`claim`, then naming the process); None when it finished,
    :data:`ELSEWHERE` when another sweep holds the run or has finished it, else the end
    of its error output."""
    if not claim(folder, options or ExecutorOptions(), job_id):
        return ELSEWHERE
    # checkpoint.LAST, spelled out: this module stays free of torch (a cluster worker
    # imports it to wrap each run's process; tests/test_executors.py pins it)
    if "--resume" not in cmd and (folder / "last.safetensors").is_file():
        # planned fresh, but another sweep's run got this far before it was stopped
        cmd = command(folder, Path(), [], resume=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    try:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        _write_claim(folder, proc.pid, job_id)  # the run's own process holds it now
        try:
            _, stderr = proc.communicate()
        except BaseException:
            proc.terminate()  # the run stops resumable; the sweep's rerun resumes it
            proc.wait()
            raise
    finally:
        release(folder)
    if proc.returncode == 0:
        return None
    tail = [line for line in stderr.strip().splitlines() if line.strip()][-6:]
    return " ".join(" ".join(tail).split()) or f"exit status {proc.returncode}"


#: the result of a job that another sweep's live process or job holds, or has finished,
#: when this sweep comes to start it: not started here; the sweep waits for it instead
ELSEWHERE = "not started: another sweep's process or job took this run"


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (Linux: field 22 of /proc/PID/stat), which tells it
    from a later process given the same pid; None where the OS does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _write_claim(folder: Path, pid: int, job_id: str, exclusive: bool = False) -> None:
    """Write the claim naming process ``pid`` whole, never half (a reader sees the old
    file or the new one); ``exclusive``: only if there is none, else FileExistsError."""
    record = {
        "host": socket.gethostname(),
        "pid": pid,
        "started": _start_time(pid),
        "job": job_id,
        "time": time.time(),
    }
    tmp = folder / f"{CLAIM}.{socket.gethostname()}.{os.getpid()}.{threading.get_ident()}"
    tmp.write_text(json.dumps(record))
    try:
        if exclusive:
            _place(tmp, folder / CLAIM)
        else:
            os.replace(tmp, folder / CLAIM)
    finally:
        tmp.unlink(missing_ok=True)


def _place(src: Path, dst: Path) -> None:
    """Put ``src``'s content at ``dst`` only if nothing is there, else FileExistsError: a
    hard link (atomic, NFS too), or where the file system has none, an exclusive create
    then a write."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise  # not the OSError below: the claim exists
    except OSError:
        with os.fdopen(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "w") as f:
            f.write(src.read_text())


def claim(folder: Path, options: ExecutorOptions, job_id: str = "") -> bool:
    """Take the run in ``folder`` for this process just before it starts: write the claim
    (host, process, its start time, the SLURM job) unless another sweep's live process or
    job holds one, and give it back if the run has finished meanwhile. True when this
    process may run it; :func:`release` when it ends. Of two sweeps that come to the same
    run at once, one takes it and the other waits for it."""
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            _write_claim(folder, os.getpid(), job_id, exclusive=True)
            break
        except FileExistsError:
            held = _held(folder)
            # a claim of this very job is its earlier attempt's (a requeued SLURM task)
            mine = bool(job_id) and (held or {}).get("job") == job_id
            if not mine and running_elsewhere(folder, options):
                return False
            _remove_stale(folder, held)  # its holder ended without removing it
    if (folder / "metrics.json").is_file():  # another sweep finished it since this one planned
        release(folder)
        return False
    return True


def _held(folder: Path, name: str = CLAIM) -> dict[str, Any] | None:
    """The claim in ``folder`` (or the file ``name`` there), if there is one."""
    try:
        return json.loads((folder / name).read_text())
    except (OSError, ValueError):
        return None


def _remove_stale(folder: Path, seen: dict[str, Any] | None) -> None:
    """Remove the claim in ``folder`` that was read as ``seen`` and judged stale, but not a
    claim written since: of two sweeps that judge the same stale claim at once, the first
    takes it over, and the second must not remove the first's fresh claim. The claim is
    moved aside (atomic: one mover wins), compared with what was judged, and put back
    where it is another."""
    aside = f"{CLAIM}.stale.{socket.gethostname()}.{os.getpid()}.{threading.get_ident()}"
    try:
        os.replace(folder / CLAIM, folder / aside)
    except FileNotFoundError:
        return  # another sweep removed it first
    try:
        if _held(folder, aside) != seen:
            with contextlib.suppress(FileExistsError):  # or a third sweep's claim stays
                _place(folder / aside, folder / CLAIM)
    finally:
        (folder / aside).unlink(missing_ok=True)


def release(folder: Path) -> None:
    """Remove the claim on the run in ``folder`` (:func:`claim`)."""
    (folder / CLAIM).unlink(missing_ok=True)


def run_task(cmd: list[str], threads: int, folder: str, version: str) -> str | None:
    """One job on a cluster's worker: check the worker's esx against the sweep's, then run
    it (:func:`run_command`); None when it finished, else the error."""
    if __version__ != version:
        return (
            f"this machine ({socket.gethostname()}) has esx {__version__}, but the sweep was "
            f"planned with esx {version}; install esx {version} wherever the sweep's runs go "
            "(or rerun the sweep with this version)"
        )
    job_id = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", ""))
    if job_id and os.environ.get("SLURM_ARRAY_TASK_ID"):
        job_id += "_" + os.environ["SLURM_ARRAY_TASK_ID"]
    return run_command(cmd, threads, Path(folder), job_id)


#: a claim from another machine, where no scheduler can be asked, counts as alive while
#: its run folder changed within this many seconds (a run writes at least once an epoch)
QUIET = 1800.0


def running_elsewhere(
    folder: Path, options: ExecutorOptions, submitted: dict[str, str] | None = None
) -> bool:
    """Whether another sweep's process or job is still doing the run in ``folder``: its
    claim's process is alive on this machine; or SLURM says the job that claimed it, or
    that it was submitted as (``submitted``, from :func:`submitted_jobs`), is pending or
    running; or, claimed on another machine with no scheduler to ask, its folder changed
    in the last :data:`QUIET` seconds."""
    held = _held(folder)
    if held and held.get("host") == socket.gethostname():
        try:
            pid = int(held["pid"])
            os.kill(pid, 0)
            if "started" in held:  # the claiming process, unless its pid was given anew since
                return held["started"] == _start_time(pid)
            # a claim an earlier esx wrote names the run's `esx run` process
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError, KeyError):
            return False
        return any(str(f).encode() in cmdline for f in (folder, folder.resolve()))
    job = (held or {}).get("job") or (submitted or {}).get(str(folder.resolve()))
    if job and options.cluster == "slurm":
        import submitit

        return submitit.SlurmJob(folder, job).state.split()[0] in SLURM_ALIVE
    if held:
        newest = max((f.stat().st_mtime for f in folder.iterdir()), default=0.0)
        return time.time() - newest < QUIET
    return False


@dataclass
class Where:
    """Where a sweep's runs go: the executor and its options."""

    executor: str = "local"
    options: ExecutorOptions = field(default_factory=ExecutorOptions)


def where_from(executor: str, config: Path | None, flags: dict[str, Any]) -> Where:
    """``--executor``, ``--executor-config`` and the option flags (None: not given)."""
    if executor not in EXECUTORS:
        raise EsxError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    return Where(executor, load_options(config, flags))


class Job(BaseModel):
    """What an executor needs of a sweep's job."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    folder: Path
    command: list[str]
    ref: Any = None  # the sweep's own record, handed back with the result


Results = Iterator[tuple[Any, str | None]]


def local_pool(
    jobs: list[Job], threads: int, slots: int, stop_after: Callable[[str | None], bool]
) -> Results:
    """``slots`` ``esx run`` processes at once. Once a run ends with an error for which
    ``stop_after`` is true (a full disk), no queued job starts: each ends :data:`STOPPED`."""
    stop = threading.Event()

    def work(job: Job) -> str | None:
        if stop.is_set():
            return STOPPED
        error = run_command(job.command, threads, job.folder)
        if stop_after(error):
            stop.set()  # before this worker takes the next job
        return error

    pool = ThreadPoolExecutor(max_workers=slots)
    try:
        futures = {pool.submit(work, job): job for job in jobs}
        for future in as_completed(futures):
            yield futures[future].ref, future.result()
    except BaseException:
        # Ctrl-C (the running ``esx run`` processes get it too and stop resumable): start
        # none of the queued runs, rather than working through the queue first.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


#: the error of a queued job that was not started because the sweep was told to stop
STOPPED = "not started: the sweep stopped starting runs"


def slurm(
    jobs: list[Job],
    threads: int,
    options: ExecutorOptions,
    logs: Path,
    stop_after: Callable[[str | None], bool],
) -> Results:
    """One job array through submitit; results as the array's tasks end. Once a task ends
    with an error for which ``stop_after`` is true, the tasks not yet started are cancelled
    and end :data:`STOPPED`."""
    executor = slurm_executor(options, logs)
    n = len(jobs)
    submitted = executor.map_array(
        run_task,
        [j.command for j in jobs],
        [threads] * n,
        [str(j.folder) for j in jobs],
        [__version__] * n,
    )
    record = submitted_jobs(logs)  # a rerun asks SLURM about the tasks not yet started
    record |= {str(j.folder): s.job_id for s, j in zip(submitted, jobs, strict=True)}
    (logs / SUBMITTED).write_text(json.dumps(record, indent=1))
    pending = dict(zip(submitted, jobs, strict=True))
    stopped = False
    while pending:
        for sub in [s for s in pending if s.done()]:
            job = pending.pop(sub)
            try:
                error = sub.result()
            except Exception as exc:  # the task died: out of time, out of memory, cancelled
                error = STOPPED if stopped else _short(exc)
            stopped = stopped or stop_after(error)
            if stopped:
                for other in pending:
                    if other.state.split()[0] == "PENDING":
                        other.cancel(check=False)
            yield job.ref, error
        if pending:
            time.sleep(1.0)
    # Ctrl-C leaves the cluster's jobs running; a rerun of the sweep waits for them


#: the record, in the SLURM log folder, of the SLURM job of each run folder
SUBMITTED = "submitted.json"


def submitted_jobs(logs: Path) -> dict[str, str]:
    """Run folder → the SLURM job id it was last submitted as (empty when none was)."""
    try:
        return dict(json.loads((logs / SUBMITTED).read_text()))
    except (OSError, ValueError):
        return {}


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[-600:]}"


def slurm_executor(options: ExecutorOptions, logs: Path) -> Any:
    """A submitit executor with the options' parameters; its logs under ``logs``."""
    try:
        import submitit
    except ImportError:
        raise EsxError('--executor slurm needs submitit: pip install "esx[slurm]"') from None
    logs.mkdir(parents=True, exist_ok=True)
    executor = submitit.AutoExecutor(folder=logs / "%j", cluster=options.cluster)
    executor.update_parameters(**slurm_parameters(options))
    return executor


def slurm_parameters(options: ExecutorOptions) -> dict[str, Any]:
    """submitit's parameters for the options (SLURM's own ones prefixed ``slurm_``)."""
    params: dict[str, Any] = {
        "name": "esx-sweep",
        "timeout_min": options.time,
        "cpus_per_task": options.cpus,
        "gpus_per_node": int(options.gpus),
        "slurm_array_parallelism": options.array_parallelism,
    }
    if options.mem_gb is not None:
        params["mem_gb"] = options.mem_gb
    if options.partition:
        params["slurm_partition"] = options.partition
    if options.account:
        params["slurm_account"] = options.account
    params |= {f"slurm_{k}": v for k, v in options.slurm.items()}
    return params


def ray_tasks(
    jobs: list[Job],
    threads: int,
    options: ExecutorOptions,
    stop_after: Callable[[str | None], bool],
) -> Results:
    """One Ray task per job, with the options' CPU and GPU request; results as they end.
    Once a task ends with an error for which ``stop_after`` is true, the tasks not yet
    ended are cancelled and end :data:`STOPPED`."""
    try:
        import ray
    except ImportError:
        raise EsxError('--executor ray needs Ray: pip install "esx[ray]"') from None
    address = options.ray_address or os.environ.get("RAY_ADDRESS")
    started = not ray.is_initialized()
    if started:
        local = {} if address else {"num_cpus": usable_cores()}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **local)
    remote = ray.remote(num_cpus=options.cpus, num_gpus=options.gpus, max_retries=0)(run_task)
    refs = {remote.remote(j.command, threads, str(j.folder), __version__): j for j in jobs}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            job = refs.pop(done[0])
            try:
                error = ray.get(done[0])
            except Exception as exc:  # the task's worker died
                error = _short(exc)
            yield job.ref, error
            if stop_after(error):
                for ref, other in list(refs.items()):
                    ray.cancel(ref)
                    refs.pop(ref)
                    yield other.ref, STOPPED
    except BaseException:
        for ref in refs:  # Ctrl-C: the queued tasks do not start; running ones stop resumable
            ray.cancel(ref)
        raise
    finally:
        if started:
            ray.shutdown()


def describe(
    executor: str, jobs: list[Job], threads: int, options: ExecutorOptions, logs: Path
) -> str:
    """What ``--dry-run`` prints: where the jobs would go, with what request, and each
    job's command."""
    lines = [f"executor {executor}: {len(jobs)} run{'s' if len(jobs) != 1 else ''} to start"]
    if executor == "slurm":
        lines.append(f"one SLURM job array of {len(jobs)} tasks, logs under {logs}")
        params = slurm_parameters(options)
        lines += [f"  {k}: {v}" for k, v in params.items()]
    elif executor == "ray":
        where = options.ray_address or os.environ.get("RAY_ADDRESS") or "a local Ray instance"
        lines.append(f"Ray tasks on {where}, each num_cpus={options.cpus} num_gpus={options.gpus}")
    lines.append(f"each run with {threads} torch thread{'s' if threads != 1 else ''}:")
    lines += ["  " + " ".join(j.command) for j in jobs]
    return "\n".join(lines)


def wait_for(
    folders: list[Path], options: ExecutorOptions, submitted: dict[str, str] | None = None
) -> None:
    """Block until no run of ``folders`` is being done elsewhere (:func:`running_elsewhere`)."""
    while any(running_elsewhere(f, options, submitted) for f in folders):
        time.sleep(POLL)
