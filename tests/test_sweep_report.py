"""esx sweep runs a grid and skips finished runs; esx report renders both tables."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from esx.cli import app

from conftest import ROOT


def _write(folder, name, recipe, label, group):
    recipe = dict(recipe, label=label, group=group)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(recipe))


def test_sweep_then_report(tmp_path, tiny_recipe):
    grid = tmp_path / "grid"
    grid.mkdir()
    _write(grid, "a_base", {**tiny_recipe, "loss": {"name": "none"}}, "Baseline", "a")
    magi = {**tiny_recipe, "aggregator": {"name": "magi", "params": {"gen_size": 16}}}
    _write(grid, "a_magi", magi, "MAGI", "a")
    out = tmp_path / "runs"
    runner = CliRunner()
    res = runner.invoke(
        app, ["sweep", str(grid), "--seeds", "0,1", "--out", str(out)], env={"COLUMNS": "200"}
    )
    assert res.exit_code == 0, res.output
    for name in ("a_base", "a_magi"):
        for seed in (0, 1):
            assert (out / name / f"seed{seed}" / "metrics.json").is_file()
    again = runner.invoke(
        app,
        ["sweep", str(grid), "--seeds", "0", "--seeds", "1", "--out", str(out)],
        env={"COLUMNS": "200"},
    )
    assert again.exit_code == 0 and again.output.count("skip a_") == 4, again.output

    rep = runner.invoke(app, ["report", str(out)])
    assert rep.exit_code == 0, rep.output
    md = (out / "report.md").read_text()
    assert "| a | Baseline | 2 | 1 |" in md and "| a | MAGI | 2 | 1 |" in md
    assert "Epochs: 1." in md and "Data: synthetic" in md
    # MAGI's own tables, rendered by a core that does not know them
    assert "## Table 2: consensus masks vs the true mask" in md and "| a | MAGI | 2 | noisy |" in md
    assert "## MAGI annotator slots" not in md  # per-run only (summary=False)
    rows = list(csv.DictReader((out / "table1.csv").open()))
    assert {r["method"] for r in rows} == {"Baseline", "MAGI"}
    import json
    import statistics

    accs = [
        json.loads((out / "a_base" / f"seed{s}" / "metrics.json").read_text())["test"]["accuracy"]
        for s in (0, 1)
    ]
    base = next(r for r in rows if r["method"] == "Baseline")
    assert float(base["accuracy_mean"]) == statistics.mean(accs)
    assert (out / "table1.png").is_file()
    t2 = list(csv.DictReader((out / "table_2_consensus_masks_vs_the_true_mask_test.csv").open()))
    noisy = next(r for r in t2 if r["method"] == "MAGI" and r["masks"] == "noisy")
    mses = [
        json.loads((out / "a_magi" / f"seed{s}" / "metrics.json").read_text())["aggregator"][
            "generation"
        ]["noisy"]["mse"]
        for s in (0, 1)
    ]
    assert float(noisy["mse_mean"]) == pytest.approx(statistics.mean(mses))


def test_sweep_validates_every_recipe_first(tmp_path, tiny_recipe):
    grid = tmp_path / "grid"
    grid.mkdir()
    _write(grid, "ok", tiny_recipe, "ok", "a")
    bad = {**tiny_recipe, "loss": {"name": "gradai"}}
    _write(grid, "zz_bad", bad, "bad", "a")
    res = CliRunner().invoke(app, ["sweep", str(grid), "--out", str(tmp_path / "runs")])
    assert res.exit_code == 2 and "Did you mean 'gradia'" in res.output
    assert not (tmp_path / "runs").exists()


def test_report_of_empty_folder(tmp_path):
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "esx sweep" in res.output


def test_table1_recipes_cover_the_paper():
    from esx.sweep import expand

    labels = {yaml.safe_load(p.read_text())["label"] for p in expand([ROOT / "recipes" / "table1"])}
    assert {
        "Baseline",
        "Consensus",
        "MeanLoss",
        "Random",
        "Proposed (MAGI)",
        "GRADIA",
        "HAICS",
        "RES-L",
        "RES-G",
        "Oracle (true masks)",
    } <= labels


def test_seed_specs():
    from esx.sweep import parse_seeds

    assert parse_seeds(["0,1,2"]) == [0, 1, 2]
    assert parse_seeds(["0-4"]) == [0, 1, 2, 3, 4]
    assert parse_seeds(["3", "1-2", "2"]) == [3, 1, 2]
    res = CliRunner().invoke(app, ["sweep", "recipes/table1", "--seeds", "two"])
    assert res.exit_code == 2 and "'two' is not a seed or a range" in res.output
    assert "Traceback" not in res.output


def test_same_experiment_under_two_labels_runs_once(tmp_path, tiny_recipe):
    grid = tmp_path / "grid"
    grid.mkdir()
    _write(grid, "a_x", tiny_recipe, "X", "a")
    _write(grid, "b_x", tiny_recipe, "X", "b")
    out = tmp_path / "runs"
    res = CliRunner().invoke(app, ["sweep", str(grid), "--out", str(out)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "reuse b_x seed0: the same experiment as" in res.output and "'reused': 1" in res.output
    a = json.loads((out / "a_x" / "seed0" / "metrics.json").read_text())
    b = json.loads((out / "b_x" / "seed0" / "metrics.json").read_text())
    assert a["test"] == b["test"] and b["run"]["same_as"].endswith("seed0")
    assert "group: b" in (out / "b_x" / "seed0" / "recipe.yaml").read_text()
    # the checkpoints are shared (hard links), the files that differ are the twin's own
    first, twin = out / "a_x" / "seed0", out / "b_x" / "seed0"
    assert os.path.samefile(first / "best.safetensors", twin / "best.safetensors")
    assert not os.path.samefile(first / "metrics.json", twin / "metrics.json")
    assert "same_as" not in a["run"] and "group: a" in (first / "recipe.yaml").read_text()


def test_reuse_spans_sweeps_into_one_folder(tmp_path, tiny_recipe):
    """A later sweep reuses a run that an earlier sweep made for another recipe."""
    grid = tmp_path / "grid"
    grid.mkdir()
    _write(grid, "a_x", tiny_recipe, "X", "a")
    _write(grid, "b_x", tiny_recipe, "X", "b")
    other = {**tiny_recipe, "loss": {"name": "none"}}
    _write(grid, "c_other", other, "Other", "b")
    out = tmp_path / "runs"
    runner = CliRunner()
    first = runner.invoke(
        app, ["sweep", str(grid / "a_x.yaml"), "--out", str(out)], env={"COLUMNS": "200"}
    )
    assert first.exit_code == 0, first.output
    second = runner.invoke(
        app,
        ["sweep", str(grid / "b_x.yaml"), str(grid / "c_other.yaml"), "--out", str(out)],
        env={"COLUMNS": "200"},
    )
    assert second.exit_code == 0, second.output
    assert "reuse b_x seed0: the same experiment as" in second.output
    assert "'done': 1" in second.output and "'reused': 1" in second.output
    a = json.loads((out / "a_x" / "seed0" / "metrics.json").read_text())
    b = json.loads((out / "b_x" / "seed0" / "metrics.json").read_text())
    assert a["test"] == b["test"] and b["run"]["same_as"] == str(out / "a_x" / "seed0")
    # the key read from a run's recipe.yaml is the key of the recipe it resolves to
    from esx.plugins import registry
    from esx.recipe import load_recipe
    from esx.sweep import experiment_key, finished_runs

    saved = out / "c_other" / "seed0" / "recipe.yaml"
    key = experiment_key(load_recipe(saved, registry()))
    as_read = yaml.safe_load(saved.read_text())
    assert experiment_key(as_read) == key
    assert as_read == yaml.safe_load(saved.read_text())  # the dict given is not changed
    relabelled = {**as_read, "label": "New", "group": "g", "reference": True}
    relabelled["train"] = {**as_read["train"], "keep_last_checkpoint": True}
    assert experiment_key(relabelled) == key
    assert experiment_key({**as_read, "seed": as_read["seed"] + 1}) != key
    assert finished_runs(out)[key] == out / "c_other" / "seed0"
    # a saved recipe that no longer reads is not offered for reuse, and breaks nothing;
    # nor is one an older esx wrote without a key this one fills in
    (out / "a_x" / "seed0" / "recipe.yaml").write_text("version: 1\nbogus: [")
    older = yaml.safe_load(saved.read_text())
    del older["train"]["epochs"]
    saved.write_text(yaml.safe_dump(older))
    found = finished_runs(out)
    assert key not in found and out / "a_x" / "seed0" not in found.values()
    assert out / "b_x" / "seed0" in found.values()


def test_report_reads_as_a_person_expects(tmp_path):
    """Single runs show no spread, ties are not bold, unlabelled runs are named by what ran."""
    from esx.reporting.report import report

    def run(folder, label, acc):
        folder.mkdir(parents=True)
        recipe = {
            "train": {"epochs": 3},
            "loss": {"name": "gradia"},
            "aggregator": {"name": "consensus"},
            **({"label": label} if label else {}),
        }
        (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
        test = {"accuracy": acc, "auc": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5}
        (folder / "metrics.json").write_text(
            json.dumps({"test": test, "data": {"synthetic": True}})
        )

    run(tmp_path / "q1", None, 0.75)
    run(tmp_path / "q2", "Mine", 0.70)
    md = report(tmp_path)["markdown"]
    assert "| gradia on consensus | 1 | 3 | **0.7500** |" in md  # the folder 'q1' is not a name
    assert "| Mine | 1 | 3 | 0.7000 |" in md
    assert "± " not in md.split("## Classification")[1].split("\n", 1)[1]  # one run: no spread
    assert "**0.5000**" not in md  # every row ties on auc: nothing is bold


def test_parallel_sweep_reports_a_failed_run_and_finishes_the_others(tmp_path, tiny_recipe):
    grid = tmp_path / "grid"
    grid.mkdir()
    _write(grid, "good", tiny_recipe, "Good", "a")
    broken = {**tiny_recipe, "data": {"name": "folder", "params": {"root": str(tmp_path / "no")}}}
    _write(grid, "missing_data", broken, "Missing", "a")
    out = tmp_path / "runs"
    res = CliRunner().invoke(
        app, ["sweep", str(grid), "--seeds", "0,1", "--out", str(out), "--jobs", "2"],
        env={"COLUMNS": "300"},
    )  # fmt: skip
    assert res.exit_code == 1, res.output
    for seed in (0, 1):
        assert (out / "good" / f"seed{seed}" / "metrics.json").is_file()
        assert not (out / "missing_data" / f"seed{seed}" / "metrics.json").exists()
    text = " ".join(res.output.split())
    assert "'done': 2" in text and "'failed': 2" in text
    assert f"failed: {out / 'missing_data' / 'seed0'}" in text and "no samples.csv" in text


def test_job_slots(monkeypatch):
    import os

    from esx import executors, sweep
    from esx.errors import EsxError
    from esx.sweep import job_slots

    cores = executors.usable_cores()
    assert job_slots("1") == (1, cores) and job_slots(2) == (2, max(1, cores // 2))
    assert job_slots("auto")[1] >= 1
    for bad in ("0", "many"):
        with pytest.raises(EsxError, match="--jobs"):
            job_slots(bad)
    # Pinned to 2 of 16 cores (taskset, a SLURM allocation): the runs split those 2.
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 7}, raising=False)
    monkeypatch.setattr(sweep.torch.cuda, "is_available", lambda: False)
    assert executors.usable_cores() == 2
    assert job_slots(1) == (1, 2) and job_slots(2) == (2, 1) and job_slots("auto") == (2, 1)
    # Without an affinity call (macOS, Windows): every core.
    monkeypatch.delattr(os, "sched_getaffinity")
    assert executors.usable_cores() == 16 and job_slots(2) == (2, 8)


def test_vary_a_recipe_key_pairs_runs_on_it(tmp_path, tiny_recipe):
    grid = tmp_path / "grid"
    grid.mkdir()
    _write(grid, "base", {**tiny_recipe, "loss": {"name": "none"}, "reference": True}, "B", "a")
    _write(grid, "oracle", {**tiny_recipe, "aggregator": {"name": "oracle"}}, "O", "a")
    out = tmp_path / "runs"
    args = ["sweep", str(grid), "--seeds", "0", "--vary", "data.params.seed=3-4", "--out", str(out)]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for name in ("base", "oracle"):
        folders = sorted(p.name for p in (out / name).iterdir())
        assert folders == ["seed0_data.params.seed=3", "seed0_data.params.seed=4"]
        for v in (3, 4):
            saved = yaml.safe_load(
                (out / name / f"seed0_data.params.seed={v}" / "recipe.yaml").read_text()
            )
            assert saved["data"]["params"]["seed"] == v and saved["seed"] == 0
    # the two data draws are different images
    preds = [
        (out / "base" / f"seed0_data.params.seed={v}" / "predictions.csv").read_text()
        for v in (3, 4)
    ]
    assert preds[0] != preds[1]
    rep = CliRunner().invoke(app, ["report", str(out)])
    assert rep.exit_code == 0, rep.output
    cmp = json.loads((out / "report.json").read_text())["comparisons"]
    assert [(c["method"], c["reference"], c["pairs"]) for c in cmp] == [("O", "B", 2)]
    again = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert again.output.count("finished") >= 4, again.output


def test_parse_vary():
    from esx.errors import EsxError
    from esx.sweep import folder_name, parse_vary

    assert parse_vary(["data.params.seed=0-2", "loss.params.lam=0.5,1"]) == [
        ("data.params.seed", ["0", "1", "2"]),
        ("loss.params.lam", ["0.5", "1"]),
    ]
    assert folder_name(2, [("data.params.seed", "1")]) == "seed2_data.params.seed=1"
    # The keys are sorted, so the order of --vary does not change which runs pair.
    a, b = ("data.params.level", "0.25"), ("data.params.of.params.seed", "10")
    both = "seed1_data.params.level=0.25_data.params.of.params.seed=10"
    assert folder_name(1, [a, b]) == folder_name(1, [b, a]) == both
    for bad, says in (
        ("data.params.seed", "KEY=VALUES"),
        ("seed=0-3", "--seeds"),
        ("data.params.root=/a/b", "cannot name a run folder"),
    ):
        with pytest.raises(EsxError, match=says):
            parse_vary([bad])
    with pytest.raises(EsxError, match="twice"):
        parse_vary(["a.b=1", "a.b=2"])


def test_run_folder_keeps_an_earlier_sweeps_order(tmp_path):
    from esx.sweep import run_folder

    a, b = ("data.params.level", "1"), ("data.params.of.params.seed", "10")
    # Nothing there yet: the sorted name.
    fresh = run_folder(tmp_path, 0, [b, a])
    assert fresh.name == "seed0_data.params.level=1_data.params.of.params.seed=10"
    # An earlier sweep named the run in its --vary order: that folder is resumed or
    # skipped, not started again under a second name.
    earlier = tmp_path / "seed3_data.params.of.params.seed=10_data.params.level=1"
    earlier.mkdir()
    assert run_folder(tmp_path, 3, [a, b]) == earlier
    assert run_folder(tmp_path, 3, [b, a]) == earlier
    # Another seed's run has no such folder.
    assert run_folder(tmp_path, 4, [b, a]).name.startswith("seed4_data.params.level=1")


def _fake_jobs(tmp_path, n):
    """Sweep jobs that name a folder and a recipe, for runners that never read the recipe."""
    from esx import sweep

    jobs = [sweep.Job.__new__(sweep.Job) for _ in range(n)]
    for i, job in enumerate(jobs):
        job.folder, job.recipe_path, job.sets = tmp_path / f"seed{i}", tmp_path / "r.yaml", []
    return jobs


def test_ctrl_c_stops_a_parallel_sweep_without_starting_queued_runs(tmp_path, monkeypatch):
    """Ctrl-C reaches the sweep (and its running ``esx run`` processes, which stop
    resumable); the queued runs must not start afterwards."""
    import threading
    import time

    from esx import executors, sweep

    started, release = [], threading.Event()

    def fake_run(cmd, threads, folder, job_id=""):
        started.append(folder)
        release.wait(5)
        return None

    monkeypatch.setattr(executors, "run_command", fake_run)
    jobs = _fake_jobs(tmp_path, 6)
    results = sweep._results(jobs, [], 2, 1, executors.Where(), tmp_path)

    def interrupt(*_):
        raise KeyboardInterrupt

    timer = threading.Timer(0.3, release.set)
    timer.start()
    monkeypatch.setattr(executors, "as_completed", lambda fs: iter([interrupt()]))
    with pytest.raises(KeyboardInterrupt):
        next(results)
    timer.join()
    time.sleep(0.3)
    assert len(started) <= 2  # at most the two running when Ctrl-C came; none after


def test_report_keeps_three_significant_digits_of_small_means():
    """Table 2's MSE of a small mask is ~0.002: four decimals would hide every difference."""
    from esx.reporting.text import fmt as _fmt

    assert _fmt((0.0017231, 0.0001, 5)) == "0.00172 ± 0.00010"
    assert _fmt((0.0016941, 0.0, 1)) == "0.00169"
    assert _fmt((0.75, 0.01, 3)) == "0.7500 ± 0.0100"


@pytest.mark.parametrize("slots", [1, 2])
def test_a_full_disk_stops_the_sweep_starting_queued_runs(tmp_path, monkeypatch, slots):
    """Once a run fails on a full disk, the queued runs (which would fail the same way)
    are not started; the sweep says how many and what to do."""
    from esx import executors, sweep

    started = []

    def fake_run(cmd, threads, folder, job_id=""):
        started.append(folder)
        return f"RunFailed: no space left on the disk writing {folder}/last.safetensors"

    monkeypatch.setattr(executors, "run_command", fake_run)
    monkeypatch.setattr(sweep, "_run_here", lambda job: fake_run([], 1, job.folder))
    jobs = _fake_jobs(tmp_path, 6)
    ended = list(sweep._results(jobs, [], slots, 1, executors.Where(), tmp_path))
    assert len(ended) == 6 and len(started) <= slots
    errors = [error for _, error in ended]
    assert errors.count(sweep.NOT_STARTED) == 6 - len(started)


def test_a_full_disk_is_reported_once_with_the_queued_count(tmp_path, tiny_recipe, monkeypatch):
    from esx import sweep

    grid = tmp_path / "grid"
    grid.mkdir()
    _write(grid, "x", tiny_recipe, "X", "a")
    monkeypatch.setattr(sweep, "_run_here", lambda job: "no space left on the disk writing x")
    out = tmp_path / "runs"
    res = CliRunner().invoke(
        app, ["sweep", str(grid), "--seeds", "0-2", "--out", str(out)], env={"COLUMNS": "300"}
    )
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    assert "'failed': 1, 'not started': 2" in text, text
    assert "2 queued runs not started: the disk is full" in text


def test_a_sweep_warns_before_it_outgrows_the_disk(tmp_path, monkeypatch):
    """The estimate: the pending runs times the median finished run, against the free
    space; no estimate (and no warning) without a finished run to measure."""
    import shutil
    from collections import namedtuple

    from esx import sweep
    from esx.outputs import human_size

    runs = []
    for i, size in enumerate([1000, 3000, 2000]):
        run = tmp_path / "row" / f"seed{i}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text("{}")  # 2 bytes
        (run / "best.safetensors").write_bytes(b"\0" * size)
        runs.append(run)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(0, 0, 10 * 2002))
    assert sweep.disk_warning(10, runs, tmp_path) is None  # 10 runs of 2002 B fit exactly
    text = sweep.disk_warning(11, runs, tmp_path)
    assert text and "the 11 runs to do will write about 21.5 KB (2.0 KB each" in text
    assert "19.6 KB free" in text and "train.keep_last_checkpoint false" in text
    assert sweep.disk_warning(11, [], tmp_path) is None
    assert sweep.disk_warning(0, runs, tmp_path) is None
    assert [human_size(n) for n in (512, 4.4 * 2**20, 52 * 2**30)] == [
        "512 B",
        "4.4 MB",
        "52.0 GB",
    ]


def test_report_tables_plots_and_pairs_the_groups(tmp_path):
    """Runs that wrote group accuracies get a groups table (mean ± std), groups.csv and
    groups.png, and the groups pair like any metric with --metrics."""
    from esx.reporting.report import report

    def run(folder, label, agree, disagree):
        folder.mkdir(parents=True)
        (folder / "recipe.yaml").write_text(yaml.safe_dump({"label": label}))
        test = {"accuracy": 0.9, "auc": 0.9, "precision": 0.9, "recall": 0.9, "f1": 0.9}
        test |= {"accuracy_class_0": 0.5, "accuracy_decoy_agrees": agree}
        test |= {"accuracy_decoy_disagrees": disagree}
        test["worst_group_accuracy"] = min(agree, disagree)
        (folder / "metrics.json").write_text(
            json.dumps({"test": test, "data": {"synthetic": False}})
        )

    for s, (a, d) in enumerate([(0.9, 0.6), (0.95, 0.7)]):
        run(tmp_path / "vanilla" / f"seed{s}", "Vanilla", a, d)
        run(tmp_path / "rrr" / f"seed{s}", "RRR", 0.9, d + 0.2 + 0.01 * s)
    out = report(tmp_path, references=["Vanilla"], metrics=("worst_group_accuracy", "accuracy"))
    md = out["markdown"]
    assert "## Groups of test images" in md
    # RRR's disagreeing groups 0.80 and 0.91, worst groups 0.80 and 0.90
    assert "| RRR | 2 | 0.9000 ± 0.0000 | **0.8550 ± 0.0778** | **0.8500 ± 0.0707** |" in md
    assert "accuracy_class_0" not in md.split("## Groups")[1].split("##")[0]
    assert (tmp_path / "groups.csv").is_file() and (tmp_path / "groups.png").is_file()
    (rrr,) = out["comparisons"]
    assert rrr["worst_group_accuracy"]["mean"] == pytest.approx(0.2)  # 0.8 - 0.6, 0.9 - 0.7
    assert rrr["worst_group_accuracy"]["n"] == 2


def test_report_has_no_groups_table_for_runs_grouped_by_class_only(tmp_path):
    from esx.reporting.report import report

    folder = tmp_path / "a" / "seed0"
    folder.mkdir(parents=True)
    test = {"accuracy": 0.9, "auc": 0.9, "f1": 0.9}
    test |= {"accuracy_class_0": 0.8, "worst_group_accuracy": 0.8}
    (folder / "metrics.json").write_text(json.dumps({"test": test, "data": {"synthetic": 1}}))
    out = report(tmp_path)
    assert out["groups"] == [] and "## Groups" not in out["markdown"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_two_sweeps_into_one_folder_never_run_a_run_twice(tmp_path, tiny_recipe, monkeypatch, jobs):
    """Two sweeps of the same grid started together (two terminals, two machines on one
    file system) share the runs: each run is trained once, by whichever sweep came to it
    first, and each sweep waits for the other's and counts every run done."""
    import threading
    import time

    from esx import executors, sweep
    from esx.plugins import registry

    grid = tmp_path / "grid"
    grid.mkdir()
    _write(grid, "x", tiny_recipe, "X", "a")
    trained, lock = [], threading.Lock()

    def fake_train(folder: Path) -> None:
        with lock:
            trained.append(folder.name)
        time.sleep(0.2)
        (folder / "metrics.json").write_text(
            json.dumps({"test": {"accuracy": 1, "f1": 1, "auc": 1}})
        )

    def fake_command(cmd, threads, folder, job_id="", options=None):  # as run_command does
        if not executors.claim(folder, executors.ExecutorOptions()):
            return executors.ELSEWHERE
        try:
            fake_train(folder)
        finally:
            executors.release(folder)

    monkeypatch.setattr(sweep, "train", lambda recipe, folder, *a, **k: fake_train(folder))
    monkeypatch.setattr(executors, "run_command", fake_command)
    monkeypatch.setattr(executors, "POLL", 0.05)
    monkeypatch.setattr(sweep, "job_slots", lambda j: (int(j), 1))
    out, outcomes = tmp_path / "runs", []

    def one_sweep() -> None:
        quiet = Console(quiet=True)
        outcomes.append(sweep.run_sweep([grid], list(range(6)), out, registry(), [], quiet, jobs))

    sweeps = [threading.Thread(target=one_sweep) for _ in range(2)]
    for s in sweeps:
        s.start()
    for s in sweeps:
        s.join(60)
    assert sorted(trained) == [f"seed{i}" for i in range(6)]  # each once
    assert len(outcomes) == 2
    for outcome in outcomes:
        assert outcome.counts["done"] == 6 and outcome.counts["failed"] == 0, outcome.counts
    assert not list(out.rglob(executors.CLAIM + "*"))


def test_a_sweep_waits_only_for_the_runs_another_sweep_has_not_finished(tmp_path, monkeypatch):
    """The runs another sweep took are counted at the end: those it has finished by then
    at once, and the wait names only the ones it is still doing."""
    from types import SimpleNamespace

    from rich.progress import Progress

    from esx import executors, sweep

    jobs = []
    for name in ("seed0", "seed1", "seed2"):
        (tmp_path / name).mkdir()
        jobs.append(SimpleNamespace(folder=tmp_path / name, recipe_path=Path("x.yaml")))
    for job in jobs[:2]:
        (job.folder / "metrics.json").write_text("{}")

    def other_sweep_finishes(folders, options, submitted=None):
        assert folders == [j.folder for j in jobs]
        (jobs[2].folder / "metrics.json").write_text("{}")

    monkeypatch.setattr(executors, "wait_for", other_sweep_finishes)
    console = Console(record=True, width=200)
    progress = Progress(console=console)
    t = sweep.Tally(progress, progress.add_task("sweep", total=3))
    sweep._wait_elsewhere(t, jobs, None, None)
    text = console.export_text()
    assert "waiting for 1 run(s)" in text
    assert t.counts["done"] == 3 and not t.failed
    assert text.count(": finished") == 3
