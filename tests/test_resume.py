"""An interrupted run, resumed, ends exactly like an uninterrupted one."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml
from typer.testing import CliRunner

from esx.cli import app

from conftest import ROOT


def _recipe(tmp_path, tiny_recipe):
    tiny_recipe["data"]["params"].update(n_train=64, image_size=64)
    tiny_recipe["train"].update(epochs=3, batch_size=4)
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(tiny_recipe))
    return p


def _metrics(folder):
    m = json.loads((folder / "metrics.json").read_text())
    return m["test"], m["explanation"], m["validation"]


def test_sigkill_mid_epoch_then_resume_matches(tmp_path, tiny_recipe):
    recipe = _recipe(tmp_path, tiny_recipe)
    runner = CliRunner()
    full = tmp_path / "full"
    assert runner.invoke(app, ["run", str(recipe), "--out", str(full), "--quiet"]).exit_code == 0

    cut = tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "esx", "run", str(recipe), "--out", str(cut), "--quiet"], env=env
    )
    deadline = time.time() + 240
    while not (cut / "last.safetensors").exists() and proc.poll() is None:
        assert time.time() < deadline, "the run never finished an epoch"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # somewhere in epoch 2 (or at its very start)
    proc.wait()
    assert not (cut / "metrics.json").exists()
    res = runner.invoke(app, ["run", "--resume", str(cut), "--quiet"])
    assert res.exit_code == 0, res.output
    assert _metrics(cut) == _metrics(full)
    assert (cut / "history.csv").read_text() == (full / "history.csv").read_text()


def test_resume_needs_a_finished_epoch(tmp_path):
    res = CliRunner().invoke(app, ["run", "--resume", str(tmp_path)])
    assert res.exit_code == 2 and "recipe" in res.output


def test_run_needs_recipe_or_resume():
    res = CliRunner().invoke(app, ["run"])
    assert res.exit_code == 2 and "--resume" in res.output


def test_ctrl_c_in_epoch_one_then_the_printed_command_finishes(tmp_path, tiny_recipe):
    """Ctrl-C before any epoch finished: the one printed command completes the run."""
    tiny_recipe["data"]["params"].update(n_train=256, image_size=64)
    tiny_recipe["train"].update(epochs=2, batch_size=4)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe))
    cut = tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # A shell that starts the test suite in the background (`cmd &`) makes its children
    # ignore SIGINT, and Python then installs no KeyboardInterrupt handler: give the run
    # the default disposition a terminal's Ctrl-C meets.
    proc = subprocess.Popen(
        [sys.executable, "-m", "esx", "run", str(recipe), "--out", str(cut), "--quiet"],
        env=env, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.time() + 240
    while not (cut / "run.log").exists() and proc.poll() is None:  # training has started
        assert time.time() < deadline, "the run never started"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert not (cut / "last.safetensors").exists(), "the signal came after epoch 1"
    assert "interrupted" in (cut / "run.log").read_text()
    command = re.search(r"esx run --resume (\S+)", err)
    assert command is not None, err
    res = CliRunner().invoke(app, ["run", "--resume", command[1], "--quiet"])
    assert res.exit_code == 0, res.output
    assert (cut / "metrics.json").is_file()
    history = (cut / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2"]


def test_a_full_disk_stops_the_run_in_one_message_and_resume_finishes_it(
    tmp_path, tiny_recipe, monkeypatch
):
    """The write that finds the disk full fails whole: the error names the file and the
    way on, the previous epoch's checkpoint is intact, and ``--resume`` finishes the run."""
    import errno

    from esx import outputs

    recipe = _recipe(tmp_path, tiny_recipe)
    real, lasts = outputs.save_state, []

    def full_at_epoch_two(path, state, metadata=None):
        if path.name == "last.safetensors":
            lasts.append(path)
            if len(lasts) == 2:  # the disk fills while epoch 2's checkpoint is written

                def write(f):
                    f.write(b"half a checkpoint")
                    raise OSError(errno.ENOSPC, "No space left on device")

                outputs._atomic(path, write)
        real(path, state, metadata)

    monkeypatch.setattr(outputs, "save_state", full_at_epoch_two)
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(recipe), "--out", str(out), "--quiet"])
    assert res.exit_code != 0
    text = " ".join(res.output.split())
    assert f"no space left on the disk writing {out / 'last.safetensors'}" in text, text
    assert f"esx run --resume {out}" in text and "Traceback" not in res.output
    assert json.loads((out / "status.json").read_text())["status"] == "failed"
    assert not list(out.glob(".*.tmp")), "the half-written file is removed"
    monkeypatch.setattr(outputs, "save_state", real)
    res = CliRunner().invoke(app, ["run", "--resume", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    history = (out / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2", "3"]


def test_resume_of_a_finished_run_says_so_and_changes_nothing(tmp_path, tiny_recipe):
    recipe = _recipe(tmp_path, tiny_recipe)
    run = tmp_path / "run"
    assert (
        CliRunner().invoke(app, ["run", str(recipe), "--out", str(run), "--quiet"]).exit_code == 0
    )
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    res = CliRunner().invoke(app, ["run", "--resume", str(run)], env={"COLUMNS": "300"})
    assert res.exit_code == 0 and "is finished" in res.output and "nothing changed" in res.output
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    assert not (run / "last.safetensors").exists()  # a finished run keeps best only


def test_resume_takes_only_keys_that_do_not_change_the_experiment(tmp_path, tiny_recipe):
    from esx.checkpoint import resume_overrides
    from esx.errors import EsxError

    assert resume_overrides(["train.num_workers=0", "eval.overlays=0"]) == [
        "train.num_workers=0",
        "eval.overlays=0",
    ]
    with pytest.raises(EsxError, match="start again: esx run RECIPE --out RUN --overwrite"):
        resume_overrides(["train.lr=0.1"])
    res = CliRunner().invoke(app, ["run", "--resume", str(tmp_path), "--set", "train.epochs=9"])
    assert res.exit_code == 2 and "may change only device" in " ".join(res.output.split())


def test_a_stale_running_status_reads_as_interrupted(tmp_path):
    import socket

    from esx.reporting.runs import unfinished
    from esx.runlog import read_status

    run = tmp_path / "grid" / "row" / "seed0"
    run.mkdir(parents=True)
    gone = subprocess.Popen(["true"])
    gone.wait()
    status = {"status": "running", "host": socket.gethostname(), "pid": gone.pid}
    (run / "status.json").write_text(json.dumps(status))
    assert read_status(run) == "interrupted"
    status["pid"] = os.getpid()  # alive: still running
    (run / "status.json").write_text(json.dumps(status))
    assert read_status(run) == "running"
    failed = tmp_path / "grid" / "row" / "seed1"
    failed.mkdir()
    (failed / "status.json").write_text(
        json.dumps({"status": "failed", "where": "epoch 2, step 7", "error": "boom"})
    )
    assert unfinished(tmp_path / "grid") == [
        {"run": "row/seed0", "status": "running", "where": "", "error": ""},
        {"run": "row/seed1", "status": "failed", "where": "epoch 2, step 7", "error": "boom"},
    ]
