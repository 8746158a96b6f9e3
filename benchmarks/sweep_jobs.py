"""Wall time of one sweep with ``--jobs 1`` against ``--jobs 2``, measured in the same run.

The same four small runs (recipes/quickstart.yaml, by default at 64 px and 3
epochs, seeds 0-3, 64 validation and test images) go into two fresh folders:
first one at a time in this process, then two at once, each its own ``esx
run`` process with half the cores. Prints both wall times and their ratio.

    python benchmarks/sweep_jobs.py [--runs 4] [--epochs 3] [--size 64]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep(out: Path, jobs: int, runs: int, epochs: int, size: int) -> float:
    sets = [
        f"data.params.image_size={size}", "data.params.n_val=64", "data.params.n_test=64",
        f"train.epochs={epochs}", "eval.overlays=0",
    ]  # fmt: skip
    cmd = [sys.executable, "-m", "esx", "sweep", str(ROOT / "recipes" / "quickstart.yaml"),
           "--seeds", f"0-{runs - 1}", "--out", str(out), "--jobs", str(jobs),
           *(x for s in sets for x in ("--set", s))]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = sweep(Path(tmp) / "one", 1, a.runs, a.epochs, a.size)
        two = sweep(Path(tmp) / "two", 2, a.runs, a.epochs, a.size)
    print(
        f"{a.runs} runs of {a.epochs} epochs at {a.size} px, {os.cpu_count()} cores: "
        f"--jobs 1 {one:.1f} s, --jobs 2 {two:.1f} s, ratio {two / one:.2f}"
    )


if __name__ == "__main__":
    main()
