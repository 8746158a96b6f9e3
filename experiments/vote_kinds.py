"""What the observed vote of a panel is, image by image, before any training.

    python experiments/vote_kinds.py recipes/noise_curve_energy/consensus.yaml \
        data.params.level=0.5 --draws 0-2

builds the recipe's dataset (with the given overrides, once per data draw
``data.params.of.params.seed``), takes the vote of each training image's observed masks
(``esx.masks.vote``: a pixel is on where half or more of the valid masks have it, ties
foreground, as the Consensus row trains on) and sorts the images by what it marks against
the true mask:

- empty: nothing;
- off the truth: less than half of the true mask (on Decoy-MNIST's panels, the decoy
  patch: only decoy-markers annotated the image, or they outvoted the others);
- the truth: at least half of it, and nothing outside it;
- the truth and more: at least half of it, and pixels outside it.

It prints each kind's share of the split per draw, as a Markdown table. The counts of the
lab notebook's energy-curve MAGI cells (2026-12-03-noise-curve-magi-cells.md, 48).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from esx.data import loader  # noqa: E402
from esx.interfaces import BuildContext  # noqa: E402
from esx.masks import vote  # noqa: E402
from esx.plugins import registry  # noqa: E402
from esx.recipe import load_recipe  # noqa: E402
from esx.sweep import parse_seeds  # noqa: E402

KINDS = ("empty", "off the truth", "the truth", "the truth and more")


def kinds(voted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Index into KINDS per image; voted, truth: (N, H, W) in {0, 1}."""
    v, t = voted.flatten(1) > 0.5, truth.flatten(1) > 0.5
    on = (v & t).sum(1).float() / t.sum(1).float().clamp(min=1)
    outside = (v & ~t).sum(1) > 0
    out = torch.where(outside, 3, 2)
    out = torch.where(on < 0.5, 1, out)
    return torch.where(v.sum(1) == 0, 0, out)


@torch.no_grad()
def shares(recipe: str, overrides: list[str], draw: int, split: str) -> list[float]:
    """Each kind's share of the split's images for one data draw."""
    rec = load_recipe(recipe, registry(), [*overrides, f"data.params.of.params.seed={draw}"])
    data = rec.data.build(BuildContext(seed=rec.seed, device=torch.device("cpu")))
    counts = torch.zeros(len(KINDS))
    for batch in loader(data.split(split), 256, None, 0):
        if batch.truth is None:
            raise SystemExit(f"{recipe}: its dataset gives no true mask to compare the vote with")
        voted = vote(batch.masks.float(), batch.mask_valid)[:, 0]
        counts += torch.bincount(kinds(voted, batch.truth[:, 0]), minlength=len(KINDS))
    return (counts / counts.sum()).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE, as `esx run --set`")
    ap.add_argument("--draws", default="0-2", help="data draws, as `esx sweep --seeds`")
    ap.add_argument("--split", default="train")
    args = ap.parse_args()
    print(f"| draw ({args.split}) | " + " | ".join(KINDS) + " |")
    print("| --- " * (len(KINDS) + 1) + "|")
    for draw in parse_seeds([args.draws]):
        row = shares(args.recipe, args.overrides, draw, args.split)
        print(f"| {draw} | " + " | ".join(f"{x:.3f}" for x in row) + " |")


if __name__ == "__main__":
    main()
