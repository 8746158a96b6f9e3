"""The HTML pages: self-contained, complete, and not blank when a browser draws them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from esx.cli import app

from conftest import tiny

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two rows (a reference and a MAGI row) over two seeds, reported with --html."""
    root = tmp_path_factory.mktemp("html")
    grid = root / "grid"
    grid.mkdir()
    base = {**tiny(), "loss": {"name": "none"}, "label": "Base", "reference": True}
    magi = {
        **tiny(),
        "aggregator": {"name": "magi", "params": {"gen_size": 16}},
        "label": "MAGI row",
    }
    (grid / "base.yaml").write_text(yaml.safe_dump(base))
    (grid / "magi.yaml").write_text(yaml.safe_dump(magi))
    out = root / "runs"
    res = CliRunner().invoke(app, ["sweep", str(grid), "--seeds", "0,1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rep = CliRunner().invoke(app, ["report", str(out), "--html", "--show", "magi/seed1"])
    assert rep.exit_code == 0, rep.output
    return out


def _self_contained(text: str) -> None:
    assert "<script" not in text.lower()
    # every src and href is inside the page: data: URIs and #anchors only
    for ref in re.findall(r'(?:src|href)="([^"]*)"', text):
        assert ref.startswith(("data:image/png;base64,", "#")), ref


def test_run_writes_its_own_page(sweep):
    page = (sweep / "magi" / "seed0" / "report.html").read_text()
    _self_contained(page)
    metrics = json.loads((sweep / "magi" / "seed0" / "metrics.json").read_text())
    assert f"{metrics['test']['accuracy']:.4f}" in page
    for section in ("Scores", "Learning curves", "Tables", "Figures", "Recipe"):
        assert f">{section}</h2>" in page
    assert "Table 2: consensus masks vs the true mask" in page  # MAGI's own table
    assert "Synthetic images" in page
    # every figure the run drew is embedded
    pngs = sorted(p.name for p in (sweep / "magi" / "seed0").glob("*.png"))
    assert pngs and all(f"<figcaption>{name}</figcaption>" in page for name in pngs)


def test_sweep_page_has_the_tables_and_the_chosen_runs(sweep):
    page = (sweep / "report.html").read_text()
    _self_contained(page)
    report = json.loads((sweep / "report.json").read_text())
    (cmp,) = report["comparisons"]
    assert (cmp["method"], cmp["reference"], cmp["pairs"]) == ("MAGI row", "Base", 2)
    assert f"{cmp['accuracy']['mean']:+.4f} [{cmp['accuracy']['low']:+.4f}" in page
    for section in ("Classification", "Paired comparisons", "Per run"):
        assert f">{section}</h2>" in page
    assert "magi/seed1: figures" in page and "magi/seed0: figures" not in page
    assert "base/seed0: figures" not in page


def test_show_that_matches_nothing_is_one_clear_error(sweep):
    res = CliRunner().invoke(app, ["report", str(sweep), "--html", "--show", "nope/*"])
    assert res.exit_code == 2 and "--show" in res.output and "no run folder" in res.output


def test_a_run_page_is_rebuilt_from_its_folder(sweep):
    folder = sweep / "base" / "seed1"
    (folder / "report.html").unlink()
    res = CliRunner().invoke(app, ["report", str(folder), "--html"])
    assert res.exit_code == 0 and (folder / "report.html").is_file(), res.output


def _browser() -> str:
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip(
        "no headless Chromium: install Debian's chromium-headless-shell "
        "(apt-get install chromium-headless-shell) to draw the HTML reports"
    )


@pytest.mark.parametrize("page", ["report.html", "magi/seed0/report.html"])
def test_the_page_as_a_browser_draws_it(sweep, tmp_path, page):
    browser = _browser()
    url = (sweep / page).as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", "--window-size=1366,900", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (900, 1366)
    ink = (pixels < 200).mean()  # the share of the screen that is not (near) white
    assert 0.01 < ink < 0.6, f"{page}: {ink:.3f} of the screen is drawn"
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    assert "<table>" in dom and "accuracy" in dom
    expected = "MAGI row" if page == "report.html" else "Table 2: consensus masks"
    assert expected in dom


def test_report_compares_explanation_metrics_and_refuses_unknown_ones(sweep):
    res = CliRunner().invoke(app, ["report", str(sweep), "--metrics", "accuracy,epg,pointing"])
    assert res.exit_code == 0, res.output
    report = json.loads((sweep / "report.json").read_text())
    (cmp,) = report["comparisons"]
    runs = {
        row: [json.loads((sweep / row / f"seed{s}" / "metrics.json").read_text()) for s in (0, 1)]
        for row in ("magi", "base")
    }
    diffs = [
        runs["magi"][s]["explanation"]["epg"] - runs["base"][s]["explanation"]["epg"]
        for s in (0, 1)
    ]
    assert cmp["epg"]["n"] == 2 and cmp["epg"]["mean"] == pytest.approx(sum(diffs) / 2)
    md = (sweep / "report.md").read_text()
    assert "## Explanations (test images with a true mask" in md and "epg_ratio" in md
    bad = CliRunner().invoke(app, ["report", str(sweep), "--metrics", "accuracy,epgg"])
    assert bad.exit_code == 2 and "'epgg'" in bad.output and "epg_ratio" in bad.output


def test_the_run_folder_reference_names_every_file_and_key_a_run_writes(sweep):
    """docs/reference/run-folder.md is generated from esx.glossary; a run's files and
    metrics.json keys must all be in it."""
    from fnmatch import fnmatch

    from esx.glossary import METRICS_JSON, RUN_FOLDER
    from esx.hookspecs import FAMILIES

    for folder in (sweep / "magi" / "seed0", sweep / "base" / "seed0"):
        for f in folder.iterdir():
            assert any(fnmatch(f.name, pattern) for pattern in RUN_FOLDER), f.name
        keys = json.loads((folder / "metrics.json").read_text())
        for key in keys:
            assert key in METRICS_JSON or (key in FAMILIES and "<family>" in METRICS_JSON), key
