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

from esx.data import loader  # noqa: E402
from esx_magi.report import consensus, load_run  # noqa: E402

COUNTS = ("n", "empty", "touches", "mostly_outside")


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
def overlap(run: Path, splits: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """{split: {"noisy": {...}, "generated": {...}}}: counts and per-image means."""
    c, magi = load_run(run)
    out = {}
    for split in splits:
        sums: dict[str, dict[str, float]] = {}
        for batch in loader(c.dataset.split(split), 64, None, 0):
            pair = consensus(magi, batch)
            if not pair.rows.any():
                continue
            truth = batch.truth[pair.rows, 0]
            for name, pred in (("noisy", pair.noisy), ("generated", pair.generated)):
                got = overlap_sums(pred[pair.rows, 0], truth)
                acc = sums.setdefault(name, dict.fromkeys(got, 0.0))
                for k, v in got.items():
                    acc[k] += v
        out[split] = {
            name: {k: (v if k in COUNTS else v / s["n"]) for k, v in s.items()}
            for name, s in sums.items()
        }
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--splits", nargs="+", default=["train", "test"])
    a = ap.parse_args(argv)
    print(
        "| run | split | consensus | positives | empty | touches | mostly outside | "
        "precision | recall | area (px) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in a.runs:
        for split, both in overlap(run, a.splits).items():
            for name, s in both.items():
                print(
                    f"| {run} | {split} | {name} | {s['n']:.0f} | {s['empty']:.0f} | "
                    f"{s['touches']:.0f} | {s['mostly_outside']:.0f} | {s['precision']:.3f} | "
                    f"{s['recall']:.3f} | {s['area']:.0f} |"
                )


if __name__ == "__main__":
    main()
