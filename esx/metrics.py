"""Classification, per-group and explanation metrics.

Binary tasks (positive class = 1) report accuracy, ROC AUC and the positive
class's precision, recall and F1; tasks of more classes report the same keys
macro-averaged over the classes (:func:`multiclass`), so checkpoint selection
and ``esx report`` read both alike. Every task also reports each class's
accuracy and, per named group of test images, the group's accuracy and the
worst group's (:func:`group_accuracy`).

Areas under curves come from scikit-learn (``roc_auc_score``,
``average_precision_score``), as do the macro precision, recall and F1; the
localisation metrics are computed here, in torch, and the tests check them
against Quantus and hand-made maps.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score
from torch import Tensor


def _div(a: float, b: float) -> float:
    return float(a / b) if b > 0 else 0.0


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (scikit-learn); NaN when only one class is present."""
    labels = np.asarray(labels).astype(int)
    if labels.min(initial=0) == labels.max(initial=0):
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=float)))


def classification(labels: np.ndarray, probs: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    """Accuracy, AUC, precision, recall and F1 of the positive class.

    Precision, recall and F1 are 0 when undefined (scikit-learn's
    ``zero_division=0``).
    """
    labels, preds = np.asarray(labels).astype(int), np.asarray(preds).astype(int)
    tp = int(((preds == 1) & (labels == 1)).sum())
    fp = int(((preds == 1) & (labels == 0)).sum())
    fn = int(((preds == 0) & (labels == 1)).sum())
    precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
    return {
        "accuracy": float((preds == labels).mean()) if len(labels) else 0.0,
        "auc": roc_auc(labels, probs),
        "precision": precision,
        "recall": recall,
        "f1": _div(2 * tp, 2 * tp + fp + fn),
    }


def multiclass(labels: np.ndarray, probs: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-averaged AUC, precision, recall and F1 of a K-class task.

    Args:
        labels: ``(N,)`` class indices in ``0..K-1``.
        probs: ``(N, K)`` class probabilities (rows sum to 1).
        preds: ``(N,)`` predicted classes.

    AUC is one-vs-rest per class, averaged over the classes present in ``labels``
    with at least one image outside them (scikit-learn's ``multi_class="ovr"``,
    ``average="macro"`` when every class is present; NaN when no class qualifies).
    Precision, recall and F1 are scikit-learn's macro averages over all K classes,
    0 where undefined (``zero_division=0``).
    """
    labels, preds = np.asarray(labels).astype(int), np.asarray(preds).astype(int)
    probs = np.asarray(probs, dtype=float)
    k = probs.shape[1]
    aucs = [
        roc_auc_score(labels == c, probs[:, c])
        for c in range(k)
        if 0 < int((labels == c).sum()) < len(labels)
    ]
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, preds, labels=list(range(k)), average="macro", zero_division=0
    )
    return {
        "accuracy": float((preds == labels).mean()) if len(labels) else 0.0,
        "auc": float(np.mean(aucs)) if aucs else float("nan"),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


def per_class_accuracy(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> dict[str, float]:
    """``accuracy_class_<k>``: the share of class k's images predicted as k (its recall),
    for each class present in ``labels``."""
    labels, preds = np.asarray(labels).astype(int), np.asarray(preds).astype(int)
    return {
        f"accuracy_class_{c}": float((preds[labels == c] == c).mean())
        for c in range(num_classes)
        if (labels == c).any()
    }


def group_accuracy(
    labels: np.ndarray, preds: np.ndarray, groups: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Each named group's accuracy and the worst group's.

    Args:
        labels, preds: ``(N,)`` classes of the images.
        groups: group name → ``(N,)`` bool membership; empty groups are left out.

    Returns:
        ``{"accuracy": {name: acc}, "size": {name: n}, "worst": name, "worst_accuracy":
        acc}`` (``worst`` None when no group has an image). Ties go to the group named
        first.
    """
    labels, preds = np.asarray(labels).astype(int), np.asarray(preds).astype(int)
    acc, size = {}, {}
    for name, member in groups.items():
        member = np.asarray(member, dtype=bool)
        if member.any():
            acc[name] = float((preds[member] == labels[member]).mean())
            size[name] = int(member.sum())
    worst = min(acc, key=acc.__getitem__) if acc else None
    return {
        "accuracy": acc,
        "size": size,
        "worst": worst,
        "worst_accuracy": acc[worst] if worst is not None else None,
    }


def map_overlap(maps: Tensor, truth: Tensor, threshold: float) -> Tensor:
    """Per-image IoU, precision and recall of thresholded maps against true masks.

    Args:
        maps: ``(N, h, w)`` in [0, 1]; upsampled bilinearly to the truth's size.
        truth: ``(N, H, W)`` in {0, 1}.
        threshold: a pixel is "explained" where the map is ``> threshold``.

    Returns:
        ``(N, 3)``: IoU, precision, recall (precision 0 for an empty prediction).
    """
    if maps.shape[-2:] != truth.shape[-2:]:
        maps = F.interpolate(
            maps[:, None], size=truth.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0]
    pred = maps > threshold
    gt = truth > 0.5
    inter = (pred & gt).flatten(1).sum(1).float()
    union = (pred | gt).flatten(1).sum(1).float()
    npred = pred.flatten(1).sum(1).float()
    ngt = gt.flatten(1).sum(1).float()
    safe = lambda a, b: torch.where(b > 0, a / b.clamp_min(1), torch.zeros_like(a))  # noqa: E731
    return torch.stack([safe(inter, union), safe(inter, npred), safe(inter, ngt)], dim=1)


#: per-image localisation metrics, in the column order :func:`localisation` returns
LOCALISATION = ("epg", "pointing", "pr_auc", "iou", "precision", "recall", "area")


def _disk(radius: float) -> Tensor:
    r = math.floor(radius)
    yy, xx = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    return ((yy**2 + xx**2) <= radius**2).float()


def localisation(maps: Tensor, truth: Tensor, threshold: float, tolerance: float = 0) -> Tensor:
    """Per-image localisation of maps against true masks, at the masks' resolution.

    Args:
        maps: ``(N, h, w)`` attributions; upsampled bilinearly to the truth's size. Only
            their positive part counts for ``epg``; ``iou``/``precision``/``recall``
            threshold them as they are (esx's explainers return maps in [0, 1]).
        truth: ``(N, H, W)`` in {0, 1}, each with at least one pixel set.
        threshold: a pixel is "explained" where the map is ``> threshold``.
        tolerance: the pointing game counts a hit when a maximum of the map lies within
            this many pixels (Euclidean) of the mask.

    Returns:
        ``(N, 7)`` in the order of :data:`LOCALISATION`: energy-based pointing game (the
        share of positive attribution inside the mask; 0 for an all-zero map), pointing
        game (1 when any pixel at the map's maximum is inside the tolerance-dilated mask;
        a constant map points nowhere, 0, where Quantus counts a hit),
        area under the precision-recall curve of map vs mask (average precision,
        threshold-free), IoU, precision and recall of the thresholded map, and the mask's
        share of the image.
    """
    if maps.shape[-2:] != truth.shape[-2:]:
        maps = F.interpolate(
            maps[:, None].float(), size=truth.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0]
    maps, gt = maps.float(), truth > 0.5
    flat, inside = maps.flatten(1), gt.flatten(1)
    pos = flat.clamp_min(0)
    total = pos.sum(1)
    epg = torch.where(total > 0, (pos * inside).sum(1) / total.clamp_min(1e-12), 0.0)
    near = gt
    if tolerance > 0:
        disk = _disk(tolerance).to(maps.device)[None, None]
        pad = disk.shape[-1] // 2
        near = F.conv2d(gt[:, None].float(), disk, padding=pad)[:, 0] > 0
    peak = flat == flat.amax(1, keepdim=True)
    pointing = (peak & near.flatten(1)).any(1) & (flat.amax(1) > flat.amin(1))
    pointing = pointing.float()
    pr_auc = torch.tensor(
        [
            average_precision_score(g, m) if g.any() else float("nan")
            for g, m in zip(inside.cpu().numpy(), flat.cpu().double().numpy(), strict=True)
        ],
        dtype=torch.float32,
        device=maps.device,
    )
    overlap = map_overlap(maps, truth, threshold)
    area = inside.float().mean(1)
    return torch.stack([epg, pointing, pr_auc, *overlap.unbind(1), area], dim=1)


def summarise_localisation(per_image: Tensor) -> dict[str, float]:
    """Means over images of :func:`localisation`'s columns, the size-normalised EPG
    (``epg_ratio``: EPG over the mask's share of the image, 1 = no better than a uniform
    map; the plain EPG favours large masks), and EPG and the pointing game for the
    smaller and the larger half of the masks (split at the median area)."""
    cols = dict(zip(LOCALISATION, per_image.unbind(1), strict=True))
    out = {k: float(v.mean()) for k, v in cols.items() if k != "area"}
    out["epg_ratio"] = float((cols["epg"] / cols["area"].clamp_min(1e-12)).mean())
    median = cols["area"].median()
    for name, rows in (("small", cols["area"] <= median), ("large", cols["area"] > median)):
        if rows.any():
            out[f"epg_{name}"] = float(cols["epg"][rows].mean())
            out[f"pointing_{name}"] = float(cols["pointing"][rows].mean())
    out["mask_area"] = float(cols["area"].mean())
    return out
