"""Which epoch does checkpoint selection pick, and had the supervision acted by then?

For finished runs grouped by their parent folder (one row, several seeds and
data draws), reads ``history.csv`` and ``metrics.json`` and prints one
Markdown line per row:

- the chosen epoch (median, range) and how many runs chose the last epoch;
- the epoch at which the explanation loss (``train_exp``) first fell to half
  its first-epoch value: the supervision has acted from there on (rows
  without supervision show "-"; "n not halved" counts supervised runs whose
  explanation loss never halved, e.g. the energy loss, which stays near 1);
- how many runs chose an epoch *before* that point (selection picking a
  model the supervision had not yet shaped);
- the first epoch whose validation accuracy leaves 0.5 (the classifier stops
  calling every image one class), and the validation AUC's rise over the last
  three epochs (still rising: training is short of convergence).

    python experiments/selection_epochs.py runs/keyrows/a_baseline runs/keyrows/oracle
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path


def first_epoch(flags: list[bool]) -> int | None:
    """The 1-based epoch of the first true flag, or None."""
    return next((i + 1 for i, flag in enumerate(flags) if flag), None)


def run_summary(run: Path) -> dict[str, float | None]:
    """A run's chosen epoch, when the supervision acted and the classifier moved, the AUC's rise."""
    rows = list(csv.DictReader((run / "history.csv").open()))
    best = json.loads((run / "metrics.json").read_text())["validation"]["best_epoch"]
    exp = [float(r.get("train_exp") or 0) for r in rows]  # absent for unsupervised rows
    supervised = exp[0] > 0
    acted = first_epoch([e <= exp[0] / 2 for e in exp]) if supervised else None
    moved = first_epoch([abs(float(r["val_accuracy"]) - 0.5) > 0.01 for r in rows])
    auc = [float(r["val_auc"]) for r in rows]
    return {
        "best": best,
        "last": len(rows),
        "supervised": supervised,
        "acted": acted,
        "moved": moved,
        "late_rise": auc[-1] - auc[-4] if len(auc) >= 4 else None,
    }


def row_line(name: str, runs: list[dict[str, float | None]]) -> str:
    best = [r["best"] for r in runs]
    acted = [r["acted"] for r in runs if r["acted"] is not None]
    unhalved = sum(1 for r in runs if r["supervised"] and r["acted"] is None)
    early = sum(1 for r in runs if r["acted"] is not None and r["best"] < r["acted"])
    moved = [r["moved"] for r in runs if r["moved"] is not None]
    rise = [r["late_rise"] for r in runs if r["late_rise"] is not None]
    at_last = sum(1 for r in runs if r["best"] == r["last"])
    cells = [
        name,
        str(len(runs)),
        f"{statistics.median(best):g} ({min(best)}–{max(best)})",
        f"{at_last}/{len(runs)}",
        "; ".join(
            ([f"{statistics.median(acted):g} ({min(acted)}–{max(acted)})"] if acted else [])
            + ([f"{unhalved} not halved"] if unhalved else [])
        )
        or "-",
        f"{early}/{len(runs)}" if acted else "-",
        f"{statistics.median(moved):g} ({min(moved)}–{max(moved)})" if moved else "-",
        f"{statistics.mean(rise):+.3f} ({sum(x > 0 for x in rise)}/{len(rise)} rising)"
        if rise
        else "-",
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="+", type=Path, help="row folders holding seed*/ runs")
    args = ap.parse_args(argv)
    print(
        "| row | runs | chosen epoch | chose the last | supervision acted by | chose before it "
        "| val accuracy leaves 0.5 at | val AUC, last 3 epochs |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in args.rows:
        runs = [run_summary(m.parent) for m in sorted(row.glob("*/metrics.json"))]
        if not runs:
            print(f"{row}: no finished runs (metrics.json)", file=sys.stderr)
            return 2
        print(row_line(row.name, runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
