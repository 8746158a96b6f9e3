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

from esx import outputs  # noqa: E402
from esx.masks import vote  # noqa: E402
from esx.plugins import registry  # noqa: E402
from esx.recipe import load_recipe  # noqa: E402
from esx.trainer import build, loader  # noqa: E402
from esx_magi.report import _scores  # noqa: E402

RULES = {">=50%": 0.5, ">50%": 0.5 + 1e-3}


@torch.no_grad()
def rescore(run: Path) -> dict[str, dict[str, float]]:
    reg = registry()
    c = build(load_recipe(run / "recipe.yaml", reg), reg, torch.device("cpu"))
    state = outputs.load_state(run / "best.safetensors")
    c.aggregator.load_state_dict({k[len("aggregator."):]: v for k, v in state.items()
                                  if k.startswith("aggregator.")})
    magi = c.aggregator.eval()
    sums: dict[str, dict[str, float]] = {}
    n = 0
    for batch in loader(c.dataset.split("test"), 64, None, 0):
        rows = batch.annotated & (batch.label > 0) & (batch.truth.flatten(1).amax(1) > 0)
        if not rows.any():
            continue
        probs, _, _ = magi.generate(batch)
        gen = (magi.to_image(probs, batch) > 0.5).float()
        every = torch.ones_like(batch.mask_valid)
        truth = batch.truth[rows].float()
        for rule, thr in RULES.items():
            for name, pred in (("noisy", vote(batch.masks, batch.mask_valid, thr)),
                               ("generated", vote(gen, every, thr))):
                for k, v in _scores(pred[rows], truth).items():
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
            print(f"| {run} | {rule} | {noisy['mse']:.5f} | {gen['mse']:.5f} | {change:+.1%} | "
                  f"{noisy['ssim']:.4f} | {gen['ssim']:.4f} |")


if __name__ == "__main__":
    main()
