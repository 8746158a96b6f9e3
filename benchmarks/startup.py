"""How long the command line takes to start: ``esx --help`` and ``esx plugins``, against
two baselines measured in the same run: the floor (a Python that imports only typer and
rich, which any typer CLI pays) and the ceiling (a Python that imports torch, timm and
captum, which esx paid at start-up until components were registered by import path).

    python benchmarks/startup.py [--repeat 5]

Prints the median wall time of each and the ratios. The promise (docs/explanation/performance.md):
under 2 s on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "floor: python -c 'import typer, rich.console'": [
        sys.executable,
        "-c",
        "import typer, rich.console",
    ],
    "ceiling: python -c 'import torch, timm, captum.attr'": [
        sys.executable,
        "-c",
        "import torch, timm, captum.attr",
    ],
    "esx --help": [sys.executable, "-m", "esx", "--help"],
    "esx plugins": [sys.executable, "-m", "esx", "plugins"],
}


def median_seconds(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    got = {name: median_seconds(cmd, a.repeat) for name, cmd in COMMANDS.items()}
    floor = got["floor: python -c 'import typer, rich.console'"]
    ceiling = got["ceiling: python -c 'import torch, timm, captum.attr'"]
    for name, s in got.items():
        print(f"{name:55s} {s:6.2f} s  {s / floor:5.2f}x floor  {s / ceiling:5.2f}x ceiling")


if __name__ == "__main__":
    main()
