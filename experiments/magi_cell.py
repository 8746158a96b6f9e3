"""One cell of a sweep's MAGI row: its paired differences and what its generator did.

    python experiments/magi_cell.py runs/noise_curve data.params.level=0.5

reads the finished runs of the rows ``magi`` (``--row``), ``consensus`` (``--versus``),
``baseline`` (``--floor``) and ``oracle`` (``--ceiling``) of a sweep folder whose resolved
recipes have ``KEY=VALUE`` (the sweep's ``--vary``), pairs them by their folder name (the
same training seed and data draw), and prints, as a Markdown table:

- the row minus the vote and minus the Baseline, on test accuracy and worst-group
  accuracy: mean, paired 95% t-interval and how many pairs are above (``esx.stats``);
- the generated masks' vote minus the observed vote, squared error against the true mask
  on the test images (``aggregator.generation`` in metrics.json), and the error of the
  generated masks of hidden annotations minus a copy of the vote
  (``aggregator.imputation``);
- each slot's area against the true mask's, sorted, as the range over runs, and, where
  they moved from uniform (``targets: weighted``), the slots' learned weights in that order;
- the prediction loss of the last training epoch (history.csv's ``train_pred``) of the
  row, the vote and the Oracle: mean and range.

These are the numbers of the "MAGI at level ..." sections of the noise curve's page and
of the lab notebook's tables.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import yaml

from esx.reporting.runs import collect
from esx.stats import paired


def runs(folder: Path, where: str) -> dict[str, dict]:
    """The finished runs of one row whose resolved recipe has ``KEY=VALUE``, by folder name
    (read by ``esx report``'s own reader, so a broken metrics.json is named alike)."""
    if not folder.is_dir():
        return {}
    key, _, text = where.partition("=")
    value = yaml.safe_load(text)
    out: dict[str, dict] = {}
    for row in collect(folder):
        have = row.experiment.get(key)
        same = have == value or (
            isinstance(have, int | float)
            and isinstance(value, int | float)
            and float(have) == value
        )
        if same:
            out |= row.by_pair()
    return out


def last_train_loss(run: Path) -> float | None:
    history = run / "history.csv"
    if not history.is_file():
        return None
    rows = list(csv.DictReader(history.open()))
    value = rows[-1].get("train_pred") if rows else None
    return float(value) if value not in (None, "") else None


def _ci(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    p = paired([v * scale for v in values], [0.0] * len(values))
    if p.n < 2:
        return f"{p.mean:+.{digits}f} (1 pair)"
    return (
        f"{p.mean:+.{digits}f} [{p.low:+.{digits}f}, {p.high:+.{digits}f}] "
        f"({p.wins} of {p.n} above)"
    )


def table(root: Path, where: str, row: str, versus: str, floor: str, ceiling: str) -> str:
    mine = runs(root / row, where)
    if not mine:
        sys.exit(f"{root / row} has no finished run whose name holds {where!r}")
    others = {name: runs(root / name, where) for name in (versus, floor)}
    lines = [f"| {row}, {where} ({len(mine)} runs) | mean [95% t-interval] |", "| --- | --- |"]
    for name, rows in others.items():
        keys = sorted(set(mine) & set(rows))
        for metric in ("accuracy", "worst_group_accuracy"):
            d = [mine[k]["test"][metric] - rows[k]["test"][metric] for k in keys]
            if d:
                lines.append(f"| − {name}, test {metric} (points) | {_ci(d, 100)} |")
    gen = [m["aggregator"]["generation"] for m in mine.values() if "generation" in m["aggregator"]]
    if gen:
        d = [g["generated"]["mse"] - g["noisy"]["mse"] for g in gen]
        obs = np.mean([g["noisy"]["mse"] for g in gen])
        new = np.mean([g["generated"]["mse"] for g in gen])
        lines.append(
            "| generated − observed vote, MSE against the true mask (test) "
            f"| {_ci(d, digits=3)}; observed {obs:.3g}, generated {new:.3g} |"
        )
    imp = [m["aggregator"].get("imputation", {}) for m in mine.values()]
    imp = [i for i in imp if "l1_generated" in i]
    if imp:
        d = [i["l1_generated"] - i["l1_copy_consensus"] for i in imp]
        lines.append(
            f"| hidden annotations: L1 generated − L1 copying the vote | {_ci(d, digits=3)} |"
        )
    # Each run's slots, smallest first: (area against the true mask's, learned weight).
    slots = [
        sorted((a["area_vs_truth"], a.get("weight")) for a in m["aggregator"].get("annotators", []))
        for m in mine.values()
    ]
    if slots and slots[0] and all(len(s) == len(slots[0]) for s in slots):

        def spans(j: int, digits: int) -> str:
            return ", ".join(
                f"{min(s[i][j] for s in slots):.{digits}f}–{max(s[i][j] for s in slots):.{digits}f}"
                for i in range(len(slots[0]))
            )

        lines.append(
            f"| slots' area / the true mask's area, sorted (range over runs) | {spans(0, 2)} |"
        )
        # drawn only where the weights moved from uniform, i.e. with ``targets: weighted``
        weights = [w for s in slots for _, w in s]
        uniform = 1 / len(slots[0])
        if None not in weights and any(abs(w - uniform) > 1e-6 for w in weights):
            lines.append(
                f"| slots' learned weight, in the same order (range over runs) | {spans(1, 3)} |"
            )
    losses = []
    for name in (row, versus, ceiling):
        values = [last_train_loss(root / name / k) for k in mine]
        values = [v for v in values if v is not None]
        if values:
            losses.append(f"{name} {np.mean(values):.2f} ({min(values):.2f}–{max(values):.2f})")
    if losses:
        lines.append(f"| training loss, last epoch: mean (range) | {'; '.join(losses)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="a sweep's --out folder, e.g. runs/noise_curve")
    ap.add_argument("where", help="KEY=VALUE in the run folders' names, e.g. data.params.level=0.5")
    ap.add_argument("--row", default="magi")
    ap.add_argument("--versus", default="consensus")
    ap.add_argument("--floor", default="baseline")
    ap.add_argument("--ceiling", default="oracle")
    a = ap.parse_args(argv)
    print(table(a.root, a.where, a.row, a.versus, a.floor, a.ceiling))
    return 0


if __name__ == "__main__":
    sys.exit(main())
