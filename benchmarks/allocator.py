"""An esx run with freed memory kept for reuse (the esx commands' default) against the
same run with malloc as is (``ESX_ALLOCATOR=system``), measured in one invocation.

Each round runs the recipe once each way, as two ``esx run`` processes one after the
other (the order alternating between rounds, so machine noise hits both alike), for
``--epochs`` epochs. It prints, per way, the median seconds an epoch (from run.log,
the first epoch left out as warm-up) and the processes' kernel (system) CPU seconds,
the ratio of the epoch times, and whether the two ways' histories and best checkpoints
are identical byte for byte (they should be: only where memory comes from changes).

    python benchmarks/allocator.py                      # the noise curve's MAGI row
    python benchmarks/allocator.py --recipe recipes/quickstart.yaml --epochs 2
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "recipes/noise_curve/magi_weighted.yaml"  # at level 0.75 unless --set
EPOCH = re.compile(r"^(\S+ \S+) epoch (\d+) ")


def epoch_seconds(log: Path) -> list[float]:
    """Seconds between consecutive ``epoch N`` lines of a run.log (epoch 2 on)."""
    stamps = [
        datetime.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f")
        for m in map(EPOCH.match, log.read_text().splitlines())
        if m
    ]
    return [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:], strict=False)]


def one_run(recipe: Path, sets: list[str], out: Path, way: str) -> float:
    """Run ``recipe`` into ``out`` with ``ESX_ALLOCATOR=way``; its system CPU seconds."""
    env = {**os.environ, "ESX_ALLOCATOR": way, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "esx", "run", str(recipe), "--out", str(out), "--quiet"]
    for item in sets:
        cmd += ["--set", item]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime
    subprocess.run(cmd, env=env, check=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime - before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, default=DEFAULT)
    ap.add_argument("--set", dest="sets", action="append", default=None,
                    help="a recipe override, as esx run takes it (repeatable)")  # fmt: skip
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    level = ["data.params.level=0.75"] if args.recipe == DEFAULT else []
    sets = [f"train.epochs={args.epochs}", *(args.sets if args.sets is not None else level)]
    ways = ("system", "reuse")
    epochs: dict[str, list[float]] = {w: [] for w in ways}
    kernel: dict[str, list[float]] = {w: [] for w in ways}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for way in ways if r % 2 == 0 else ways[::-1]:
                out = Path(tmp) / f"{way}{r}"
                kernel[way].append(one_run(args.recipe, sets, out, way))
                epochs[way].extend(epoch_seconds(out / "run.log"))
        first = Path(tmp) / "system0"
        same = all(
            (first / f).read_bytes() == (Path(tmp) / f"{way}{r}" / f).read_bytes()
            for way in ways
            for r in range(args.rounds)
            for f in ("history.csv", "best.safetensors")
        )
    print(f"{args.recipe.name} ({', '.join(sets)}), {args.rounds} rounds:")
    for way in ways:
        print(
            f"  {way:6s}: {statistics.median(epochs[way]):.2f} s an epoch (median of "
            f"{len(epochs[way])}), {statistics.median(kernel[way]):.1f} s of kernel CPU a run"
        )
    ratio = statistics.median(epochs["system"]) / statistics.median(epochs["reuse"])
    print(f"  ratio system / reuse: {ratio:.2f}x")
    print(f"  history and best checkpoint identical in every run: {same}")


if __name__ == "__main__":
    main()
