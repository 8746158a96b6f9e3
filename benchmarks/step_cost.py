"""Cost of one explanation-supervised training step against a plain (Baseline) step.

Builds each recipe's trainer, feeds every one the same cached batch (224x224,
batch 16 by default), runs warm-up steps, then interleaves the methods so
that machine noise hits all alike, and reports the median step time of each
and its ratio to the Baseline measured in the same run.

    python benchmarks/step_cost.py            # table
    python benchmarks/step_cost.py --json     # machine-readable
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from esx.data import collate  # noqa: E402
from esx.plugins import registry  # noqa: E402
from esx.recipe import load_recipe  # noqa: E402
from esx.trainer import Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS = {
    "baseline": "recipes/baseline.yaml",
    "gradia": "recipes/gradia_consensus.yaml",
    "haics": "recipes/table1/b_haics.yaml",
    "res_g": "recipes/table1/b_res_g.yaml",
    "res_l": "recipes/table1/b_res_l.yaml",
    "meanloss": "recipes/table1/a_meanloss.yaml",
    "magi": "recipes/magi_lidc.yaml",
}


def build(recipe: str, size: int, batch: int, device: str) -> Trainer:
    sets = [f"data.params.image_size={size}", f"data.params.n_train={batch}",
            "data.params.n_val=2", "data.params.n_test=2", f"train.batch_size={batch}",
            f"device={device}", "backbone.params.output_stride=null"]
    r = load_recipe(ROOT / recipe, registry(), sets)
    return Trainer(r, registry(), Path("/nonexistent-not-written"), recipe_source=recipe)


def _alignment_time(trainer: Trainer, batch, repeats: int) -> float:
    """Median time of the exact alignment on a MAGI step's own cost matrix."""
    from esx_magi.alignment import align

    magi = trainer.c.aggregator
    with torch.no_grad():
        probs, _, observed = magi.generate(batch)
        cost = magi.cost(observed, probs)
    align(cost, batch.mask_valid)  # warm the permutation cache
    times = []
    for _ in range(max(repeats, 20)):
        start = time.perf_counter()
        align(cost, batch.mask_valid)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    trainers = {m: build(r, a.size, a.batch, a.device) for m, r in METHODS.items()}
    first = next(iter(trainers.values()))
    ds = first.c.dataset.split("train")
    batch = collate([ds[i] for i in range(a.batch)]).to(first.device)
    times: dict[str, list[float]] = {m: [] for m in trainers}
    sync = torch.cuda.synchronize if first.device.type == "cuda" else (lambda: None)
    for t in trainers.values():
        for _ in range(a.warmup):
            t.step(batch)
    for _ in range(a.repeats):
        for m, t in trainers.items():
            sync()
            start = time.perf_counter()
            t.step(batch)
            sync()
            times[m].append(time.perf_counter() - start)
    base = statistics.median(times["baseline"])
    align_s = _alignment_time(trainers["magi"], batch, a.repeats) if "magi" in trainers else None
    result = {
        "device": str(first.device),
        "torch_threads": torch.get_num_threads(),
        "size": a.size, "batch": a.batch, "repeats": a.repeats,
        "methods": {m: {"median_s": statistics.median(v), "ratio": statistics.median(v) / base}
                    for m, v in times.items()},
    }
    if align_s is not None:
        magi_s = result["methods"]["magi"]["median_s"]
        result["magi_alignment"] = {"median_s": align_s, "share_of_magi_step": align_s / magi_s}
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{a.size}x{a.size}, batch {a.batch}, {result['device']}, "
          f"{result['torch_threads']} threads, median of {a.repeats}")
    for m, v in result["methods"].items():
        print(f"  {m:10s} {v['median_s'] * 1000:8.1f} ms  {v['ratio']:.3f}x baseline")
    if align_s is not None:
        share = result["magi_alignment"]["share_of_magi_step"]
        print(f"  alignment  {align_s * 1000:8.2f} ms  {100 * share:.2f}% of a MAGI step")


if __name__ == "__main__":
    sys.exit(main())
