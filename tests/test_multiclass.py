"""Multi-class and per-group metrics, against scikit-learn and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from esx.interfaces import DataInfo
from esx.metrics import classification, group_accuracy, multiclass, per_class_accuracy


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_multiclass_equals_sklearn_on_random_predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    probs = _softmax(rng.normal(size=(200, 4)) + 2 * np.eye(4)[labels])
    preds = probs.argmax(1)
    got = multiclass(labels, probs, preds)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(labels, preds))
    assert got["auc"] == pytest.approx(
        skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    )
    for name, fn in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        assert got[name] == pytest.approx(fn(labels, preds, average="macro", zero_division=0))


def test_multiclass_by_hand():
    # three classes; class 2 is never predicted, class 1 twice wrongly
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 1, 0])
    probs = np.eye(3)[preds] * 0.8 + 0.2 / 3
    got = multiclass(labels, probs, preds)
    assert got["accuracy"] == pytest.approx(3 / 6)
    # precision: class 0 1/2, class 1 2/4, class 2 0 (never predicted) -> macro 1/3
    assert got["precision"] == pytest.approx((1 / 2 + 2 / 4 + 0) / 3)
    # recall: class 0 1/2, class 1 2/2, class 2 0/2 -> macro 1/2
    assert got["recall"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    f1 = [2 * 0.5 * 0.5 / 1.0, 2 * 0.5 * 1 / 1.5, 0.0]
    assert got["f1"] == pytest.approx(sum(f1) / 3)
    assert per_class_accuracy(labels, preds, 3) == {
        "accuracy_class_0": 0.5,
        "accuracy_class_1": 1.0,
        "accuracy_class_2": 0.0,
    }


def test_multiclass_auc_skips_a_class_absent_from_the_labels():
    labels = np.array([0, 0, 1, 1])  # class 2 absent: its one-vs-rest AUC is undefined
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.5, 0.1]])
    got = multiclass(labels, probs, probs.argmax(1))
    auc0 = skm.roc_auc_score(labels == 0, probs[:, 0])
    auc1 = skm.roc_auc_score(labels == 1, probs[:, 1])
    assert got["auc"] == pytest.approx((auc0 + auc1) / 2)
    assert "accuracy_class_2" not in per_class_accuracy(labels, probs.argmax(1), 3)


def test_binary_metrics_unchanged_by_the_multiclass_path():
    labels = np.array([0, 1, 1, 0, 1])
    prob = np.array([0.2, 0.9, 0.4, 0.6, 0.8])
    preds = (prob > 0.5).astype(int)
    got = classification(labels, prob, preds)
    assert got["f1"] == pytest.approx(skm.f1_score(labels, preds))  # positive class only
    assert got["auc"] == pytest.approx(skm.roc_auc_score(labels, prob))


def test_group_accuracy_and_worst_group_by_hand():
    labels = np.array([0, 1, 2, 3, 4, 5])
    preds = np.array([0, 1, 0, 3, 0, 5])
    groups = {
        "a": np.array([1, 1, 0, 0, 0, 0], bool),  # 2 of 2
        "b": np.array([0, 0, 1, 1, 1, 0], bool),  # 1 of 3
        "c": np.array([0, 0, 0, 0, 0, 1], bool),  # 1 of 1
        "empty": np.zeros(6, bool),
    }
    got = group_accuracy(labels, preds, groups)
    assert got["accuracy"] == {"a": 1.0, "b": pytest.approx(1 / 3), "c": 1.0}
    assert got["size"] == {"a": 2, "b": 3, "c": 1}
    assert got["worst"] == "b" and got["worst_accuracy"] == pytest.approx(1 / 3)
    assert group_accuracy(labels, preds, {})["worst"] is None


def test_masks_for_decides_which_labels_are_explained():
    label = torch.tensor([0, 1, 2, 0])
    info = DataInfo("d", False, 1, 3, (8, 8), 1, True)
    assert info.explained(label).tolist() == [False, True, True, False]
    every = DataInfo("d", False, 1, 3, (8, 8), 1, True, masks_for="all")
    assert every.explained(label).tolist() == [True] * 4
