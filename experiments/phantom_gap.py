"""Does looking at the right place pay on the phantom? Baseline vs GRADIA+oracle over seeds.

Runs each recipe for each seed (with shared ``--set`` overrides), then prints
test accuracy / F1 / AUC as mean ± std over seeds and the paired difference.
Each run's folder is kept under ``--out``; finished runs are skipped.

    python experiments/phantom_gap.py --seeds 0 1 2 3 4 --out runs/gap \
        --set data.params.image_size=112 --set backbone.params.output_stride=16
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from esx.plugins import registry
from esx.recipe import load_recipe
from esx.trainer import Trainer

DEFAULT = ["recipes/baseline.yaml", "recipes/gradia_oracle.yaml"]


def run_one(recipe: str, seed: int, sets: list[str], out: Path) -> dict:
    folder = out / f"{Path(recipe).stem}-seed{seed}"
    done = folder / "metrics.json"
    if done.exists():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    r = load_recipe(recipe, registry(), sets + [f"seed={seed}"])
    return Trainer(r, folder, recipe_source=recipe).run()


def summary(out: Path, recipes: list[str], seeds: list[int]) -> dict:
    table: dict = {}
    for rec in recipes:
        rows = []
        for s in seeds:
            p = out / f"{Path(rec).stem}-seed{s}" / "metrics.json"
            if p.exists():
                rows.append(json.loads(p.read_text()))
        if not rows:
            continue
        table[Path(rec).stem] = {
            k: {
                "mean": statistics.mean(r["test"][k] for r in rows),
                "std": statistics.stdev(r["test"][k] for r in rows) if len(rows) > 1 else 0.0,
                "values": [round(r["test"][k], 4) for r in rows],
            }
            for k in ("accuracy", "f1", "auc")
        } | {
            "iou": statistics.mean(r["explanation"].get("iou", 0) for r in rows),
            "seeds": len(rows),
        }
    return table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipes", nargs="+", default=DEFAULT)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--out", type=Path, default=Path("runs/phantom_gap"))
    ap.add_argument("--summary-only", action="store_true")
    a = ap.parse_args()
    if not a.summary_only:
        for seed in a.seeds:
            for rec in a.recipes:
                m = run_one(rec, seed, a.sets, a.out)
                print(
                    f"{rec} seed {seed}: acc {m['test']['accuracy']:.4f} "
                    f"f1 {m['test']['f1']:.4f} auc {m['test']['auc']:.4f}",
                    flush=True,
                )
    print(json.dumps(summary(a.out, a.recipes, a.seeds), indent=1))


if __name__ == "__main__":
    main()
