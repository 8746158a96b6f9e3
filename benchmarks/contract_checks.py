"""Cost of the runtime contract checks against the run they guard, measured in one process.

The trainer checks every component's outputs on the first training batch of a
run (:mod:`esx.contracts`). This script takes one real step of a recipe
(default: recipes/quickstart.yaml, the CPU-sized GRADIA run, and MAGI's
Table 1 recipe), times the checks on that step's outputs, times the step
itself, and prints the checks' cost as a share of one step and of the run's
training steps (a run pays for the checks once).

    python benchmarks/contract_checks.py [--recipe RECIPE ...] [--repeats N]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from esx import contracts  # noqa: E402
from esx.data import loader  # noqa: E402
from esx.plugins import registry  # noqa: E402
from esx.recipe import load_recipe  # noqa: E402
from esx.trainer import Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(recipe: str, repeats: int) -> dict[str, float]:
    r = load_recipe(ROOT / recipe, registry())
    t = Trainer(r, Path("/nonexistent-not-written"), recipe_source=recipe)
    batch = next(iter(loader(t.c.dataset.split("train"), r.train.batch_size, None, 0)))
    m = t.module
    m.check = False  # time the step as every step after the first runs
    step = _median_seconds(lambda: t.step(batch), repeats)

    features = m.backbone.forward_features(batch.image)
    logits = m.backbone.forward_head(features)
    out = m.aggregator(batch)
    maps = m.explainer.explain(
        m.backbone, batch.image, batch.label, features=features, logits=logits, create_graph=True
    )
    value = torch.zeros((), requires_grad=True) * 1.0

    def checks() -> None:
        contracts.backbone(m.backbone, features, logits, len(batch), m.classes)
        contracts.targets(m.aggregator, out, batch.masks, batch.annotated)
        contracts.maps(m.explainer, maps, len(batch))
        contracts.scalar(m.loss, value, "the loss")

    check = _median_seconds(checks, repeats * 10)
    steps = math.ceil(len(t.c.dataset.split("train")) / r.train.batch_size) * r.train.epochs
    return {
        "check_s": check,
        "step_s": step,
        "steps": steps,
        "share_of_step": check / step,
        "share_of_run": check / (step * steps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipe",
        action="append",
        help="recipes to measure (default: quickstart and MAGI's Table 1 row)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    recipes = args.recipe or ["recipes/quickstart.yaml", "recipes/table1/a_magi.yaml"]
    print(
        f"{'recipe':32} {'checks':>9} {'step':>8} {'checks/step':>12} {'steps/run':>10} "
        f"{'checks/run':>11}"
    )
    for recipe in recipes:
        m = measure(recipe, args.repeats)
        print(
            f"{recipe:32} {m['check_s'] * 1e3:7.2f}ms {m['step_s']:7.3f}s "
            f"{m['share_of_step']:11.3%} {m['steps']:10d} {m['share_of_run']:10.4%}"
        )


if __name__ == "__main__":
    main()
