"""STAPLE (Warfield et al., IEEE TMI 2004), batched on the device, as a soft target.

Each image's valid masks D_j get a sensitivity p_j and a specificity q_j,
estimated on that image alone (so no annotator identity across images is
needed), and the target is the posterior W that a pixel is foreground:

- start: W = the mean of the valid masks; the prior g = the mean of that W
  over the image (fixed);
- M-step: p_j = Σ W·D_j / Σ W,  q_j = Σ (1−W)(1−D_j) / Σ (1−W);
- E-step: W = g·Π_j p_j^D_j (1−p_j)^(1−D_j) / (that + (1−g)·Π_j q_j^(1−D_j) (1−q_j)^D_j);
- an image stops when no p_j or q_j moved more than ``tolerance`` since its
  previous iteration (never after the first), or after ``max_iterations``.

This is the algorithm, start and stopping rule of ITK's ``STAPLEImageFilter``
(SimpleITK), which the tests use as the oracle (equal to 1e-9), run for all
images of a batch at once in float64 rather than one image at a time on the
CPU: on the noise curve's batches of 256 digits it is 8 times faster on one
core (``benchmarks/staple.py`` prints the ratio), and it needs no SimpleITK.
Guards where ITK divides by zero: an image whose valid masks are all empty
(or that has none) gets an all-zero target, and a pixel whose posterior is
0/0 gets the mean of the masks there.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from esx.errors import DataError
from esx.interfaces import Aggregator, AggregatorOutput, BuildContext, Params
from esx.types import Batch, Targets

#: masks per image the bit patterns can hold
MAX_ANNOTATORS = 62


class StapleParams(Params):
    max_iterations: int = Field(100, ge=1, description="STAPLE's iteration limit")
    tolerance: float = Field(
        1e-7,
        gt=0,
        description="an image has converged when no sensitivity or specificity moved more "
        "than this in an iteration (ITK's 1e-14 on the squared change)",
    )
    hard: bool = Field(False, description="threshold the probability at 0.5")


class Staple(Aggregator):
    """``(B, 1, H, W)`` STAPLE probability of the valid masks."""

    Params = StapleParams

    def __init__(self, params: StapleParams, context: BuildContext) -> None:
        super().__init__(params, context)

    def forward(self, batch: Batch) -> AggregatorOutput:
        t = staple(batch.masks, batch.mask_valid, self.params.max_iterations, self.params.tolerance)
        t = t.to(batch.masks.dtype)[:, None]
        if self.params.hard:
            t = (t >= 0.5).to(t.dtype)
        weights = batch.annotated.to(t.dtype)[:, None]
        return AggregatorOutput(Targets(masks=t, weights=weights))


@torch.no_grad()
def staple(
    masks: Tensor, valid: Tensor, max_iterations: int = 100, tolerance: float = 1e-7
) -> Tensor:
    """STAPLE posterior ``(B, H, W)`` of ``masks (B, U, H, W)`` (binary) where ``valid (B, U)``.

    Pixels that the same masks mark share their posterior, so the iterations run on the
    batch's distinct patterns of marks (at most 2^U, usually a handful), each weighted by
    how many of an image's pixels show it: the sums of the M-step are the same sums,
    grouped.
    """
    b, u, h, w = masks.shape
    if u > MAX_ANNOTATORS:
        raise DataError(
            f"aggregator 'staple' supports up to {MAX_ANNOTATORS} masks per image, got {u}"
        )
    marks = (masks.reshape(b, u, h * w) > 0.5) & valid[..., None]
    codes = (marks.long() << torch.arange(u, device=masks.device)[:, None]).sum(1)  # (B, N)
    patterns, inverse = torch.unique(codes, return_inverse=True)  # (P,), (B, N)
    count = torch.zeros(b, len(patterns), dtype=torch.float64, device=masks.device)
    count.scatter_add_(1, inverse, torch.ones_like(inverse, dtype=torch.float64))
    d = ((patterns[:, None] >> torch.arange(u, device=masks.device)) & 1).double().T  # (U, P)
    d = d[None].expand(b, -1, -1)
    v = valid[..., None].double()
    mean = _mean(d, v)  # (B, P)
    post = mean
    prior = (count * post).sum(-1, keepdim=True) / (h * w)
    annotated = (marks.flatten(1)).any(1)
    done = ~annotated  # no foreground: zero target, no iterations
    last = None
    for _ in range(max_iterations):
        p, q = _rates(post, d, count)
        new = _posterior(prior, p, q, d, v)
        new = torch.where(new.isnan(), mean, new)
        post = torch.where(done[:, None], post, new)
        rates = torch.cat([p, q], 1).masked_fill(~valid.repeat(1, 2), 0.0)
        if last is not None:
            done = done | ((rates - last).abs().amax(1) <= tolerance)
        last = rates
        if bool(done.all()):
            break
    post = post * annotated[:, None]
    return post.gather(1, inverse).reshape(b, h, w)


def _mean(d: Tensor, v: Tensor) -> Tensor:
    """The mean of the valid masks on each pattern ``(B, P)``."""
    return (d * v).sum(1) / v.sum(1).clamp_min(1)


def _rates(post: Tensor, d: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """Sensitivities and specificities ``(B, U)`` of every mask under the posterior."""
    fg, bg = (post * count)[:, None], ((1 - post) * count)[:, None]
    p = (fg * d).sum(-1) / fg.sum(-1)
    q = (bg * (1 - d)).sum(-1) / bg.sum(-1)
    # 0/0 only where the posterior is all 1 or all 0: the masks agree with it there
    return p.nan_to_num(1.0), q.nan_to_num(1.0)


def _posterior(prior: Tensor, p: Tensor, q: Tensor, d: Tensor, v: Tensor) -> Tensor:
    """The E-step on each pattern ``(B, P)``; masks with ``v`` 0 are left out of both
    products."""
    p, q = p[..., None], q[..., None]
    on = torch.where(v > 0, torch.where(d > 0, p, 1 - p), 1.0).prod(1)
    off = torch.where(v > 0, torch.where(d > 0, 1 - q, q), 1.0).prod(1)
    return prior * on / (prior * on + (1 - prior) * off)
