"""How long a sweep takes to read the finished runs of its folder (to reuse a run that
another recipe of the same experiment made), against the former reading, measured in
the same run: each run's recipe.yaml loaded and validated again, and its key taken from
the resolved recipe dumped to YAML and read back.

    python benchmarks/sweep_planning.py [--runs 600] [--repeat 3]

Writes RUNS finished toy runs (a recipe.yaml as a run writes it, a metrics.json) into a
temporary folder, then prints the median time of each reading, the ratio, and whether
the two found the same keys. The noise curve's search folder holds about 680 runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from esx.plugins import registry
from esx.recipe import Recipe, dump_recipe, load_recipe
from esx.sweep import finished_runs

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "noise_curve" / "consensus.yaml"


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


def median_seconds(fn, repeat: int) -> tuple[float, dict[str, Path]]:
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
    print(f"{a.runs} finished runs, median of {a.repeat}")
    print(f"former reading (load, validate, dump, read back): {former:6.2f} s")
    print(f"recipe.yaml read as written:                      {now:6.2f} s")
    print(
        f"ratio: {former / now:.1f}x faster; the same {len(new)} runs found under the same keys: "
        f"{old == new}"
    )


if __name__ == "__main__":
    main()
