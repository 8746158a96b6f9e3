"""What values do a finished MAGI run's targets take on the truth, the distractor and elsewhere?

    python experiments/target_values.py runs/noise_curve_energy/magi_weighted/seed0_* ...

For each run folder (a MAGI run on a dataset with true masks and ``extras["distractors"]``,
e.g. Decoy-MNIST's panels): rebuild its recipe, load ``best.safetensors`` and, on the
annotated images of the training split, form the one mask each image's targets amount to
under a loss linear in its target (the energy loss): the weighted mean of the target
masks, Σ w·m / Σ w (with ``targets: weighted`` the generated masks under the learned
weights; with ``consensus`` the generated vote). Prints, as a Markdown table, its mean
value on the true mask's pixels, on the distractor's, and on the rest, and each region's
share of the mask's total, averaged over images. A target built from the truth as a ×
truth + b × distractor has a, b and 0 there (``experiments/soft_target.py``); the lab
notebook's energy-curve MAGI cells (63 and 64) read MAGI's against it.

The generator runs in eval mode (as the run's report measures it), so this is the
selected checkpoint's targets, not those of every training step.

``--versus ROW`` adds each run's test accuracy minus that of the run with the same
folder name in the sweep's row ``ROW`` (e.g. ``consensus``, in points) and, over three
runs or more, the Pearson and Spearman correlations of the truth's share with it
(scipy.stats): the lab notebook's section 67. ``--slots`` adds a table of each target
mask alone (each generated annotator's, in the generator's slot order, with its share
of the weights): section 68.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from scipy import stats  # noqa: E402

from esx.data import loader  # noqa: E402
from esx.errors import EsxError  # noqa: E402
from esx_magi.report import load_run  # noqa: E402

REGIONS = ("truth", "distractor", "rest")


def region_sums(target: torch.Tensor, truth: torch.Tensor, distractor: torch.Tensor) -> dict:
    """Sums over images of each region's mean value and share of the target's total;
    target, truth, distractor: (N, H, W), the last two in {0, 1} (a pixel of both counts
    as truth)."""
    t, d = truth.flatten(1) > 0.5, distractor.flatten(1) > 0.5
    masks = {"truth": t, "distractor": d & ~t, "rest": ~(t | d)}
    v = target.flatten(1)
    total = v.sum(1).clamp(min=1e-12)
    out = {"n": float(len(v))}
    for name, m in masks.items():
        inside = (v * m).sum(1)
        out[f"{name}_value"] = float((inside / m.sum(1).clamp(min=1)).sum())
        out[f"{name}_share"] = float((inside / total).sum())
    return out


@torch.no_grad()
def values(run: Path, split: str = "train") -> dict[str, float]:
    """Per-image means over the split's annotated images (see :func:`region_sums`), of
    the targets' weighted mean and, under ``slot<k> ...``, of each target mask alone
    (a generated annotator's mask with ``weighted``, the vote with ``consensus``) with
    its share of the weights."""
    c, magi = load_run(run)
    sums: dict[str, float] = {}
    for batch in loader(c.dataset.split(split), 256, None, 0):
        found = batch.extras.get("distractors")
        if batch.truth is None or found is None:
            raise EsxError(
                f"{run}: its dataset gives no true mask or no distractors extra; this "
                "measure needs both (decoy_mnist or phantom, or a panel of either)"
            )
        t = magi(batch).targets
        rows = t.weights.sum(1) > 0
        masks, w = t.masks[rows], t.weights[rows][..., None, None]
        w = w / w.sum(1, keepdim=True)  # each image's weights as shares
        truth, distractor = batch.truth[rows, 0], found[rows].amax(dim=1)
        got = region_sums((masks * w).sum(1), truth, distractor)
        for slot in range(masks.shape[1]):  # each target mask alone, and its weight
            alone = region_sums(masks[:, slot], truth, distractor)
            alone["weight"] = float(w[:, slot].sum())
            got.update({f"slot{slot} {k}": v for k, v in alone.items() if k != "n"})
        for k, v in got.items():
            sums[k] = sums.get(k, 0.0) + v
    return {k: (v if k == "n" else v / sums["n"]) for k, v in sums.items()}


def gain(run: Path, versus: str) -> float:
    """The run's test accuracy minus that of its pair in the sweep's row ``versus``, in
    points (the pair: the folder of the same name, ``<sweep>/<versus>/<run's name>``)."""
    pair = run.parent.parent / versus / run.name
    try:
        acc = [
            json.loads((r / "metrics.json").read_text())["test"]["accuracy"] for r in (run, pair)
        ]
    except (OSError, KeyError, ValueError) as err:
        raise EsxError(
            f"{run}: no finished pair to compare in row {versus!r} ({pair}): {err}; "
            "finish both runs, or name the row its sweep calls it"
        ) from None
    return 100 * (acc[0] - acc[1])


def print_slots(found: dict[Path, dict[str, float]]) -> None:
    """Each run's target masks alone, in the generator's slot order: their share of the
    weights and their mean value on each region, as a Markdown table."""
    keys = ["weight"] + [f"{r}_value" for r in REGIONS]
    print("\n| run | slot | " + " | ".join(k.replace("_", " ") for k in keys) + " |")
    print("| --- | --- |" + " --- |" * len(keys))
    for run, s in found.items():
        slot = 0
        while f"slot{slot} weight" in s:
            row = " | ".join(f"{s[f'slot{slot} {k}']:.3f}" for k in keys)
            print(f"| {run} | {slot} | {row} |")
            slot += 1


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--split", default="train")
    ap.add_argument("--versus", help="a row of the same sweep to subtract (e.g. consensus)")
    ap.add_argument("--slots", action="store_true", help="also each target mask alone")
    a = ap.parse_args(argv)
    cols = [f"{r} {k}" for r in REGIONS for k in ("value", "share")]
    cols += [f"− {a.versus}, accuracy (points)"] if a.versus else []
    print("| run | images | " + " | ".join(cols) + " |")
    print("| --- | --- |" + " --- |" * len(cols))
    shares, gains, found = [], [], {}
    for run in a.runs:
        try:
            g = gain(run, a.versus) if a.versus else None  # before the slow part
            s = values(run, a.split)
        except EsxError as err:
            raise SystemExit(f"error: {err}") from None
        row = [f"{s[f'{r}_{k}']:.3f}" for r in REGIONS for k in ("value", "share")]
        if g is not None:
            gains.append(g)
            shares.append(s["truth_share"])
            row.append(f"{g:+.1f}")
        print(f"| {run} | {s['n']:.0f} | {' | '.join(row)} |")
        found[run] = s
    if a.slots:
        print_slots(found)
    if len(gains) >= 3:
        r, rho = stats.pearsonr(shares, gains)[0], stats.spearmanr(shares, gains)[0]
        print(
            f"\ntruth share against − {a.versus}, over {len(gains)} runs: "
            f"Pearson r {r:.2f}, Spearman {rho:.2f}"
        )


if __name__ == "__main__":
    main()
