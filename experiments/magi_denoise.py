"""How much does MAGI's generator denoise the readers' masks, and what limits it?

Trains MAGI's generator alone on a recipe's training split and prints the
paper's Table 2 (MSE, BCE, SSIM of the consensus of generated masks and of
the noisy masks, against the true mask, on the test positives) after each
number of steps in ``--steps``.

With ``detach_targets: true`` (every shipped MAGI recipe) nothing of the
classifier reaches the generator: its encoders read the image itself, not the
backbone's features, and its only loss is L_gen. So training it alone is the
generator's part of an ``esx run``, minus the classifier's steps: one variant
costs seconds to minutes instead of a whole run, and a run of the recipe's
length (``train.epochs`` over the training split) is ``--steps epochs``.

    python experiments/magi_denoise.py recipes/magi_lidc.yaml --steps epochs,500,2000 \\
        [--seeds 0,1,2] [--set KEY=VALUE ...] \\
        [--variant "no residual:aggregator.params.residual=false" ...]

Each ``--variant`` is ``LABEL:KEY=VALUE[;KEY=VALUE...]`` on top of the recipe and
``--set``; without one, the recipe as it is. Variants share one process, so the
dataset is built once.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from esx.build import build  # noqa: E402
from esx.data import loader  # noqa: E402
from esx.plugins import registry  # noqa: E402
from esx.recipe import load_recipe  # noqa: E402
from esx_magi.report import evaluate  # noqa: E402


def steps_of(text: str, recipe_steps: int) -> list[int]:
    """``--steps`` as step counts; the word ``epochs`` is the recipe's own length."""
    return sorted({recipe_steps if s == "epochs" else int(s) for s in text.split(",")})


def train(recipe_path: str, sets: list[str], steps: str, seed: int) -> Iterator[dict]:
    """Table 2 rows (one per step count, as each is reached) for one training seed."""
    recipe = load_recipe(recipe_path, registry(), [*sets, f"seed={seed}"])
    if recipe.aggregator.name != "magi":
        sys.exit(f"{recipe_path}: aggregator {recipe.aggregator.name!r} is not magi")
    torch.manual_seed(seed)
    c = build(recipe, torch.device("cpu"))
    magi = c.aggregator
    train_split = c.dataset.split("train")
    bs = recipe.train.batch_size
    per_epoch = math.ceil(len(train_split) / bs)
    marks = steps_of(steps, per_epoch * recipe.train.epochs)
    shuffle = torch.Generator().manual_seed(seed)
    train_loader = loader(train_split, bs, shuffle, 0)
    test_loader = loader(c.dataset.split("test"), 64, None, 0)
    magi.param_groups(recipe.train.lr)  # the generator's own rate, as in a run
    for done in magi.pretrain(train_loader, torch.device("cpu"), marks[-1]):
        if done in marks:
            gen = evaluate(magi, test_loader, torch.device("cpu"))["generation"]
            yield {"seed": seed, "steps": done, **gen}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--steps", default="epochs", help="step counts, e.g. 105,500 or epochs")
    ap.add_argument("--seeds", default="0", help="training seeds of the generator, e.g. 0,1,2")
    ap.add_argument("--variant", action="append", default=[], help="LABEL:KEY=VALUE[;KEY=VALUE...]")
    a = ap.parse_args(argv)
    variants = [("as shipped", [])]
    if a.variant:
        variants = []
        for v in a.variant:
            label, _, keys = v.partition(":")
            variants.append((label, [k for k in keys.split(";") if k]))
    print("| variant | seed | steps | noisy MSE | generated MSE | change | gen. BCE | gen. SSIM |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    for label, keys in variants:
        for seed in (int(s) for s in a.seeds.split(",")):
            for r in train(a.recipe, [*a.sets, *keys], a.steps, seed):
                noisy, gen = r["noisy"], r["generated"]
                change = 100 * (gen["mse"] / noisy["mse"] - 1)
                print(
                    f"| {label} | {seed} | {r['steps']} "
                    f"| {noisy['mse']:.6f} | {gen['mse']:.6f} | {change:+.1f}% "
                    f"| {gen['bce']:.4f} | {gen['ssim']:.4f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
