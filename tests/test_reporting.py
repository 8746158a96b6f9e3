"""esx report and the pages on fabricated run folders: one row per experiment, rows told
apart, unfinished runs listed, banners per run, the method named, metrics defined, empty
tables and columns not drawn, precision that tells rows apart; the overlays' picks and
MAGI's gallery crop; the run-folder reference against a real run."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from esx.reporting import curve
from esx.reporting.html import write_run_page
from esx.reporting.report import report
from esx.reporting.runs import collect
from esx.reporting.text import column_digits, fmt


def _run(
    folder: Path,
    acc: float,
    *,
    seed: int = 0,
    epochs: int = 2,
    label: str | None = None,
    synthetic: bool = True,
    data: str = "phantom",
    tables: list | None = None,
    precision: str | None = None,
    used: str | None = None,
) -> Path:
    folder.mkdir(parents=True)
    recipe = {
        "version": 1,
        "seed": seed,
        "data": {"name": data, "params": {"seed": 0}},
        "backbone": {"name": "timm", "params": {"arch": "resnet18"}},
        "explainer": {"name": "gradcam", "params": {}},
        "aggregator": {"name": "magi", "params": {"targets": "consensus"}},
        "loss": {"name": "gradia", "params": {}},
        "train": {"epochs": epochs},
    }
    if label:
        recipe["label"] = label
    if precision:
        recipe["train"]["precision"] = precision
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    test = {"accuracy": acc, "auc": 0.7, "precision": 0.6, "recall": 0.5, "f1": 0.55}
    metrics = {
        "test": test,
        "validation": {"best_epoch": 1, "select_metric": "accuracy", **test},
        "data": {"name": data, "synthetic": synthetic},
        "run": {"seed": seed, "seconds": 1.0, **({"precision": used} if used else {})},
        "tables": tables or [],
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    rows = [f"{i},{i % 2},{i % 2 if i < 8 else 1 - i % 2},0.5" for i in range(10)]
    (folder / "predictions.csv").write_text("id,label,pred,prob\n" + "\n".join(rows) + "\n")
    return folder


def test_runs_of_different_experiments_are_rows_of_their_own(tmp_path):
    _run(tmp_path / "a" / "seed0", 0.70, epochs=1)
    _run(tmp_path / "a" / "seed1", 0.72, seed=1, epochs=1)
    _run(tmp_path / "a" / "seed0-e2", 0.80, epochs=2)
    rows = collect(tmp_path)
    assert len(rows) == 2
    labels = sorted(r.label for r in rows)
    assert labels == ["gradia on magi [train.epochs=1]", "gradia on magi [train.epochs=2]"]
    assert sorted(len(r.runs) for r in rows) == [1, 2]


def test_a_row_is_the_precision_its_runs_used_not_the_one_their_recipes_named(tmp_path):
    """`auto` on a CPU (fp32) and `fp32` on a GPU are one experiment; `auto` on a GPU
    (bf16) is another, labelled as a recipe names it; a run that did not record its
    precision keeps its recipe's."""
    _run(tmp_path / "a" / "seed0", 0.70, precision="auto", used="fp32")
    _run(tmp_path / "a" / "seed1", 0.72, seed=1, precision="fp32", used="fp32")
    _run(tmp_path / "a" / "seed2", 0.74, seed=2, precision="auto", used="torch.bfloat16")
    _run(tmp_path / "a" / "seed3", 0.76, seed=3, precision="bf16")
    rows = {r.label: len(r.runs) for r in collect(tmp_path)}
    assert rows == {
        "gradia on magi [train.precision=fp32]": 2,
        "gradia on magi [train.precision=bf16]": 2,
    }


def test_rows_that_share_a_label_are_told_apart_by_their_folder(tmp_path):
    _run(tmp_path / "smoke-1", 0.70)
    _run(tmp_path / "smoke-2", 0.71)
    labels = sorted(r.label for r in collect(tmp_path))
    assert labels == ["gradia on magi (smoke-1)", "gradia on magi (smoke-2)"]


def test_the_folder_page_lists_unfinished_runs_and_bannners_by_row(tmp_path):
    _run(tmp_path / "syn" / "seed0", 0.70, label="Synthetic row")
    _run(tmp_path / "real" / "seed0", 0.71, label="Real row", synthetic=False, data="folder")
    broken = tmp_path / "real" / "seed1"
    broken.mkdir()
    (broken / "status.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
    result = report(tmp_path, html=True)
    page = (tmp_path / "report.html").read_text()
    assert "Runs not finished" in page and "real/seed1" in page and "boom" in page
    banner = re.search(r'<p class="banner">(.*?)</p>', page).group(1)
    assert "Synthetic row" in banner and "Real row" not in banner
    assert "| data |" in result["markdown"]  # mixed data: a column says which row is which
    assert "What the metrics mean" in page and "harmonic mean of precision and recall" in page
    assert "## Runs not finished" in result["markdown"]


def test_a_real_data_folder_gets_no_synthetic_banner(tmp_path):
    _run(tmp_path / "real" / "seed0", 0.71, synthetic=False, data="folder")
    report(tmp_path, html=True)
    assert 'class="banner"' not in (tmp_path / "report.html").read_text()


def test_a_run_page_names_its_method_and_defines_its_metrics(tmp_path):
    empty = {
        "title": "Slots",
        "columns": ["slot", "weight", "who"],
        "rows": [[0, 0.25, "-"], [1, 0.75, None]],
        "note": "",
        "summary": True,
    }
    blank = {
        "title": "Nothing here",
        "columns": ["slot", "who"],
        "rows": [[0, "-"], [1, None]],
        "note": "",
        "summary": True,
    }
    folder = _run(tmp_path / "r", 0.70, tables=[empty, blank])
    page = write_run_page(folder).read_text()
    method = re.search(r'<p class="method">(.*?)</p>', page).group(1)
    for part in (
        "dataset <b>phantom</b>",
        "backbone <b>timm</b> (resnet18)",
        "explainer <b>gradcam</b>",
        "aggregator <b>magi</b> (consensus)",
        "loss <b>gradia</b>",
    ):
        assert part in method
    assert "<title>esx run: gradia on magi</title>" in page
    assert "share of images whose predicted class is the label" in page
    assert "Nothing here" not in page  # a table without values is not drawn
    assert "Slots" in page and ">who<" not in page and "not shown: who" in page


def test_numbers_keep_the_digits_that_tell_rows_apart():
    small = [(0.00370, 0.0, 1), (0.00369, 0.0, 1)]  # Table 2's MSE of two rows
    assert fmt(small[0], column_digits(small)) == "0.00370"
    assert fmt(small[1], column_digits(small)) == "0.00369"
    assert column_digits([0.5, 0.25]) == 4
    assert column_digits([0.123456, 0.123459]) == 6


def test_overlays_show_correct_and_wrong_predictions_side_by_side():
    from esx.evaluation import overlay_picks

    label = {i: i % 2 for i in range(20)}
    wrong = set(range(10))
    picks = overlay_picks(label, wrong, 6)
    assert [i in wrong for i in picks] == [False, False, False, True, True, True]
    assert {label[i] for i in picks[:3]} == {0, 1} and {label[i] for i in picks[3:]} == {0, 1}
    assert len(overlay_picks(label, set(), 6)) == 6  # no mistakes: six correct ones
    assert len(overlay_picks(label, set(range(19)), 6)) == 6  # one right, five wrong


def test_the_magi_gallery_crops_around_the_masks():
    from esx_magi.figures import crop_box

    masks = torch.zeros(3, 112, 112)
    masks[0, 50:54, 60:63] = 1
    masks[2, 52:56, 61:65] = 1
    top, bottom, left, right = crop_box(masks)
    assert bottom - top == right - left == 16  # at least 16 px around a 6-px nodule
    assert top <= 50 and bottom >= 56 and left <= 60 and right >= 65
    assert crop_box(torch.zeros(2, 32, 32)) == (0, 32, 0, 32)
    masks = torch.zeros(1, 40, 40)
    masks[0, 0:30, 0:30] = 1
    assert crop_box(masks) == (0, 40, 0, 40)  # kept inside the image


def _curve_runs(root: Path) -> dict:
    """Baseline 0.60, Oracle 0.90 at every level; Consensus 0.90 - 0.3 * level (+ seed
    noise): it keeps all of the gain at level 0, half at 0.5, none at 1."""
    acc = {}
    for row, label in (("baseline", "Baseline"), ("oracle", "Oracle"), ("consensus", "Consensus")):
        for level in (0, 0.5, 1):
            for seed in range(3):
                a = {"baseline": 0.6, "oracle": 0.9, "consensus": 0.9 - 0.3 * level}[row]
                a += 0.01 * seed
                folder = root / row / f"seed{seed}_data.params.level={level}"
                _run(folder, a, seed=seed, label=label)
                recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
                recipe["data"] = {"name": "panel", "params": {"level": level, "seed": 0}}
                (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
                acc[(label, level, seed)] = a
    return acc


def test_the_curve_report_gives_each_line_its_kept_share(tmp_path):
    _curve_runs(tmp_path)
    from typer.testing import CliRunner

    from esx.cli import app

    args = ["--curve", "data.params.level", "--floor", "Baseline", "--ceiling", "Oracle"]
    res = CliRunner().invoke(
        app, ["report", str(tmp_path), *args, "--versus", "Consensus", "--html"]
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((tmp_path / "curve.csv").open()))
    kept = {
        (r["line"], float(r["data.params.level"])): float(r["kept"])
        for r in rows
        if r["metric"] == "accuracy" and r["kept"]
    }
    assert kept[("Consensus", 0.0)] == pytest.approx(1.0)
    assert kept[("Consensus", 0.5)] == pytest.approx(0.5)
    assert kept[("Consensus", 1.0)] == pytest.approx(0.0, abs=1e-9)
    assert kept[("Oracle", 0.5)] == pytest.approx(1.0) and kept[("Baseline", 0.5)] == 0
    minus = {
        float(r["data.params.level"]): float(r["minus_Consensus_mean"])
        for r in rows
        if r["line"] == "Oracle" and r["metric"] == "accuracy"
    }
    assert minus[1.0] == pytest.approx(0.3)
    assert (tmp_path / "curve.png").stat().st_size > 5000
    page = (tmp_path / "report.html").read_text()
    assert ">Curve</h2>" in page and "kept share" in page
    # each cell's mean is the mean over its runs, with the run count beside it, not a
    # made-up spread: Consensus at level 0.5 over seeds 0-2 is 0.75 + 0.01 * mean(0, 1, 2)
    curve = page[page.index(">Curve</h2>") : page.index(">Per run</h2>")]
    assert "± 0" not in curve and '<th class="text">mean accuracy</th>' in curve
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", curve)
    i = next(k for k, c in enumerate(cells) if cells[k : k + 2] == ["Consensus", "0.5"])
    assert cells[i + 2] == "3" and float(cells[i + 3]) == pytest.approx(0.76)
    assert "## Curve over data.params.level" in res.output
    # the three levels of one recipe are three rows of the ordinary tables, told apart
    assert "Consensus [data.params.level=0.5]" in res.output


def test_the_curve_report_names_the_cells_over_fewer_runs(tmp_path):
    """A sweep still running (or a failed run) leaves a cell with fewer runs: its interval
    is then over fewer pairs, and the tables say so beneath; full cells say nothing."""
    _curve_runs(tmp_path)
    args = ("data.params.level", "Baseline", "Oracle", "Consensus")
    full = curve.write(tmp_path, collect(tmp_path), *args)["markdown"]
    assert "Fewer" not in full
    (tmp_path / "consensus" / "seed2_data.params.level=0.5" / "metrics.json").unlink()
    md = curve.write(tmp_path, collect(tmp_path), *args)["markdown"]
    assert "Fewer runs than the 3 of the fullest cells: Consensus at 0.5 (2)." in md
    assert "Fewer pairs than the 3 of the fullest cells: Consensus at 0.5 (2)." in md
    # the paired differences: Baseline and Oracle against the two Consensus runs left
    assert "Baseline at 0.5 (2); Oracle at 0.5 (2)." in md
    rows = list(csv.DictReader((tmp_path / "curve.csv").open()))
    got = {
        (r["line"], float(r["data.params.level"])): (r["kept_pairs"], r["minus_Consensus_n"])
        for r in rows
        if r["metric"] == "accuracy"
    }
    assert got[("Consensus", 0.5)][0] == "2" and got[("Oracle", 0.5)] == ("3", "2")


def test_the_curve_report_refuses_an_unknown_key_or_floor(tmp_path):
    _curve_runs(tmp_path)
    from typer.testing import CliRunner

    from esx.cli import app

    bounds = ["--floor", "Baseline", "--ceiling", "Oracle"]
    res = CliRunner().invoke(app, ["report", str(tmp_path), "--curve", "data.params.lvl", *bounds])
    assert res.exit_code == 2 and "no run's recipe has that key" in res.output
    res = CliRunner().invoke(
        app,
        [
            "report",
            str(tmp_path),
            "--curve",
            "data.params.level",
            "--floor",
            "Vanilla",
            "--ceiling",
            "Oracle",
        ],
    )
    assert res.exit_code == 2 and "--floor 'Vanilla': no such line" in res.output
    res = CliRunner().invoke(app, ["report", str(tmp_path), "--curve", "data.params.level"])
    assert res.exit_code == 2 and "needs the rows that bound it" in res.output
    res = CliRunner().invoke(app, ["report", str(tmp_path), "--floor", "Baseline"])
    assert res.exit_code == 2 and "go with --curve" in res.output


def test_the_curve_report_refuses_two_experiments_at_one_point_of_a_line(tmp_path):
    """Two rows of one line at one value (here a Consensus run of other epochs) used to be
    one point, the other row's runs silently dropped; the report names both instead."""
    _curve_runs(tmp_path)
    folder = tmp_path / "consensus" / "seed3_data.params.level=0.5"
    _run(folder, 0.8, seed=3, label="Consensus", epochs=5)
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    recipe["data"] = {"name": "panel", "params": {"level": 0.5, "seed": 0}}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    from esx.errors import EsxError

    with pytest.raises(EsxError) as err:
        curve.lines(collect(tmp_path), "data.params.level")
    msg = str(err.value)
    assert "line 'Consensus' has two rows at data.params.level = 0.5" in msg
    assert "train.epochs=2" in msg and "(3 runs)" in msg
    assert "train.epochs=5" in msg and "(1 run)" in msg


def test_kept_share_against_a_hand_computation():
    from esx.stats import kept_share

    share, low, high = kept_share([0.7, 0.8, 0.75], [0.6, 0.6, 0.6], [0.9, 1.0, 0.8])
    assert share == pytest.approx((0.75 - 0.6) / (0.9 - 0.6))
    assert low <= share <= high
    assert all(map(lambda v: v != v, kept_share([0.7, 0.7], [0.8, 0.8], [0.6, 0.6])))  # NaN


def test_a_curve_line_run_at_one_value_shows_its_interval_as_an_error_bar(tmp_path, monkeypatch):
    """A band needs two values of the key; a line with one (a row still running) gets an
    error bar spanning its interval, the others none."""
    from matplotlib.container import ErrorbarContainer

    drawn = []
    monkeypatch.setattr(curve.plots, "write", lambda path, fig: drawn.append(fig))

    def rec(line, x, mean, low, high):
        return {"line": line, "level": x, "accuracy": mean, "low": low, "high": high}

    records = {
        "accuracy": [
            rec("Baseline", 0.0, 0.6, 0.55, 0.65),
            rec("Baseline", 0.5, 0.6, 0.55, 0.65),
            rec("Oracle", 0.0, 0.8, 0.75, 0.85),
            rec("Oracle", 0.5, 0.8, 0.75, 0.85),
            rec("Mine", 0.5, 0.3, 0.2, 0.4),
        ]
    }
    curve.figure(tmp_path / "curve.png", records, "level", "Baseline", "Oracle")
    (ax,) = drawn[0].axes
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1
    (segments,) = bars[0].lines[2]
    (x0, y0), (x1, y1) = segments.get_segments()[0]
    assert (x0, x1) == (0.5, 0.5) and sorted((y0, y1)) == pytest.approx([0.2, 0.4])
