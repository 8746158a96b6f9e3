"""How close to the true mask can MAGI's generated consensus get, before any training?

MAGI generates masks at ``gen_size`` x ``gen_size`` (in a crop around the
observed masks with ``crop: true``) and maps them back to the image. That
round trip alone costs accuracy on small masks. This script measures, on a
recipe's test positives, Table 2's MSE / BCE / SSIM against the true mask of:

- ``noisy``: the 50% vote of the observed masks (Table 2's reference row);
- ``noisy, round trip``: the same vote after the trip to generation space
  and back (what a generator that copied the observed masks perfectly would
  score);
- ``truth, round trip``: the true mask after the trip (the best any generator
  at this resolution can do).

When ``truth, round trip`` is not clearly below ``noisy``, the generation
resolution, not the generator, limits how much MAGI can denoise.

    python experiments/magi_floor.py recipes/magi_lidc.yaml [--set key=value ...]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from esx.build import build  # noqa: E402
from esx.data import collate  # noqa: E402
from esx.masks import vote  # noqa: E402
from esx.plugins import registry  # noqa: E402
from esx.recipe import load_recipe  # noqa: E402
from esx_magi.magi import crops  # noqa: E402
from esx_magi.report import scores  # noqa: E402


@torch.no_grad()
def floor(recipe_path: str, sets: list[str], limit: int | None = None) -> dict[str, dict]:
    recipe = load_recipe(recipe_path, registry(), sets)
    if recipe.aggregator.name != "magi":
        sys.exit(f"{recipe_path}: aggregator {recipe.aggregator.name!r} is not magi")
    c = build(recipe, torch.device("cpu"))
    magi, split = c.aggregator, c.dataset.split("test")
    r = magi.params.gen_size
    sums: dict[str, dict[str, float]] = {}
    n = 0
    idx = [i for i in range(len(split)) if split[i].label == 1][:limit]
    for start in range(0, len(idx), 32):
        batch = collate([split[i] for i in idx[start : start + 32]])
        keep = batch.mask_valid.any(1) & (batch.truth.flatten(1).amax(1) > 0)
        if not keep.any():
            continue
        if magi.params.crop:
            theta = magi._crop_theta(batch)

            def trip(x, batch=batch, theta=theta):
                return magi.to_image(crops(x, theta, r), batch, theta)
        else:

            def trip(x, batch=batch):
                return magi.to_image(torch.nn.functional.adaptive_avg_pool2d(x.float(), r), batch)

        noisy = vote(batch.masks, batch.mask_valid)
        masks_trip = (trip(batch.masks.float()) > 0.5).float()
        rows = {
            "noisy": noisy,
            "noisy, round trip": vote(masks_trip, batch.mask_valid),
            "truth, round trip": (trip(batch.truth.float()) > 0.5).float(),
        }
        truth = batch.truth.float()[keep]
        for name, pred in rows.items():
            for k, v in scores(pred.float()[keep], truth).items():
                sums.setdefault(name, {})[k] = sums.get(name, {}).get(k, 0.0) + float(v.sum())
        n += int(keep.sum())
    return {name: {k: v / n for k, v in s.items()} | {"images": n} for name, s in sums.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--limit", type=int, default=None, help="at most this many test positives")
    a = ap.parse_args(argv)
    out = floor(a.recipe, a.sets, a.limit)
    print("| masks | images | mse | bce | ssim |")
    print("| --- | --- | --- | --- | --- |")
    for name, s in out.items():
        print(f"| {name} | {s['images']} | {s['mse']:.6f} | {s['bce']:.5f} | {s['ssim']:.4f} |")


if __name__ == "__main__":
    main()
