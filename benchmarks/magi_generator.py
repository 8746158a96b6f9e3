"""MAGI's generator step with its head on channels-last activations, against the default
layout, measured in one process.

One Adam-free training step (forward and backward) of ``esx_magi.model.Generator`` at the
noise curve's size (batch 256, four annotators, 28-px generation, width 8) and at the
main job's (batch 16, four annotators, 56 px, width 16), both layouts alternating, the
median of ``--repeats`` each; it also prints the largest difference of the two layouts'
logits, which is float rounding.

    python benchmarks/magi_generator.py [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from esx_magi.model import Generator

SIZES = {
    "noise curve (256 x 4 x 28 px, width 8)": (256, 4, 28, 8),
    "main job (16 x 4 x 56 px, width 16)": (16, 4, 56, 16),
}


def step(g: Generator, image: torch.Tensor, vote: torch.Tensor) -> None:
    logits, kl = g(image, vote)
    (logits.sigmoid().mean() + kl.mean()).backward()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} threads; median of {args.repeats} steps")
    for name, (b, u, r, width) in SIZES.items():
        torch.manual_seed(0)
        g = Generator(1, u, 16, 16, 8, width)
        image = torch.randn(b, 1, r, r)
        vote = (torch.rand(b, 1, r, r) > 0.7).float()
        times: dict[bool, list[float]] = {False: [], True: []}
        for i in range(2 * args.repeats + 2):
            last = bool(i % 2)
            g.channels_last = last
            start = time.perf_counter()
            step(g, image, vote)
            if i >= 2:  # the first step of each layout warms up
                times[last].append(time.perf_counter() - start)
        g.eval()
        with torch.no_grad():
            g.channels_last = False
            plain = g(image, vote)[0]
            g.channels_last = True
            diff = float((g(image, vote)[0] - plain).abs().max())
        before, after = (statistics.median(times[k]) for k in (False, True))
        print(
            f"{name}: default {before * 1e3:.0f} ms, channels-last {after * 1e3:.0f} ms, "
            f"ratio {before / after:.2f}x; largest logit difference {diff:.1e}"
        )


if __name__ == "__main__":
    main()
