"""Exact, batched alignment of observed masks to annotator slots.

For each image, observed mask v must be assigned to a distinct generated
annotator u so that the summed cost C[v, u] is minimal (the linear assignment
the MAGI paper solves with the Hungarian algorithm). With U ≤ 8 annotators
every permutation of U can be scored at once on the device: U! ≤ 40,320
candidates, one gather and one sum, no Python loop over images and no
host round-trip. Missing observations (``valid`` False) contribute nothing,
so a permutation's first V valid rows give every injective assignment.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import torch
from torch import Tensor

MAX_ANNOTATORS = 8


@lru_cache(maxsize=8)
def _permutations(u: int) -> Tensor:
    return torch.tensor(list(itertools.permutations(range(u))), dtype=torch.long)


def align(cost: Tensor, valid: Tensor) -> Tensor:
    """Optimal assignment of observed slots to annotators.

    Args:
        cost: ``(B, V, U)`` cost of explaining observed mask v by annotator u,
            with V ≤ U.
        valid: ``(B, V)`` bool, False for missing observations.

    Returns:
        ``(B, V)`` long: the annotator assigned to each observed slot (also
        filled, arbitrarily but distinctly, for missing slots).
    """
    b, v, u = cost.shape
    if v > u:
        raise ValueError(f"more observed slots ({v}) than annotators ({u})")
    if u > MAX_ANNOTATORS:
        raise ValueError(f"exact alignment supports up to {MAX_ANNOTATORS} annotators, got {u}")
    perms = _permutations(u).to(cost.device)[:, :v]  # (P, V)
    with torch.no_grad():
        c = cost.detach() * valid[:, :, None].to(cost.dtype)
        # picked[b, p, j] = c[b, j, perms[p, j]]
        idx = perms.T[None].expand(b, v, -1)  # (B, V, P)
        picked = torch.gather(c, 2, idx)  # (B, V, P)
        best = picked.sum(dim=1).argmin(dim=1)  # (B,)
    return perms[best]
