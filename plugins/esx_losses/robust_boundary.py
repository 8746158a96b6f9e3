"""The robust boundary term shared by RES-G and RES-L (Gao et al., KDD 2022).

``L_B = ReLU(mean over annotated pixels of |tanh(k (E - a)) - Y| - η)`` with
Y ∈ {-1, 0, +1} (negative / unknown / positive; unknown pixels are ignored) and
a batch-level threshold ``a`` that best separates positive from negative
pixels: the candidate maximising (share of negatives below a) + (share of
positives at or above a), candidates being the map values at negative pixels
(+1e-4) and at positive pixels.

The public code searches ``a`` with an O(n²) Python double loop; here a sort
and two ``searchsorted`` calls do it in O(n log n) on the device, with the
same candidates, the same score and the same tie-break (the first best
candidate, negatives' candidates first).
"""

from __future__ import annotations

import torch
from torch import Tensor

from esx.interfaces import weighted_mean

CANDIDATE_OFFSET = 1e-4


def threshold_scores(values: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Candidates and their separation scores for pixels ``values`` with labels ±1."""
    neg, pos = values[labels < 0], values[labels > 0]
    candidates = torch.cat([neg + CANDIDATE_OFFSET, pos])
    neg_sorted, pos_sorted = neg.sort().values, pos.sort().values
    below = torch.searchsorted(neg_sorted, candidates, right=False).to(values.dtype)
    at_or_above = pos.numel() - torch.searchsorted(pos_sorted, candidates, right=False)
    score = torch.zeros_like(candidates)
    if neg.numel():
        score = score + below / neg.numel()
    if pos.numel():
        score = score + at_or_above.to(values.dtype) / pos.numel()
    return candidates, score


@torch.no_grad()
def best_threshold(values: Tensor, labels: Tensor) -> Tensor:
    """The separating threshold ``a`` (a 0-d tensor); 0.5 when no pixel is labelled."""
    values, labels = values.flatten().detach(), labels.flatten()
    if not (labels != 0).any():
        return torch.tensor(0.5, device=values.device)
    candidates, score = threshold_scores(values, labels)
    return candidates[score.argmax()]


def boundary_loss(
    maps: Tensor, labels: Tensor, weights: Tensor, eta: float, sharpness: float
) -> Tensor:
    """``L_B`` for maps ``(N, h, w)`` against labels ``(N, K, h, w)`` in {-1, 0, +1}."""
    used = labels[weights > 0]
    a = best_threshold(maps[:, None].expand_as(labels)[weights > 0], used)
    per_pixel = (torch.tanh(sharpness * (maps[:, None] - a)) - labels).abs()
    return torch.relu(weighted_mean(per_pixel, weights, labels != 0) - eta)


def signed_labels(masks: Tensor, annotated: Tensor | None) -> Tensor:
    """Binary-ish target masks → Y ∈ {-1, 0, +1} (+1 where ≥ 0.5, 0 where unannotated)."""
    y = torch.where(masks >= 0.5, 1.0, -1.0).to(masks.dtype)
    return y if annotated is None else y * annotated.to(masks.dtype)
