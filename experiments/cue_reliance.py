"""How much do finished phantom runs rely on the spurious marker?

The phantom's test split places the marker on half of all images regardless
of the label. A model that learned "marker means nodule" is right more often
where the two agree (positives with the marker, negatives without) than where
they conflict (positives without, negatives with). The gap between the two
accuracies measures that reliance; a model that ignores the marker has a gap
near 0.

Every run now writes both accuracies itself (``accuracy_cue_agree`` and
``accuracy_cue_conflict`` in ``metrics.json``: the phantom declares the two
groups, :meth:`esx_phantom.dataset.Phantom.groups`), so ``esx report --metrics
accuracy_cue_conflict`` reads them directly. This script adds the gap,
``cue_reliance``, and computes the accuracies for runs made before, from their
``predictions.csv`` with the same code the runs use
(:func:`esx.evaluation.group_metrics`); runs are grouped by their parent folder
(one method, several seeds), and the table gives mean ± std over seeds.

    python experiments/cue_reliance.py runs/table1/oracle runs/table1/b_gradia
    python experiments/cue_reliance.py runs/keyrows/* --into runs/keyrows_cue
    esx report runs/keyrows_cue --metrics accuracy_cue_conflict,cue_reliance
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from esx.errors import EsxError  # noqa: E402
from esx.evaluation import regroup  # noqa: E402

GROUPS = ("accuracy_cue_agree", "accuracy_cue_conflict")


def reliance(run: Path) -> dict[str, float]:
    """Accuracies on marker-agreeing and marker-conflicting test images of one run, and
    their difference; read from its ``metrics.json`` when the run wrote them."""
    path = run / "metrics.json"
    test = json.loads(path.read_text()).get("test", {}) if path.is_file() else {}
    if all(k in test for k in GROUPS):
        out = {k: test[k] for k in ("accuracy", *GROUPS)}
    else:
        out = _from_predictions(run)
    out["cue_reliance"] = out["accuracy_cue_agree"] - out["accuracy_cue_conflict"]
    return out


def _from_predictions(run: Path) -> dict[str, float]:
    """The run's group accuracies made again from ``predictions.csv``, as the run makes them."""
    found, section = regroup(run)
    missing = [k for k in GROUPS if k not in found]
    if missing:
        raise EsxError(
            f"{run}: data declared by {section['declared_by']!r} has no spurious marker (no "
            f"{missing[0][9:]} group); this measure needs the phantom or lidc_readers"
        )
    with open(run / "predictions.csv", newline="") as f:
        correct = [int(r["label"]) == int(r["pred"]) for r in csv.DictReader(f)]
    return {"accuracy": float(np.mean(correct)), **{k: found[k] for k in GROUPS}}


def copy_with_reliance(run: Path, into: Path) -> None:
    """Copy a run's metrics (the reliance added to ``test`` and declared lower-is-better),
    recipe and predictions, so that ``esx report INTO --metrics accuracy_cue_conflict,...``
    pairs them."""
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["test"].update({k: v for k, v in reliance(run).items() if k != "accuracy"})
    # a lower reliance is the better one; the report reads the declaration, not the name
    metrics["lower_is_better"] = sorted({*metrics.get("lower_is_better", []), "cue_reliance"})
    into.mkdir(parents=True, exist_ok=True)
    (into / "metrics.json").write_text(json.dumps(metrics, indent=2))
    for name in ("recipe.yaml", "predictions.csv"):
        shutil.copy(run / name, into / name)


def runs_of(folder: Path) -> list[Path]:
    if (folder / "predictions.csv").is_file():
        return [folder]
    return sorted(p for p in folder.glob("seed*") if (p / "predictions.csv").is_file())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "folders", nargs="+", type=Path, help="a run folder, or a method folder holding seed*/ runs"
    )
    ap.add_argument(
        "--into",
        type=Path,
        help="also copy each run, its reliance added to metrics.json, to INTO/<method>/<run>",
    )
    args = ap.parse_args(argv)
    if args.into:
        for folder in args.folders:
            for run in runs_of(folder):
                copy_with_reliance(run, args.into / run.parent.name / run.name)
    cols = ("accuracy", "accuracy_cue_agree", "accuracy_cue_conflict", "cue_reliance")
    print("| runs | seeds | " + " | ".join(cols) + " |")
    print("| --- | --- |" + " --- |" * len(cols))
    for folder in args.folders:
        runs = runs_of(folder)
        if not runs:
            sys.exit(f"{folder}: no finished run (predictions.csv) in it or in its seed*/ folders")
        scores = [reliance(r) for r in runs]
        cells = [mean_std([s[k] for s in scores]) for k in cols]
        print(f"| {folder} | {len(runs)} | " + " | ".join(cells) + " |")


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


if __name__ == "__main__":
    main()
