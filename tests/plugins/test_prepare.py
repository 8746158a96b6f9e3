"""`esx data prepare lidc|msd-pancreas` on tiny fixtures written by the tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from esx.cli import build_app
from esx_prepare import lidc

from fixtures.raw_data import write_lidc, write_lidc_case, write_msd

skimage_draw = pytest.importorskip("skimage.draw")

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _invoke(*args: str):
    return CliRunner().invoke(build_app(), list(args), env={"COLUMNS": "200"})


def _prepare_lidc(root: Path, out: Path, *extra: str, crop: str = "32", sizes: str = "2,2,2"):
    return _invoke(
        "data", "prepare", "lidc", "--root", str(root), "--out", str(out),
        "--crop", crop, "--sizes", sizes, *extra,
    )  # fmt: skip


def _rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "samples.csv").open()))


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)) > 127


def _oracle(points: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """skimage's polygon fill, and the contour's own pixels (x = column, y = row)."""
    inside = np.zeros(shape, bool)
    rr, cc = skimage_draw.polygon(points[:, 1], points[:, 0], shape)
    inside[rr, cc] = True
    edge = np.zeros(shape, bool)
    edge[points[:, 1], points[:, 0]] = True
    return inside, edge


def test_xml_contours_match_skimage_polygon_fill_with_holes(tmp_path):
    case = write_lidc(tmp_path, patients=1)[0]
    uid, readers, _ = lidc.parse_xml(case.xml)
    series = lidc.read_series(case.folder)
    assert uid == series.uid and len(readers) == 4
    shape = series.volume.shape[1:]
    holes = 0
    for nodules in readers:
        for rois in nodules:
            got = lidc.roi_masks(rois, series, case.xml)
            want: dict[int, np.ndarray] = {}
            for roi in rois:  # the oracle: inclusions filled, then FALSE ones carved
                k = series.sop[roi.sop]
                inside, edge = _oracle(roi.points, shape)
                want.setdefault(k, np.zeros(shape, bool))
                if roi.inclusion:
                    want[k] |= inside & ~edge
            for roi in rois:
                if not roi.inclusion:
                    holes += 1
                    k = series.sop[roi.sop]
                    inside, edge = _oracle(roi.points, shape)
                    want[k] &= ~(inside | edge)
            assert sorted(got) == sorted(want)
            for k in want:
                np.testing.assert_array_equal(got[k], want[k])
    assert holes == 1
    # The hole is really there: reader 2's nodule A has an empty centre on the hole's slice.
    mark = case.readers[2][0]
    k = (mark.z0 + mark.z1 + 1) // 2
    mask = lidc.roi_masks(readers[2][0], series, case.xml)[k]
    assert not mask[mark.center] and mask[mark.center[0], mark.center[1] + mark.radius - 1]
    # The < 3 mm mark (one point) is not a nodule.
    assert [len(n) for n in readers] == [2, 1, 1, 1]


def test_inclusion_is_compared_as_a_string(tmp_path):
    case = write_lidc(tmp_path, patients=1)[0]
    _, readers, _ = lidc.parse_xml(case.xml)
    flags = [roi.inclusion for rois in readers[2] for roi in rois]
    assert flags.count(False) == 1 and flags.count(True) == len(flags) - 1


def _lidc_root(tmp_path: Path) -> Path:
    root = tmp_path / "LIDC-IDRI"
    write_lidc(root, patients=3, size=64)
    bad = write_lidc_case(root, "LIDC-IDRI-0004", [[]], size=32, slices=4, seed=4)
    (bad.folder / "1-002.dcm").write_bytes(b"this is not a DICOM file")
    empty = write_lidc_case(
        root, "LIDC-IDRI-0005", [[]], size=32, slices=4, seed=5, tiny_mark=False
    )
    text = empty.xml.read_text()
    start, end = text.index("<ns0:readingSession"), text.rindex("</ns0:readingSession>")
    empty.xml.write_text(text[:start] + text[end + len("</ns0:readingSession>") :])
    return root


def test_prepare_lidc_end_to_end(tmp_path):
    root, out = _lidc_root(tmp_path), tmp_path / "prepared"
    res = _prepare_lidc(root, out, "--boundary-noise", "0")
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    assert "prepared 3 case(s)" in res.output and "skipped 2" in res.output
    assert "1-002.dcm: not a readable CT slice" in res.output
    assert "069.xml: no readingSession element" in res.output
    rows = _rows(out)
    for split in ("train", "val", "test"):
        labels = sorted(r["label"] for r in rows if r["split"] == split)
        assert labels == ["0", "1"]
    # Every nodule of every patient was prepared: A by 3 readers, B by 2.
    for p in (1, 2, 3):
        base = f"LIDC_IDRI_000{p}_01_01_2000_CT_3000_series"
        assert len(list((out / "masks").glob(f"{base}_n0_*.png"))) == 3
        assert len(list((out / "masks").glob(f"{base}_n1_*.png"))) == 2
        masks = [_png(m) for m in sorted((out / "masks").glob(f"{base}_n0_*.png"))]
        truth = _png(out / "truth" / f"{base}_n0.png")
        np.testing.assert_array_equal(truth, np.mean(masks, axis=0) >= 0.5)  # clean consensus
        assert not masks[2][16, 16] and masks[0][16, 16]  # reader 2's hole, carved
        assert not _png(out / "truth" / f"{base}_neg0.png").any()
        image = np.asarray(Image.open(out / "images" / f"{base}_n0.png"))
        assert image.shape == (32, 32) and image[16, 16] > image[0, 0]  # nodule brighter
    meta = json.loads((out / "prepare.json").read_text())
    assert meta["source"] == "LIDC-IDRI" and len(meta["skipped"]) == 2
    # A patient's images never span two splits.
    split_of: dict[str, set[str]] = {}
    for r in _rows(out):
        split_of.setdefault(r["id"][:14], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of.values())

    again = _prepare_lidc(root, out, "--boundary-noise", "0")
    assert again.exit_code == 0 and "reused 3 already prepared" in again.output
    assert _rows(out) == rows
    other = _prepare_lidc(root, out, "--boundary-noise", "0", crop="48")
    assert other.exit_code == 2 and "prepared before with other options (crop)" in other.output


def test_boundary_noise_changes_masks_not_truth(tmp_path):
    root = tmp_path / "LIDC-IDRI"
    write_lidc(root, patients=3)
    outs = {}
    for noise in ("0", "3"):
        out = tmp_path / f"out{noise}"
        res = _prepare_lidc(root, out, "--boundary-noise", noise)
        assert res.exit_code == 0, res.output
        outs[noise] = out
    name = "LIDC_IDRI_0001_01_01_2000_CT_3000_series_n0"
    np.testing.assert_array_equal(
        _png(outs["0"] / "truth" / f"{name}.png"), _png(outs["3"] / "truth" / f"{name}.png")
    )
    assert (
        _png(outs["0"] / "masks" / f"{name}_0.png") != _png(outs["3"] / "masks" / f"{name}_0.png")
    ).any()


def test_prepare_msd_pancreas(tmp_path):
    root, out = tmp_path / "Task07_Pancreas", tmp_path / "prepared"
    write_msd(root, cases=3)
    (root / "imagesTr" / "pancreas_009.nii.gz").write_bytes(b"")
    (root / "labelsTr" / "pancreas_009.nii.gz").write_bytes(b"")
    (root / "imagesTr" / "._pancreas_001.nii.gz").write_bytes(b"macOS junk")
    res = _invoke(
        "data",
        "prepare",
        "msd-pancreas",
        "--root",
        str(root),
        "--out",
        str(out),
        "--crop",
        "32",
        "--sizes",
        "2,2,rest",
        "--annotators",
        "accurate:1,conservative:1,aggressive:1",
    )
    assert res.exit_code == 0, res.output
    assert "pancreas_009.nii.gz: not a readable NIfTI file" in res.output
    assert "prepared 3 case(s)" in res.output and "skipped 1" in res.output
    assert "._pancreas" not in res.output
    rows = _rows(out)
    assert sorted(r["label"] for r in rows) == ["0", "0", "0", "1", "1", "1"]
    for c in (1, 2, 3):
        truth = _png(out / "truth" / f"pancreas_00{c}_pos.png")
        assert truth.any()
        accurate, conservative, aggressive = (
            _png(out / "masks" / f"pancreas_00{c}_pos_{k}.png") for k in range(3)
        )
        assert conservative.sum() < truth.sum() < aggressive.sum()
        assert (accurate & truth).sum() > 0.5 * truth.sum()


def test_prepare_errors_are_one_clear_message(tmp_path):
    cases = [
        (["lidc", "--root", str(tmp_path / "nowhere")], "no such folder"),
        (["lidc", "--root", str(tmp_path)], "no case found; point it at the LIDC-IDRI download"),
        (["lidc", "--root", str(tmp_path), "--sizes", "1,2"], "give three sizes"),
        (["lidc", "--root", str(tmp_path), "--crop", "2"], "--crop"),
        (["msd-pancreas", "--root", str(tmp_path)], "no imagesTr/ folder"),
        (
            ["msd-pancreas", "--root", str(tmp_path), "--annotators", "sloppy:1"],
            "'sloppy:1' is not kind",
        ),
    ]
    for args, message in cases:
        res = _invoke("data", "prepare", *args, "--out", str(tmp_path / "o"))
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output and "Traceback" not in res.output, (args, res.output)


def test_magi_recipe_trains_on_prepared_data_and_says_real(tmp_path):
    root, out = tmp_path / "LIDC-IDRI", tmp_path / "prepared"
    write_lidc(root, patients=3)
    assert _prepare_lidc(root, out).exit_code == 0
    run = tmp_path / "run"
    res = _invoke(
        "run",
        str(RECIPES / "magi_lidc.yaml"),
        "--out",
        str(run),
        "--set",
        f"data.params.root={out}",
        "--set",
        "train.epochs=1",
        "--set",
        "aggregator.params.pretrain_steps=2",
    )
    assert res.exit_code == 0, res.output
    assert "SYNTHETIC" not in res.output and "DATA NOT FOUND" not in res.output
    data = json.loads((run / "metrics.json").read_text())["data"]
    assert data["synthetic"] is False and data["prepared_from"] == "LIDC-IDRI"
    assert data["splits"] == {"train": 2, "val": 2, "test": 2}


def test_missing_data_falls_back_loudly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/lidc here
    run = tmp_path / "run"
    res = _invoke(
        "run",
        str(RECIPES / "magi_lidc.yaml"),
        "--out",
        str(run),
        "--set",
        "train.epochs=1",
        "--set",
        "aggregator.params.pretrain_steps=2",
        "--set",
        "data.fallback.params.n_train=8",
        "--set",
        "data.fallback.params.n_val=8",
        "--set",
        "data.fallback.params.n_test=8",
    )
    assert res.exit_code == 0, res.output
    assert "DATA NOT FOUND" in res.output and "no samples.csv in data/lidc" in res.output
    assert "SYNTHETIC" in res.output
    # said once, as the fallback starts to be built (which can take a minute), not after
    assert res.output.count("DATA NOT FOUND") == 1
    assert "Building the recipe's data.fallback instead: lidc_readers" in res.output
    assert res.output.index("DATA NOT FOUND") < res.output.index("SYNTHETIC")
    assert "DATA NOT FOUND" in (run / "run.log").read_text()
    data = json.loads((run / "metrics.json").read_text())["data"]
    assert data["synthetic"] is True and data["fallback_from"]["wanted"] == "folder"
    assert "name: lidc_readers" in (run / "recipe.yaml").read_text()  # what ran, for --resume
    # The fallback is LIDC-IDRI's real readers on synthetic images, and says so.
    assert data["annotations"] == "LIDC-IDRI readers" and data["images"] == "synthetic"
    assert "the annotations are real: LIDC-IDRI readers" in " ".join(res.output.split())
    # Without a fallback, missing data is an error, not a silent substitute.
    res = _invoke(
        "run",
        str(RECIPES / "magi_lidc.yaml"),
        "--out",
        str(tmp_path / "r2"),
        "--set",
        "data.fallback=null",
    )
    assert res.exit_code == 2 and "no samples.csv in data/lidc" in res.output
    # A location the user typed is never replaced by synthetic data: it fails, naming the path.
    res = _invoke(
        "run",
        str(RECIPES / "magi_lidc.yaml"),
        "--out",
        str(tmp_path / "r3"),
        "--set",
        "data.params.root=/a/typo",
    )
    assert res.exit_code == 2 and "no samples.csv in /a/typo" in res.output
    assert "DATA NOT FOUND" not in res.output and not (tmp_path / "r3").exists()


def test_new_sizes_resplit_without_repreparing(tmp_path):
    root, out = tmp_path / "LIDC-IDRI", tmp_path / "prepared"
    write_lidc(root, patients=3)
    assert _prepare_lidc(root, out).exit_code == 0
    res = _prepare_lidc(root, out, sizes="2,2,rest")
    assert res.exit_code == 0 and "reused 3 already prepared" in res.output, res.output
    assert json.loads((out / "prepare.json").read_text())["sizes"] == [2, 2, None]


def test_prepared_ids_are_safe_names_even_from_odd_file_names(tmp_path):
    """The folder dataset refuses ids that are not plain names, so preparation writes none."""
    from esx.data import SAFE_ID

    root, out = tmp_path / "Task07_Pancreas", tmp_path / "prepared"
    write_msd(root, cases=4)
    for sub in ("imagesTr", "labelsTr"):  # a case whose file name holds a space, '*' and '..'
        (root / sub / "pancreas_002.nii.gz").rename(root / sub / "odd case*..2.nii.gz")
    res = _invoke(
        "data", "prepare", "msd-pancreas", "--root", str(root), "--out", str(out),
        "--crop", "32", "--sizes", "2,2,rest",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    ids = [r["id"] for r in _rows(out)]
    assert ids and all(SAFE_ID.fullmatch(i) for i in ids), ids
    assert "odd_case_..2_pos" in ids
    lidc_out = tmp_path / "lidc_prepared"
    write_lidc(tmp_path / "lidc", patients=3)
    res = _prepare_lidc(tmp_path / "lidc", lidc_out, sizes="2,2,rest")
    assert res.exit_code == 0, res.output
    assert all(SAFE_ID.fullmatch(r["id"]) for r in _rows(lidc_out))
