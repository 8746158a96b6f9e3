"""Where do a finished MAGI run's consensus masks lie relative to the true nodule?

For each run folder: rebuild its recipe, load ``best.safetensors`` and, on
the annotated positives of the training and test splits, compare the noisy
consensus (the 50% vote of the observed masks) and the generated consensus
(the 50% vote of MAGI's U generated masks) with the phantom's true mask:

- empty: the consensus marks nothing;
- touches: it shares at least one pixel with the nodule;
- mostly outside: it marks something, and less than half of it is nodule;
- precision / recall: the nodule's share of the consensus and the
  consensus's share of the nodule, averaged over images (0 for an empty one);
- area: pixels marked, averaged over images.

A generated consensus that beats the noisy one on MSE can do so by finding
the nodule or only by marking less of the wrong place; these counts tell
which.

    python experiments/target_overlap.py runs/table1_amax/a_magi/seed0 ...
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from esx import outputs  # noqa: E402
from esx.errors import EsxError  # noqa: E402
from esx.masks import vote  # noqa: E402
from esx.plugins import registry  # noqa: E402
from esx.recipe import load_recipe  # noqa: E402
from esx.trainer import build, loader  # noqa: E402

COUNTS = ("n", "empty", "touches", "mostly_outside")
MEANS = ("precision", "recall", "area")


def overlap_sums(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Sums over images of the counts and per-image measures; pred, truth: (N, H, W) in {0, 1}."""
    p, t = pred.flatten(1) > 0.5, truth.flatten(1) > 0.5
    inter, area = (p & t).sum(1).float(), p.sum(1).float()
    return {
        "n": float(len(p)),
        "empty": float((area == 0).sum()),
        "touches": float((inter > 0).sum()),
        "mostly_outside": float(((area > 0) & (inter < 0.5 * area)).sum()),
        "precision": float((inter / area.clamp(min=1)).sum()),
        "recall": float((inter / t.sum(1).float().clamp(min=1)).sum()),
        "area": float(area.sum()),
    }


@torch.no_grad()
def overlap(run: Path, split: str) -> dict[str, dict[str, float]]:
    """{"noisy": {...}, "generated": {...}}: counts and per-image means on one split."""
    reg = registry()
    recipe = load_recipe(run / "recipe.yaml", reg)
    if recipe.aggregator.name != "magi":
        raise EsxError(f"{run}: aggregator {recipe.aggregator.name!r} generates no masks; "
                       "this measure needs a MAGI run")
    c = build(recipe, reg, torch.device("cpu"))
    state = outputs.load_state(run / "best.safetensors")
    c.aggregator.load_state_dict({k[len("aggregator."):]: v for k, v in state.items()
                                  if k.startswith("aggregator.")})
    magi = c.aggregator.eval()
    sums: dict[str, dict[str, float]] = {}
    for batch in loader(c.dataset.split(split), 64, None, 0):
        rows = batch.annotated & (batch.label > 0) & (batch.truth.flatten(1).amax(1) > 0)
        if not rows.any():
            continue
        probs, _, _ = magi.generate(batch)
        gen = (magi.to_image(probs, batch) > 0.5).float()
        truth = batch.truth[rows, 0]
        for name, pred in (("noisy", vote(batch.masks, batch.mask_valid, 0.5)),
                           ("generated", vote(gen, torch.ones_like(batch.mask_valid), 0.5))):
            got = overlap_sums(pred[rows, 0], truth)
            acc = sums.setdefault(name, dict.fromkeys(got, 0.0))
            for k, v in got.items():
                acc[k] += v
    return {name: {k: (v if k in COUNTS else v / s["n"]) for k, v in s.items()}
            for name, s in sums.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--splits", nargs="+", default=["train", "test"])
    a = ap.parse_args(argv)
    print("| run | split | consensus | positives | empty | touches | mostly outside | "
          "precision | recall | area (px) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in a.runs:
        for split in a.splits:
            for name, s in overlap(run, split).items():
                print(f"| {run} | {split} | {name} | {s['n']:.0f} | {s['empty']:.0f} | "
                      f"{s['touches']:.0f} | {s['mostly_outside']:.0f} | {s['precision']:.3f} | "
                      f"{s['recall']:.3f} | {s['area']:.0f} |")


if __name__ == "__main__":
    main()
