"""Cost of one explanation-supervised training step against a plain (Baseline) step.

Builds each recipe's trainer, feeds every one the same cached batch (224x224,
batch 16 by default), runs warm-up steps, then interleaves the methods so
that machine noise hits all alike, and reports the median step time of each
and its ratio to the Baseline measured in the same run. Also, in the same run:

- peak memory of a step of each method (CUDA: peak allocated above what was
  allocated before the step; CPU: how far the first step lifts the process's
  peak resident memory, each method in a fresh process), as a ratio to the
  Baseline's;
- evaluation throughput (images/s of the trainer's evaluation, Grad-CAM
  overlap included) against a plain forward pass;
- the alignment's share of a MAGI step;
- data loading: a Baseline step fed by the training DataLoader against a
  step on the cached batch.

    python benchmarks/step_cost.py            # table
    python benchmarks/step_cost.py --json     # machine-readable
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from esx import evaluation  # noqa: E402
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
    "magi": "recipes/table1/b_magi.yaml",
    # guidance at a finer layer (14x14 at 224 px instead of 7x7), and the newer losses
    "gradia_layer3": ("recipes/gradia_consensus.yaml", ("explainer.params.layer=layer3",)),
    "energy": ("recipes/gradia_consensus.yaml", ("loss.name=energy",)),
    "rrr": ("recipes/gradia_consensus.yaml", ("loss.name=rrr", "explainer={name: input_gradient}")),
}


def build(
    recipe: str | tuple[str, tuple[str, ...]],
    size: int,
    batch: int,
    device: str,
    n_train: int | None = None,
    precision: str = "auto",
) -> Trainer:
    recipe, extra = (recipe, ()) if isinstance(recipe, str) else recipe
    sets = [
        *extra,
        f"train.precision={precision}",
        f"data.params.image_size={size}",
        f"data.params.n_train={n_train or batch}",
        "data.params.n_val=2",
        "data.params.n_test=2",
        f"train.batch_size={batch}",
        f"device={device}",
        "backbone.params.output_stride=null",
    ]
    r = load_recipe(ROOT / recipe, registry(), sets)
    return Trainer(r, Path("/nonexistent-not-written"), recipe_source=recipe)


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


def _peak_memory_mib(
    method: str, size: int, batch: int, device: str, precision: str = "auto"
) -> float:
    """Peak memory a training step adds, in MiB (see the module docstring)."""
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        t = build(METHODS[method], size, batch, device, precision=precision)
        b = _cached(t, batch)
        t.step(b)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        t.step(b)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    code = (
        "import sys; sys.argv=['x']; import step_cost as s; "
        f"t=s.build(s.METHODS[{method!r}], {size}, {batch}, 'cpu'); b=s._cached(t, {batch}); "
        "print(s._cpu_step_peak(t, b))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
        check=True,
    )
    return float(out.stdout.split()[-1])


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _cpu_step_peak(trainer: Trainer, batch) -> float:
    """MiB by which one step (the first, Adam's state included) lifts the resident peak.

    The kernel's peak (VmHWM) is reset just before the step (``clear_refs``), so
    building the trainer does not hide the step's own peak.
    """
    import gc

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    trainer.step(batch)
    return (_status_kib("VmHWM") - before) / 1024


def _cached(trainer: Trainer, batch: int):
    ds = trainer.c.dataset.split("train")
    return collate([ds[i] for i in range(batch)]).to(trainer.rt.device)


def _eval_throughput(trainer: Trainer, batch, repeats: int) -> dict[str, float]:
    """Images/s of the trainer's evaluation (with explanation overlap) and of a plain forward."""
    loader = [batch] * repeats
    bb = trainer.c.backbone.eval()
    sync = torch.cuda.synchronize if trainer.rt.device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        bb(batch.image)
    sync()
    start = time.perf_counter()
    with torch.no_grad():
        for b in loader:
            bb(b.image)
    sync()
    plain = time.perf_counter() - start
    start = time.perf_counter()
    evaluation.predict(trainer.c, trainer.rt, loader, None, "eval", threshold=0.5)
    sync()
    full = time.perf_counter() - start
    n = repeats * batch.image.shape[0]
    return {
        "plain_forward_images_per_s": n / plain,
        "evaluation_images_per_s": n / full,
        "ratio": plain / full,
    }


def _loading(size: int, batch: int, device: str, repeats: int) -> dict[str, float]:
    """A Baseline step fed by the DataLoader vs the same step on a cached batch."""
    from esx.data import loader

    t = build(METHODS["baseline"], size, batch, device, n_train=batch * repeats)
    cached = _cached(t, batch)
    dl = loader(t.c.dataset.split("train"), batch, None, t.recipe.train.num_workers)
    sync = torch.cuda.synchronize if t.rt.device.type == "cuda" else (lambda: None)
    for _ in dl:  # render (and cache) every sample once, outside the timing
        pass
    t.step(cached)

    def per_step(batches) -> float:
        sync()
        start = time.perf_counter()
        for b in batches:  # DataLoader time is spent in the loop header: time it whole
            t.step(b.to(t.rt.device, non_blocking=True))
        sync()
        return (time.perf_counter() - start) / len(dl)

    cached_s = per_step([cached] * len(dl))
    with_loading = per_step(dl)
    return {
        "step_with_loading_s": with_loading,
        "step_cached_s": cached_s,
        "ratio": with_loading / cached_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    ap.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma list (the baseline is always measured); default: all of {', '.join(METHODS)}",
    )
    a = ap.parse_args()
    chosen = ["baseline", *(m for m in a.methods.split(",") if m and m != "baseline")]
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        ap.error(f"--methods: unknown {unknown}; known: {', '.join(METHODS)}")
    trainers = {
        m: build(METHODS[m], a.size, a.batch, a.device, precision=a.precision) for m in chosen
    }
    first = next(iter(trainers.values()))
    batch = _cached(first, a.batch)
    times: dict[str, list[float]] = {m: [] for m in trainers}
    sync = torch.cuda.synchronize if first.rt.device.type == "cuda" else (lambda: None)
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
        "device": str(first.rt.device),
        "precision": first.rt.precision,
        "torch_threads": torch.get_num_threads(),
        "size": a.size,
        "batch": a.batch,
        "repeats": a.repeats,
        "methods": {
            m: {"median_s": statistics.median(v), "ratio": statistics.median(v) / base}
            for m, v in times.items()
        },
    }
    if align_s is not None:
        magi_s = result["methods"]["magi"]["median_s"]
        result["magi_alignment"] = {"median_s": align_s, "share_of_magi_step": align_s / magi_s}
    result["evaluation"] = _eval_throughput(trainers["baseline"], batch, a.repeats)
    result["data_loading"] = _loading(a.size, a.batch, a.device, a.repeats)
    if not a.no_memory:
        mem = {m: _peak_memory_mib(m, a.size, a.batch, a.device, a.precision) for m in trainers}
        for m, v in mem.items():
            result["methods"][m]["peak_step_mib"] = v
            result["methods"][m]["memory_ratio"] = v / max(mem["baseline"], 1e-9)
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{a.size}x{a.size}, batch {a.batch}, {result['device']}, "
        f"{result['torch_threads']} threads, median of {a.repeats}"
    )
    for m, v in result["methods"].items():
        mem = (
            f"  {v['peak_step_mib']:8.0f} MiB  {v['memory_ratio']:.2f}x"
            if "peak_step_mib" in v
            else ""
        )
        print(f"  {m:10s} {v['median_s'] * 1000:8.1f} ms  {v['ratio']:.3f}x baseline{mem}")
    if align_s is not None:
        share = result["magi_alignment"]["share_of_magi_step"]
        print(f"  alignment  {align_s * 1000:8.2f} ms  {100 * share:.2f}% of a MAGI step")
    ev = result["evaluation"]
    print(
        f"  evaluation {ev['evaluation_images_per_s']:8.1f} img/s vs plain forward "
        f"{ev['plain_forward_images_per_s']:.1f} img/s ({ev['ratio']:.2f}x)"
    )
    dl = result["data_loading"]
    print(f"  loading    step fed by the DataLoader {dl['ratio']:.3f}x a step on a cached batch")


if __name__ == "__main__":
    sys.exit(main())
