"""Classification and explanation metrics (binary; positive class = 1).

Areas under curves come from scikit-learn (``roc_auc_score``,
``average_precision_score``); the localisation metrics are computed here, in
torch, and the tests check them against Quantus and hand-made maps.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, roc_auc_score
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
