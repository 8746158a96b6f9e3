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
  row, the vote and the Oracle, and the explanation loss of the first (``train_exp``) of
  the row and the vote: mean and range.

``--others FOLDER`` reads the rows it compares with (``--versus``, ``--floor``,
``--ceiling``) from another sweep folder, paired by the same folder names: a row run
apart (a side experiment, another device) against the curve's own runs, e.g.

    python experiments/magi_cell.py runs/noise_curve_gpu_check data.params.level=0.25 \
        --row consensus --others runs/noise_curve_confirm

These are the numbers of the "MAGI at level ..." sections of the noise curve's page and
of the lab notebook's tables.
"""

from __future__ import annotations

import argparse
import csv
import sys
from functools import cache
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


@cache
def _history(run: Path) -> list[dict[str, str]]:
    """A run's history.csv, one dict an epoch, read once however many losses are asked of it."""
    history = run / "history.csv"
    return list(csv.DictReader(history.open())) if history.is_file() else []


def train_loss(run: Path, column: str = "train_pred", epoch: int = -1) -> float | None:
    """One training loss of a run's history.csv: ``column`` at ``epoch`` (an index: -1 the
    last epoch, 0 the first); None where the run has no such value."""
    rows = _history(run)
    value = rows[epoch].get(column) if rows else None
    return float(value) if value not in (None, "") else None


def _spread(
    rows: list[tuple[str, Path]], names: list[str], column: str, epoch: int, fmt: str = ".2f"
) -> str:
    """``name mean (min–max)`` of one training loss over each row's runs ``names``."""
    out = []
    for label, folder in rows:
        values = [train_loss(folder / k, column, epoch) for k in names]
        values = [v for v in values if v is not None]
        if values:
            out.append(f"{label} {np.mean(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})")
    return "; ".join(out)


def _ci(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    p = paired([v * scale for v in values], [0.0] * len(values))
    if p.n < 2:
        return f"{p.mean:+.{digits}f} (1 pair)"
    return (
        f"{p.mean:+.{digits}f} [{p.low:+.{digits}f}, {p.high:+.{digits}f}] "
        f"({p.wins} of {p.n} above)"
    )


def table(
    root: Path,
    where: str,
    row: str,
    versus: str,
    floor: str,
    ceiling: str,
    others_root: Path | None = None,
) -> str:
    mine = runs(root / row, where)
    if not mine:
        sys.exit(f"{root / row} has no finished run whose name holds {where!r}")
    base = others_root or root
    others = {name: runs(base / name, where) for name in (versus, floor)}
    if not others[versus]:
        sys.exit(f"{base / versus} has no finished run whose name holds {where!r}")

    def label(name: str) -> str:  # a compared row, named with its folder when it is another
        return name if base == root else f"{name} in {base}"

    lines = [f"| {row}, {where} ({len(mine)} runs) | mean [95% t-interval] |", "| --- | --- |"]
    for name, rows in others.items():
        keys = sorted(set(mine) & set(rows))
        for metric in ("accuracy", "worst_group_accuracy"):
            d = [mine[k]["test"][metric] - rows[k]["test"][metric] for k in keys]
            if d:
                lines.append(f"| − {label(name)}, test {metric} (points) | {_ci(d, 100)} |")
    # what the row's aggregator recorded, run by run (nothing for a row without one)
    records = [m.get("aggregator", {}) for m in mine.values()]
    gen = [r["generation"] for r in records if "generation" in r]
    if gen:
        d = [g["generated"]["mse"] - g["noisy"]["mse"] for g in gen]
        obs = np.mean([g["noisy"]["mse"] for g in gen])
        new = np.mean([g["generated"]["mse"] for g in gen])
        lines.append(
            "| generated − observed vote, MSE against the true mask (test) "
            f"| {_ci(d, digits=3)}; observed {obs:.3g}, generated {new:.3g} |"
        )
    imp = [r.get("imputation", {}) for r in records]
    imp = [i for i in imp if "l1_generated" in i]
    if imp:
        d = [i["l1_generated"] - i["l1_copy_consensus"] for i in imp]
        lines.append(
            f"| hidden annotations: L1 generated − L1 copying the vote | {_ci(d, digits=3)} |"
        )
    # Each run's slots, smallest first: (area against the true mask's, learned weight).
    slots = [
        sorted((a["area_vs_truth"], a.get("weight")) for a in r.get("annotators", []))
        for r in records
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
    rows = [(row, root / row), (label(versus), base / versus), (label(ceiling), base / ceiling)]
    last = _spread(rows, sorted(mine), "train_pred", -1)
    if last:
        lines.append(f"| training loss, last epoch: mean (range) | {last} |")
    first = _spread(rows[:2], sorted(mine), "train_exp", 0, ".3g")
    if first:
        lines.append(f"| explanation loss, first epoch: mean (range) | {first} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="a sweep's --out folder, e.g. runs/noise_curve")
    ap.add_argument("where", help="KEY=VALUE in the run folders' names, e.g. data.params.level=0.5")
    ap.add_argument("--row", default="magi")
    ap.add_argument("--versus", default="consensus")
    ap.add_argument("--floor", default="baseline")
    ap.add_argument("--ceiling", default="oracle")
    ap.add_argument(
        "--others", type=Path, default=None, help="the folder of the compared rows (default: root)"
    )
    a = ap.parse_args(argv)
    print(table(a.root, a.where, a.row, a.versus, a.floor, a.ceiling, a.others))
    return 0


if __name__ == "__main__":
    sys.exit(main())
