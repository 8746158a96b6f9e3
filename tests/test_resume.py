"""An interrupted run, resumed, ends exactly like an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

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
