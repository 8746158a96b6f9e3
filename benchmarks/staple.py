"""STAPLE on the device, batched, against SimpleITK's filter one image at a time.

Takes real training batches of a recipe (default: the noise curve's STAPLE row,
Decoy-MNIST's 28-px digits annotated by a four-annotator panel at level 0.5),
times ``esx_aggregators.staple.staple`` on each whole batch and SimpleITK's
``STAPLEImageFilter`` on the same images one by one (what the aggregator did
before), checks the two agree, and prints the ratio. Needs SimpleITK
(``pip install SimpleITK``; it is in the ``test`` extra).

    python benchmarks/staple.py [--recipe RECIPE] [--batches N] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

from esx.data import loader  # noqa: E402
from esx.plugins import registry  # noqa: E402
from esx.recipe import load_recipe  # noqa: E402
from esx.trainer import Trainer  # noqa: E402
from esx_aggregators.staple import staple  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def one_by_one(masks: torch.Tensor, valid: torch.Tensor) -> np.ndarray:
    out = np.zeros((masks.shape[0], *masks.shape[-2:]))
    for i in range(masks.shape[0]):
        m = masks[i][valid[i]].numpy()
        if not m.any():
            continue
        f = sitk.STAPLEImageFilter()
        f.SetForegroundValue(1.0)
        f.SetMaximumIterations(100)
        ref = f.Execute([sitk.GetImageFromArray(x.astype(np.uint8)) for x in m])
        out[i] = sitk.GetArrayFromImage(ref)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="recipes/noise_curve/staple.yaml")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch's and SimpleITK's threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    r = load_recipe(ROOT / args.recipe, registry())
    t = Trainer(r, Path("/nonexistent-not-written"), recipe_source=args.recipe)
    batches = loader(t.c.dataset.split("train"), r.train.batch_size, None, 0)
    ours = theirs = 0.0
    worst = 0.0
    images = 0
    for i, batch in enumerate(batches):
        if i == args.batches:
            break
        staple(batch.masks, batch.mask_valid)  # warm-up: the first call allocates
        start = time.perf_counter()
        post = staple(batch.masks, batch.mask_valid)
        ours += time.perf_counter() - start
        start = time.perf_counter()
        ref = one_by_one(batch.masks, batch.mask_valid)
        theirs += time.perf_counter() - start
        worst = max(worst, float(np.abs(post.numpy() - ref).max()))
        images += batch.masks.shape[0]
    print(f"{images} images of {args.recipe}, {torch.get_num_threads()} threads")
    print(f"SimpleITK, one image at a time: {theirs:.3f} s")
    print(f"esx, batched:                   {ours:.3f} s")
    print(f"ratio: {theirs / ours:.1f}x faster; largest difference {worst:.1e}")


if __name__ == "__main__":
    main()
