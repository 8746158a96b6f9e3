"""Paired comparisons, runs needed and per-run intervals, against scipy and planted effects."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from scipy import stats as sps

from esx import stats
from esx.errors import EsxError
from esx.reporting.report import report


def test_paired_interval_equals_scipy():
    a = [0.78, 0.74, 0.80, 0.77, 0.75]
    b = [0.76, 0.75, 0.77, 0.74, 0.73]
    got = stats.paired(a, b)
    ref = sps.ttest_rel(a, b).confidence_interval(0.95)
    assert got.low == pytest.approx(ref.low) and got.high == pytest.approx(ref.high)
    assert got.mean == pytest.approx(np.mean(np.subtract(a, b)))
    assert (got.wins, got.ties, got.losses) == (4, 0, 1) and got.n == 5


def test_planted_five_points_is_better_and_zero_is_not():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.70, 0.80, 5)
    noise = rng.normal(0, 0.01, 5)
    assert stats.paired(base + 0.05 + noise, base).verdict == "better"
    assert stats.paired(base - 0.05 + noise, base).verdict == "worse"
    assert stats.paired(base + noise, base).verdict == "not distinguishable"
    assert stats.paired([0.7], [0.6]).verdict == "too few pairs"


def test_lower_is_better_turns_the_verdict_and_wins_round():
    a, b = [0.10, 0.12, 0.08, 0.11, 0.09], [0.16, 0.15, 0.17, 0.14, 0.18]  # a leans on less
    up = stats.paired(a, b)
    down = stats.paired(a, b, lower_is_better=True)
    assert up.verdict == "worse" and down.verdict == "better"
    assert (up.wins, up.losses) == (0, 5) and (down.wins, down.losses) == (5, 0)
    assert (down.mean, down.low, down.high) == (up.mean, up.low, up.high)  # still a - b
    assert stats.paired(b, a, lower_is_better=True).verdict == "worse"


def _runs_with_reliance(root, declare):
    """Four seeds of a reference row leaning on a cue and a calmer row; ``declare`` is
    written as each run's ``lower_is_better`` (None: not written)."""
    for s in range(4):
        for name, label, rel, ref in (("base", "Base", 0.15, True), ("calm", "Calm", 0.05, False)):
            _run(root / name / f"seed{s}", label, 0.7, reference=ref)
            path = root / name / f"seed{s}" / "metrics.json"
            m = json.loads(path.read_text())
            m["test"]["cue_reliance"] = rel + 0.01 * s * (name == "calm")
            if declare is not None:
                m["lower_is_better"] = declare
            path.write_text(json.dumps(m))


def test_report_reads_a_declared_lower_is_better_metric(tmp_path):
    _runs_with_reliance(tmp_path, ["cue_reliance"])
    out = report(tmp_path, metrics=("cue_reliance", "accuracy"), html=True)
    (calm,) = out["comparisons"]
    assert calm["cue_reliance"]["verdict"] == "better" and calm["cue_reliance"]["wins"] == 4
    assert calm["cue_reliance"]["mean"] < 0 and calm["cue_reliance"]["lower_is_better"]
    assert not calm["accuracy"]["lower_is_better"]
    assert "Lower is better for cue_reliance" in (tmp_path / "report.md").read_text()
    assert "Lower is better for cue_reliance" in (tmp_path / "report.html").read_text()


def test_report_knows_no_metric_names_it_was_not_told(tmp_path):
    _runs_with_reliance(tmp_path, None)  # no declaration: read as higher-is-better
    (calm,) = report(tmp_path, metrics=("cue_reliance",))["comparisons"]
    assert calm["cue_reliance"]["verdict"] == "worse" and calm["cue_reliance"]["losses"] == 4
    assert "Lower is better" not in (tmp_path / "report.md").read_text()


def test_report_refuses_a_malformed_declaration(tmp_path):
    _runs_with_reliance(tmp_path, "cue_reliance")  # a string, not a list
    with pytest.raises(EsxError, match=r"metrics\.json: 'lower_is_better' is 'cue_reliance'.*list"):
        report(tmp_path, metrics=("cue_reliance",))


def test_pairs_needed_matches_a_simulation():
    sd, delta = 0.02, 0.015
    n = stats.pairs_needed(sd, delta)
    rng = np.random.default_rng(1)

    def power(k: int) -> float:
        d = rng.normal(delta, sd, (20000, k))
        t = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(k))
        return float((np.abs(t) > sps.t.ppf(0.975, k - 1)).mean())

    assert power(n) >= 0.79 and power(n - 1) < 0.81
    assert stats.pairs_needed(sd, 2 * delta) < n  # a larger difference needs fewer runs


def test_bootstrap_interval_of_a_run():
    correct = np.array([1.0] * 75 + [0.0] * 25)
    lo, hi = stats.bootstrap_mean(correct)
    assert lo < 0.75 < hi and 0.6 < lo and hi < 0.9
    assert stats.bootstrap_mean(np.ones(10)) == (1.0, 1.0)


def _run(folder, label, acc, reference=False):
    folder.mkdir(parents=True)
    recipe = {"label": label, "group": "a", "reference": reference, "train": {"epochs": 2}}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    test = {"accuracy": acc, "auc": acc, "precision": 0.5, "recall": 0.5, "f1": acc}
    (folder / "metrics.json").write_text(json.dumps({"test": test, "data": {"synthetic": True}}))
    n = 40
    right = round(acc * n)
    (folder / "predictions.csv").write_text(
        "id,label,prob_positive,pred\n" + "".join(f"{i},1,0.9,{int(i < right)}\n" for i in range(n))
    )


def test_report_pairs_runs_and_calls_a_planted_difference(tmp_path):
    rng = np.random.default_rng(3)
    base = rng.uniform(0.6, 0.7, 5)
    for s in range(5):
        _run(tmp_path / "base" / f"seed{s}", "Base", float(base[s]), reference=True)
        _run(tmp_path / "plus" / f"seed{s}", "Plus five", float(base[s] + 0.05))
        _run(tmp_path / "same" / f"seed{s}", "Same", float(base[s] + rng.normal(0, 0.01)))
    _run(tmp_path / "same" / "seed9", "Same", 0.9)  # no partner: not paired
    out = report(tmp_path)
    by = {r["method"]: r for r in out["comparisons"]}
    assert by["Plus five"]["accuracy"]["verdict"] == "better" and by["Plus five"]["pairs"] == 5
    assert by["Plus five"]["accuracy"]["mean"] == pytest.approx(0.05)
    assert by["Same"]["accuracy"]["verdict"] == "not distinguishable" and by["Same"]["pairs"] == 5
    md = (tmp_path / "report.md").read_text()
    assert "## Paired comparisons" in md and "| a | Plus five | Base | 5 |" in md
    assert "## Per run: test accuracy" in md
    assert (tmp_path / "comparisons.csv").is_file() and (tmp_path / "runs.csv").is_file()
    assert json.loads((tmp_path / "report.json").read_text())["comparisons"]
    named = report(tmp_path, references=["Same"])["comparisons"]
    assert {r["reference"] for r in named} == {"Same"}
    with pytest.raises(Exception, match="--reference 'Nope': no such row"):
        report(tmp_path, references=["Nope"])
