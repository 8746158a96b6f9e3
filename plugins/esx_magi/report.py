"""Evaluation of the MAGI generator on a split (the paper's Table 2 and Fig. 4).

- ``generation``: consensus of the generated masks vs the true mask, beside
  the consensus of the observed noisy masks vs the true mask: MSE, BCE and
  SSIM per image, averaged over annotated positives with a true mask. Both
  consensus masks are binary votes at the input resolution; BCE clamps
  probabilities to [1e-3, 1 - 1e-3]; SSIM uses a Gaussian window (σ = 1.5,
  11 × 11), data range 1, K1 = 0.01, K2 = 0.03, averaged over the valid
  (uncropped) window positions — scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)``.
- ``annotators``: per slot, its learned weight, the mean area of its generated
  masks relative to the true mask, the simulated annotator its alignments
  mostly went to, and how often they did.
- ``imputation``: for annotations the dataset drew but hid as missing, the L1
  error of the generated mask of the slot standing for that annotator, beside
  the error of copying the observed consensus.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from esx.masks import vote
from esx.types import Table
from esx_magi.alignment import align

BCE_EPS = 1e-3


@dataclass
class Consensus:
    """One batch through the generator: the rows that count (annotated positives,
    with a true lesion where the data has truth), both consensus masks
    ``(B, 1, H, W)`` and what they came from."""

    rows: Tensor
    noisy: Tensor
    generated: Tensor
    generated_masks: Tensor  # (B, U, H, W) binary, at the input resolution
    probs: Tensor
    observed: Tensor


def consensus(magi: Any, batch: Any, threshold: float = 0.5) -> Consensus:
    """Generate for ``batch`` and vote the observed and the generated masks at ``threshold``."""
    probs, _, observed = magi.generate(batch)
    gen_bin = (magi.to_image(probs, batch) > 0.5).float()
    rows = batch.annotated & (batch.label > 0)
    if batch.truth is not None:
        rows &= batch.truth.flatten(1).amax(1) > 0
    return Consensus(
        rows,
        vote(batch.masks, batch.mask_valid, threshold),
        vote(gen_bin, torch.ones_like(batch.mask_valid), threshold),
        gen_bin,
        probs,
        observed,
    )


def load_run(run: Path) -> tuple[Any, Any]:
    """A finished MAGI run's components (built on the CPU from its recipe.yaml, with the
    weights of ``best.safetensors``) and its generator, in eval mode."""
    from esx import outputs
    from esx.build import build
    from esx.errors import EsxError
    from esx.plugins import registry
    from esx.recipe import load_recipe

    recipe = load_recipe(run / "recipe.yaml", registry())
    if recipe.aggregator.name != "magi":
        raise EsxError(
            f"{run}: aggregator {recipe.aggregator.name!r} generates no masks; "
            "this measure needs a MAGI run"
        )
    c = build(recipe, torch.device("cpu"))
    c.load(outputs.load_state(run / "best.safetensors"))
    return c, c.aggregator.eval()


def tables(report: dict[str, Any]) -> list[Table]:
    """The report as tables: Table 2, the annotator slots, the imputation of hidden masks."""
    out = []
    gen = report.get("generation")
    if gen:
        out.append(
            Table(
                "Table 2: consensus masks vs the true mask (test)",
                ["masks", *SCORES],
                [[side, *(gen[side][k] for k in SCORES)] for side in ("noisy", "generated")],
                note="Lower MSE and BCE and higher SSIM mean closer to the true mask. 'generated' "
                "is the vote of MAGI's generated masks, 'noisy' that of the observed ones; when "
                "the annotators are biased the generated vote can be the worse one "
                "(docs/explanation/magi.md discusses it).",
            )
        )
    slots = report.get("annotators")
    if slots:
        cols = list(slots[0])
        out.append(
            Table(
                "MAGI annotator slots",
                cols,
                [[s[c] for c in cols] for s in slots],
                note="Per generator slot: its learned weight (used by targets: weighted only), the "
                "area of its masks relative to the true mask, and the annotator its alignments "
                "mostly went to, where the data knows it.",
                summary=False,
            )
        )
    imp = report.get("imputation")
    if imp:
        cols = list(imp)
        out.append(
            Table(
                "MAGI imputation of hidden annotations",
                cols,
                [[imp[c] for c in cols]],
                note="Mean L1 error on annotations the data hid as missing: the generated mask of "
                "the slot standing for that annotator, beside copying the observed consensus "
                "(lower is better).",
            )
        )
    return out


def _gauss_window(sigma: float = 1.5, radius: int = 5) -> Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """Per-image SSIM of ``(N, 1, H, W)`` images in [0, 1] (see module docstring)."""
    w = _gauss_window().to(a.device)
    a, b = a.double(), b.double()
    mu_a, mu_b = F.conv2d(a, w), F.conv2d(b, w)
    saa = F.conv2d(a * a, w) - mu_a**2
    sbb = F.conv2d(b * b, w) - mu_b**2
    sab = F.conv2d(a * b, w) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return s.mean(dim=(1, 2, 3)).float()


SCORES = ("mse", "bce", "ssim")


def scores(pred: Tensor, truth: Tensor) -> dict[str, Tensor]:
    p = pred.clamp(BCE_EPS, 1 - BCE_EPS)
    return {
        "mse": (pred - truth).pow(2).mean(dim=(1, 2, 3)),
        "bce": F.binary_cross_entropy(p, truth, reduction="none").mean(dim=(1, 2, 3)),
        "ssim": ssim(pred, truth),
    }


@torch.no_grad()
def evaluate(magi: Any, loader: Any, device: torch.device) -> dict[str, Any]:
    magi.eval()
    u = magi.omega.shape[0]
    sums: dict[str, dict[str, float]] = {"noisy": {}, "generated": {}}
    n_images = 0
    counts = torch.zeros(u, u, dtype=torch.long)  # slot x true annotator
    area = torch.zeros(u)
    cached = []
    for batch in loader:
        batch = batch.to(device)
        pair = consensus(magi, batch)
        rows, noisy, generated, gen_bin = (
            pair.rows,
            pair.noisy,
            pair.generated,
            pair.generated_masks,
        )
        if not rows.any():
            continue
        assign = align(magi.cost(pair.observed, pair.probs), batch.mask_valid)
        if batch.truth is not None:
            truth = batch.truth[rows]
            for name, pred in (("noisy", noisy[rows]), ("generated", generated[rows])):
                for k, v in scores(pred, truth).items():
                    sums[name][k] = sums[name].get(k, 0.0) + float(v.sum())
            t_area = truth.flatten(1).sum(1).clamp_min(1)
            area += (gen_bin[rows].flatten(2).sum(2) / t_area[:, None]).sum(0).cpu()
            n_images += int(rows.sum())
        annotator, hidden = batch.extras.get("annotator"), batch.extras.get("hidden")
        if annotator is not None:
            ok = batch.mask_valid & rows[:, None]
            slots, who = assign[ok].cpu(), annotator[ok].cpu()
            counts.index_put_((slots, who), torch.ones_like(slots), accumulate=True)
        if annotator is not None and hidden is not None:
            cached.append(
                (
                    gen_bin[rows].cpu(),
                    noisy[rows].cpu(),
                    hidden[rows].cpu(),
                    annotator[rows].cpu(),
                    batch.mask_valid[rows].cpu(),
                )
            )
    out: dict[str, Any] = {}
    if n_images:
        out["generation"] = {
            name: {k: v / n_images for k, v in s.items()} for name, s in sums.items()
        }
        out["generation"].update(
            {
                "images": n_images,
                "consensus": "binary vote, ties foreground",
                "ssim": {
                    "window": "gaussian",
                    "sigma": 1.5,
                    "size": 11,
                    "data_range": 1.0,
                    "K1": 0.01,
                    "K2": 0.03,
                },
                "bce_clamp": BCE_EPS,
            }
        )
    stands_for = counts.argmax(1)
    total = counts.sum(1).clamp_min(1)
    weights = magi.weights.detach().cpu()
    names = getattr(magi, "annotator_names", [])

    def name(a: int) -> str | int:
        return f"{a}:{names[a]}" if a < len(names) else a

    out["annotators"] = [
        {
            "slot": s,
            "weight": float(weights[s]),
            "area_vs_truth": float(area[s] / max(n_images, 1)),
            "stands_for": name(int(stands_for[s])) if counts[s].sum() else None,
            "agreement": float(counts[s, stands_for[s]] / total[s]) if counts[s].sum() else None,
            "alignments": int(counts[s].sum()),
        }
        for s in range(u)
    ]
    if cached:
        out["imputation"] = _imputation(cached, stands_for, counts)
    return out


def _imputation(cached: list, stands_for: Tensor, counts: Tensor) -> dict[str, Any]:
    """L1 error on hidden annotations: generated slot vs copying the consensus."""
    slot_of = {int(a): int(s) for s, a in enumerate(stands_for) if counts[s].sum()}
    gen_err = copy_err = 0.0
    n = 0
    for gen_bin, noisy, hidden, annotator, valid in cached:
        for i in range(gen_bin.shape[0]):
            present = set(annotator[i][valid[i]].tolist())
            for a in range(hidden.shape[1]):
                if a in present or a not in slot_of:
                    continue
                target = hidden[i, a].float()
                gen_err += float((gen_bin[i, slot_of[a]] - target).abs().mean())
                copy_err += float((noisy[i, 0] - target).abs().mean())
                n += 1
    if n == 0:
        return {}
    return {"hidden_annotations": n, "l1_generated": gen_err / n, "l1_copy_consensus": copy_err / n}
