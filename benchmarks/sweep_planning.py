"""How long a sweep takes to plan, against the former way, both measured in the same run:

1. reading the finished runs of its folder (to reuse a run that another recipe of the
   same experiment made): each run's recipe.yaml as written, against loading and
   validating it again and taking its key from the resolved recipe dumped to YAML and
   read back;
2. loading the recipe of every run it plans (two of the noise curve's recipes, 5 levels
   x 3 draws x 5 seeds, 150 runs): each recipe file parsed once, against parsing every
   file of the recipe and its bases for every run.

    python benchmarks/sweep_planning.py [--runs 600] [--repeat 3]

Writes RUNS finished toy runs (a recipe.yaml as a run writes it, a metrics.json) into a
temporary folder, then prints the median time of each way, the ratios, and whether the
two ways give the same result. The noise curve's search folder holds about 680 runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from esx import recipe as recipes
from esx.plugins import registry
from esx.recipe import Recipe, dump_recipe, load_recipe
from esx.sweep import finished_runs, parse_vary, plan

CURVE = Path(__file__).resolve().parent.parent / "recipes" / "noise_curve"
RECIPE = CURVE / "consensus.yaml"
VARY = parse_vary(["data.params.level=0,0.25,0.5,0.75,1", "data.params.of.params.seed=0-2"])


def former_key(recipe: Recipe) -> str:
    """The key as the former reading took it: the resolved recipe through YAML."""
    data = yaml.safe_load(dump_recipe(recipe))
    for key in ("label", "group", "reference"):
        data.pop(key, None)
    data.get("train", {}).pop("keep_last_checkpoint", None)
    return json.dumps(data, sort_keys=True)


def former_finished_runs(out: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for metrics in sorted(out.glob("*/seed*/metrics.json")):
        recipe = load_recipe(metrics.parent / "recipe.yaml", registry())
        found.setdefault(former_key(recipe), metrics.parent)
    return found


def planned(out: Path, parse_each_time: bool) -> list[str]:
    """The runs a sweep of two of the noise curve's recipes plans, as resolved recipes;
    with ``parse_each_time``, every file parsed for every run (the former way)."""
    paths, seeds = [CURVE / "consensus.yaml", CURVE / "magi_weighted.yaml"], list(range(5))
    cached = recipes._parse
    recipes._parse = cached.__wrapped__ if parse_each_time else cached
    try:
        return [dump_recipe(j.recipe) for j in plan(paths, seeds, out, registry(), [], VARY)]
    finally:
        recipes._parse = cached


def median_seconds(fn, repeat: int) -> tuple[float, Any]:
    times, found = [], {}
    for _ in range(repeat):
        t = time.perf_counter()
        found = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=600)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for i in range(a.runs):
            level, seed = i % 5 * 0.25, i // 5
            sets = [f"data.params.level={level}", f"seed={seed}"]
            folder = out / "consensus" / f"seed{seed}_level={level}"
            folder.mkdir(parents=True)
            (folder / "recipe.yaml").write_text(dump_recipe(load_recipe(RECIPE, registry(), sets)))
            (folder / "metrics.json").write_text("{}")
        former, old = median_seconds(lambda: former_finished_runs(out), a.repeat)
        now, new = median_seconds(lambda: finished_runs(out), a.repeat)
        former_plan, old_plan = median_seconds(lambda: planned(out, True), a.repeat)
        now_plan, new_plan = median_seconds(lambda: planned(out, False), a.repeat)
    print(f"median of {a.repeat}")
    print(f"1. reading {a.runs} finished runs")
    print(f"   former (load, validate, dump, read back): {former:6.2f} s")
    print(f"   recipe.yaml read as written:              {now:6.2f} s")
    print(
        f"   {former / now:.1f}x faster; the same {len(new)} runs under the same keys: {old == new}"
    )
    print(f"2. planning {len(new_plan)} runs")
    print(f"   former (every file parsed for every run): {former_plan:6.2f} s")
    print(f"   each file parsed once:                    {now_plan:6.2f} s")
    same = old_plan == new_plan
    print(f"   {former_plan / now_plan:.1f}x faster; the same resolved recipes: {same}")


if __name__ == "__main__":
    main()
