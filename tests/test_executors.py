"""Sweeps on a cluster: the same runs under the local, SLURM (submitit) and Ray executors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from esx import executors
from esx.cli import app
from esx.errors import EsxError

from conftest import ROOT

SLURM_HERE = {"cluster": "local", "cpus": 1, "time": 10}


def _grid(tmp_path: Path, epochs: int = 2, n_train: int = 16) -> Path:
    recipe = tmp_path / "grid" / "r.yaml"
    recipe.parent.mkdir(parents=True, exist_ok=True)
    recipe.write_text(
        yaml.safe_dump(
            {
                "base": str(ROOT / "recipes" / "smoke.yaml"),
                "data": {"params": {"n_train": n_train}},
                "train": {"epochs": epochs},
                "eval": {"overlays": 0},
            }
        )
    )
    return recipe


def _sweep_args(recipe: Path, out: Path, executor: str, cfg: Path, seeds: str) -> list[str]:
    args = ["sweep", str(recipe), "--seeds", seeds, "--out", str(out)]
    if executor == "local":
        return [*args, "--jobs", "2"]  # one thread per run, as the cluster executors give
    if executor == "slurm":
        return [*args, "--executor", "slurm", "--executor-config", str(cfg)]
    return [*args, "--executor", "ray", "--cpus", "1"]


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "executor.yaml"
    cfg.write_text(yaml.safe_dump(SLURM_HERE))
    return cfg


def _esx(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESX_")}
    return subprocess.run(
        [sys.executable, "-m", "esx", *args], capture_output=True, text=True, env=env, **kw
    )


@pytest.mark.slow
def test_the_three_executors_give_the_same_metrics(tmp_path):
    """A tiny sweep (two seeds) run locally, as a submitit job array (its local executor:
    the real pickling and process path) and as Ray tasks (an embedded local instance,
    about 6 s to start here) writes the same metrics.json values, and esx report reads
    the three folders alike."""
    recipe, cfg = _grid(tmp_path), _config(tmp_path)
    tests, tables = {}, {}
    for executor in executors.EXECUTORS:
        out = tmp_path / executor
        done = _esx(_sweep_args(recipe, out, executor, cfg, "0-1"), timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "'done': 2" in done.stdout
        tests[executor] = [
            json.loads((out / "r" / f"seed{s}" / "metrics.json").read_text())["test"]
            for s in (0, 1)
        ]
        report = _esx(["report", str(out)], timeout=300)
        assert report.returncode == 0, report.stderr
        tables[executor] = json.loads((out / "report.json").read_text())["classification"]
    assert tests["slurm"] == tests["local"] and tests["ray"] == tests["local"]
    assert tables["slurm"] == tables["local"] == tables["ray"]
    assert (tmp_path / "slurm" / ".slurm" / executors.SUBMITTED).is_file()  # the array's record


def test_slurm_dry_run_prints_the_submission_and_starts_nothing(tmp_path):
    recipe = _grid(tmp_path)
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(yaml.safe_dump({"partition": "gpu", "account": "lab", "slurm": {"qos": "hi"}}))
    out = tmp_path / "runs"
    args = ["sweep", str(recipe), "--seeds", "0-2", "--out", str(out), "--executor", "slurm"]
    args += ["--executor-config", str(cfg), "--gpus", "1", "--time", "90", "--dry-run"]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    text = res.output
    assert "one SLURM job array of 3 tasks" in text
    for line in ("slurm_partition: gpu", "slurm_account: lab", "slurm_qos: hi"):
        assert line in text
    assert "gpus_per_node: 1" in text and "timeout_min: 90" in text  # flags win over the file
    assert text.count("-m esx run") == 3 and "dry run, nothing started" in text
    assert not out.exists() or not any(out.rglob("*"))


def test_executor_options_errors_name_the_file_and_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("partion: gpu\n")
    with pytest.raises(EsxError, match=r"bad.yaml: partion: .*the options: partition"):
        executors.load_options(cfg, {})
    with pytest.raises(EsxError, match="no such file"):
        executors.load_options(tmp_path / "missing.yaml", {})
    res = CliRunner().invoke(app, ["sweep", str(_grid(tmp_path)), "--executor", "pbs"])
    assert res.exit_code == 2 and "choose one of local, slurm, ray" in res.output


def test_a_job_on_another_esx_version_fails_clearly(tmp_path):
    error = executors.run_task(["true"], 1, str(tmp_path / "run"), "0.0.1")
    assert error and "planned with esx 0.0.1" in error and "install esx 0.0.1" in error
    assert not (tmp_path / "run").exists()  # nothing ran


def test_running_elsewhere_reads_the_claim(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    opts = executors.ExecutorOptions()
    assert not executors.running_elsewhere(folder, opts)  # no claim
    # a process whose command line names the run folder, as an `esx run` does
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(folder)])
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    deadline = time.time() + 30
    while str(folder).encode() not in cmdline.read_bytes():  # until it has exec'd
        assert proc.poll() is None and time.time() < deadline, "the stand-in process ended"
        time.sleep(0.01)
    try:
        claim = {"host": os.uname().nodename, "pid": proc.pid, "job": ""}
        (folder / executors.CLAIM).write_text(json.dumps(claim))
        assert executors.running_elsewhere(folder, opts)
    finally:
        proc.kill()
        proc.wait()
    assert not executors.running_elsewhere(folder, opts)  # its process has ended
    (folder / executors.CLAIM).write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    assert executors.running_elsewhere(folder, opts)  # just written: another machine's run
    old = time.time() - 2 * executors.QUIET
    for f in folder.iterdir():
        os.utime(f, (old, old))
    assert not executors.running_elsewhere(folder, opts)  # silent for too long


@pytest.mark.slow
def test_a_finished_runs_stale_claim_is_removed_when_the_sweep_skips_it(tmp_path):
    """A worker killed after its run wrote metrics.json but before it removed its claim
    leaves the claim behind; the next sweep skips the finished run and removes it."""
    out = tmp_path / "out"
    args = _sweep_args(_grid(tmp_path), out, "local", _config(tmp_path), "0")
    assert _esx(args, timeout=300).returncode == 0
    run = out / "r" / "seed0"
    claim = {"host": os.uname().nodename, "pid": 1, "job": "", "time": time.time()}
    (run / executors.CLAIM).write_text(json.dumps(claim))
    again = _esx(args, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "finished" in again.stdout and not (run / executors.CLAIM).exists()


def _esx_processes(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmd and "-m esx run" in cmd:
                found.append(cmd)
    return found


def _kill_then_rerun(tmp_path: Path, executor: str, sig: int) -> None:
    recipe, cfg = _grid(tmp_path, epochs=4, n_train=96), _config(tmp_path)
    out = tmp_path / f"killed_{executor}"
    args = _sweep_args(recipe, out, executor, cfg, "0-3")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESX_")}
    sweep = subprocess.Popen(
        [sys.executable, "-m", "esx", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob("r/seed*/last.safetensors")):
        time.sleep(0.2)
    assert list(out.glob("r/seed*/last.safetensors")), "no run finished an epoch in time"
    sweep.send_signal(sig)
    sweep.wait(timeout=120)
    if executor == "local":  # its runs die with it, even when it is killed with SIGKILL
        time.sleep(3)
        assert _esx_processes(str(out)) == []
    again = _esx(args, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    for seed in range(4):
        run = out / "r" / f"seed{seed}"
        assert (run / "metrics.json").is_file()
        with (run / "history.csv").open() as f:
            epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
        assert epochs == [1, 2, 3, 4], (seed, epochs)  # every epoch once: no run done twice
        assert not (run / executors.CLAIM).exists()


@pytest.mark.slow
def test_a_killed_local_sweep_leaves_no_run_behind_and_reruns_to_the_end(tmp_path):
    _kill_then_rerun(tmp_path, "local", signal.SIGKILL)


@pytest.mark.slow
def test_a_killed_slurm_sweep_reruns_without_submitting_a_run_twice(tmp_path):
    """The cluster's jobs outlive the sweep that submitted them (here submitit's local
    executor's processes); the rerun waits for the ones still running."""
    _kill_then_rerun(tmp_path, "slurm", signal.SIGKILL)


@pytest.mark.slow
def test_an_interrupted_ray_sweep_reruns_to_the_end(tmp_path):
    _kill_then_rerun(tmp_path, "ray", signal.SIGINT)


@pytest.mark.parametrize("executor, extra", [("slurm", "submitit"), ("ray", "ray")])
def test_a_missing_extra_says_how_to_install_it(tmp_path, monkeypatch, executor, extra):
    """`pip install -e .` alone runs everything else; an executor whose extra is absent says
    which extra to install."""
    monkeypatch.setitem(sys.modules, extra, None)  # import fails as if not installed
    recipe = _grid(tmp_path)
    args = ["sweep", str(recipe), "--out", str(tmp_path / "o"), "--executor", executor]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert res.exit_code == 2, res.output
    assert f'pip install "esx[{executor}]"' in res.output


def test_a_claim_is_taken_once_and_given_back(tmp_path):
    """Just before a run starts, its sweep takes the claim; a second taker (another sweep:
    here the same process, whose claim is alive) is refused until it is given back."""
    folder, opts = tmp_path / "run", executors.ExecutorOptions()
    assert executors.claim(folder, opts)
    held = json.loads((folder / executors.CLAIM).read_text())
    assert held["pid"] == os.getpid() and held["started"] is not None
    assert executors.running_elsewhere(folder, opts)
    assert not executors.claim(folder, opts)  # held: refused, and the claim is kept
    assert json.loads((folder / executors.CLAIM).read_text()) == held
    executors.release(folder)
    assert executors.claim(folder, opts)
    executors.release(folder)
    assert [f.name for f in folder.iterdir()] == []  # no temporary file left behind


def test_a_claim_is_exclusive_without_hard_links_too(tmp_path, monkeypatch):
    def no_links(*_):
        raise PermissionError("this file system has no hard links")

    monkeypatch.setattr(executors.os, "link", no_links)
    folder, opts = tmp_path / "run", executors.ExecutorOptions()
    assert executors.claim(folder, opts)
    assert json.loads((folder / executors.CLAIM).read_text())["pid"] == os.getpid()
    assert not executors.claim(folder, opts)
    assert [f.name for f in folder.iterdir()] == [executors.CLAIM]


def test_a_stale_claim_is_taken_over_and_a_finished_run_is_not(tmp_path):
    folder, opts = tmp_path / "run", executors.ExecutorOptions()
    folder.mkdir()
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_OUT)
    stale = {"host": os.uname().nodename, "pid": int(ended.stdout), "started": "1", "job": ""}
    (folder / executors.CLAIM).write_text(json.dumps(stale))
    assert executors.claim(folder, opts)  # its process has ended
    executors.release(folder)
    # a live pid that started at another time is a later process given the same pid
    reused = dict(stale, pid=os.getpid(), started="0")
    (folder / executors.CLAIM).write_text(json.dumps(reused))
    assert not executors.running_elsewhere(folder, opts)
    assert executors.claim(folder, opts)
    executors.release(folder)
    (folder / "metrics.json").write_text("{}")  # another sweep finished it meanwhile
    assert not executors.claim(folder, opts)
    assert not (folder / executors.CLAIM).exists()


def test_of_two_sweeps_taking_over_one_stale_claim_the_second_keeps_the_firsts(tmp_path):
    """Two sweeps judge the same stale claim at once; the first removes it and writes its
    own; the second, removing what it judged stale, must leave the first's claim alone
    (removing it would let both run the same run)."""
    folder, opts = tmp_path / "run", executors.ExecutorOptions()
    folder.mkdir()
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_OUT)
    stale = {"host": os.uname().nodename, "pid": int(ended.stdout), "started": "1", "job": ""}
    (folder / executors.CLAIM).write_text(json.dumps(stale))
    judged = executors._held(folder)  # the second sweep reads it and judges it stale ...
    assert judged == stale and not executors.running_elsewhere(folder, opts)
    assert executors.claim(folder, opts)  # ... while the first takes it over
    first = json.loads((folder / executors.CLAIM).read_text())
    assert first["pid"] == os.getpid()
    executors._remove_stale(folder, judged)  # the second removes what it judged
    assert json.loads((folder / executors.CLAIM).read_text()) == first
    assert executors.running_elsewhere(folder, opts)  # so the second waits for the first
    assert sorted(f.name for f in folder.iterdir()) == [executors.CLAIM]
    # where the claim is still the one judged stale, it is removed
    (folder / executors.CLAIM).write_text(json.dumps(stale))
    executors._remove_stale(folder, stale)
    assert list(folder.iterdir()) == []
    executors._remove_stale(folder, stale)  # already gone: nothing to do


def test_a_claim_moved_aside_is_put_back_without_hard_links_too(tmp_path, monkeypatch):
    def no_links(*_):
        raise PermissionError("this file system has no hard links")

    monkeypatch.setattr(executors.os, "link", no_links)
    folder = tmp_path / "run"
    folder.mkdir()
    live = {"host": os.uname().nodename, "pid": os.getpid(), "started": "2", "job": ""}
    (folder / executors.CLAIM).write_text(json.dumps(live))
    executors._remove_stale(folder, {"pid": 1})  # judged another claim: this one stays
    assert json.loads((folder / executors.CLAIM).read_text()) == live
    assert [f.name for f in folder.iterdir()] == [executors.CLAIM]


def test_a_requeued_slurm_task_takes_back_its_own_claim(tmp_path):
    """A preempted SLURM task requeued on another node finds the claim of its first
    attempt, same job id, still fresh: it is its own, not another sweep's."""
    folder, opts = tmp_path / "run", executors.ExecutorOptions(cluster="local")
    folder.mkdir()
    first = {"host": "node7", "pid": 4242, "job": "123_4", "time": time.time()}
    (folder / executors.CLAIM).write_text(json.dumps(first))
    assert not executors.claim(folder, opts, job_id="999_0")  # another job's, fresh
    assert executors.claim(folder, opts, job_id="123_4")
    assert json.loads((folder / executors.CLAIM).read_text())["host"] == os.uname().nodename


def test_run_command_names_the_run_process_and_resumes_what_another_sweep_began(
    tmp_path, monkeypatch
):
    folder, opts = tmp_path / "run", executors.ExecutorOptions()
    folder.mkdir()
    (folder / "last.safetensors").write_bytes(b"")  # another sweep's run got an epoch done
    seen = {}
    real_popen = subprocess.Popen

    def popen(cmd, **kw):
        seen["cmd"] = cmd
        return real_popen([sys.executable, "-c", "import time; time.sleep(3)"], **kw)

    monkeypatch.setattr(executors.subprocess, "Popen", popen)
    fresh = executors.command(folder, tmp_path / "r.yaml", [], resume=False)
    done = []
    worker = threading.Thread(target=lambda: done.append(executors.run_command(fresh, 1, folder)))
    worker.start()
    deadline = time.time() + 30
    while "cmd" not in seen or json.loads((folder / executors.CLAIM).read_text())["pid"] == (
        os.getpid()
    ):
        assert time.time() < deadline, "the run's process never held the claim"
        time.sleep(0.01)
    assert not executors.claim(folder, opts)  # the run's own process holds it
    worker.join()
    assert done == [None] and not (folder / executors.CLAIM).exists()
    assert seen["cmd"] == [sys.executable, "-m", "esx", "run", "--resume", str(folder), "--quiet"]
    (folder / "metrics.json").write_text("{}")
    assert executors.run_command(fresh, 1, folder) == executors.ELSEWHERE


_OUT = {"capture_output": True, "text": True, "check": True}


def test_the_executors_module_loads_without_torch() -> None:
    # A cluster worker imports esx.executors to wrap each run's `esx run` process; the
    # run loads torch itself. So the module spells checkpoint.LAST out instead of
    # importing esx.checkpoint, and this pins that it stays so.
    code = "import sys, esx.executors; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
