"""Does the vote rule decide Table 2? Re-score finished MAGI runs under two consensus rules.

For each run folder: rebuild its recipe, load ``best.safetensors``, and on the
test split's annotated positives compare, against the true mask, the noisy
consensus and the generated consensus under

- ``>= 50%`` (ties foreground: the paper's 50% level, pylidc's ``mean >= 0.5``,
  what ``metrics.json`` reports), and
- ``> 50%`` (strict majority: a 2-2 tie is background).

    python experiments/magi_vote_rule.py runs/magiCrop/seed0 runs/magiCrop/seed1 ...
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from esx.data import loader  # noqa: E402
from esx.masks import vote  # noqa: E402
from esx_magi.report import consensus, load_run, scores  # noqa: E402

RULES = {">=50%": 0.5, ">50%": 0.5 + 1e-3}


@torch.no_grad()
def rescore(run: Path) -> dict[str, dict[str, float]]:
    c, magi = load_run(run)
    sums: dict[str, dict[str, float]] = {}
    n = 0
    for batch in loader(c.dataset.split("test"), 64, None, 0):
        pair = consensus(magi, batch)
        rows = pair.rows
        if not rows.any():
            continue
        every = torch.ones_like(batch.mask_valid)
        truth = batch.truth[rows].float()
        for rule, thr in RULES.items():
            for name, pred in (
                ("noisy", vote(batch.masks, batch.mask_valid, thr)),
                ("generated", vote(pair.generated_masks, every, thr)),
            ):
                for k, v in scores(pred[rows], truth).items():
                    key = f"{name} {rule}"
                    sums.setdefault(key, {})
                    sums[key][k] = sums[key].get(k, 0.0) + float(v.sum())
        n += int(rows.sum())
    return {key: {k: v / n for k, v in s.items()} for key, s in sums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    a = ap.parse_args()
    print("| run | rule | noisy MSE | generated MSE | change | noisy SSIM | generated SSIM |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for run in a.runs:
        res = rescore(run)
        for rule in RULES:
            noisy, gen = res[f"noisy {rule}"], res[f"generated {rule}"]
            change = gen["mse"] / noisy["mse"] - 1
            print(
                f"| {run} | {rule} | {noisy['mse']:.5f} | {gen['mse']:.5f} | {change:+.1%} | "
                f"{noisy['ssim']:.4f} | {gen['ssim']:.4f} |"
            )


if __name__ == "__main__":
    main()
