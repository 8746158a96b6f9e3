"""Classification and explanation metrics (binary; positive class = 1).

Written with numpy/scipy only; the tests check them against scikit-learn.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import Tensor


def _div(a: float, b: float) -> float:
    return float(a / b) if b > 0 else 0.0


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney statistic (ties averaged).

    Returns NaN when only one class is present.
    """
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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
