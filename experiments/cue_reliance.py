"""How much do finished phantom runs rely on the spurious marker?

The phantom's test split places the marker on half of all images regardless
of the label. A model that learned "marker means nodule" is right more often
where the two agree (positives with the marker, negatives without) than where
they conflict (positives without, negatives with). The gap between the two
accuracies measures that reliance; a model that ignores the marker has a gap
near 0.

Reads each run's ``recipe.yaml`` (to rebuild the test split's marker flags)
and ``predictions.csv``; runs are grouped by their parent folder (one method,
several seeds), and the table gives mean ± std over seeds.

    python experiments/cue_reliance.py runs/table1_amax/oracle runs/table1_amax/b_gradia
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
from esx.interfaces import BuildContext  # noqa: E402
from esx.plugins import registry  # noqa: E402
from esx.recipe import load_recipe  # noqa: E402


def cue_reliance(labels: np.ndarray, preds: np.ndarray, cue: np.ndarray) -> dict[str, float]:
    """Accuracy where a spurious cue agrees with the label (positives with it, negatives
    without), where it conflicts (positives without, negatives with), and the difference:
    how much the model leans on the cue (near 0 when it ignores it)."""
    labels, preds, cue = (np.asarray(x).astype(bool) for x in (labels, preds, cue))
    agree = cue == labels
    out = {
        "accuracy_cue_agree": float(np.mean(preds[agree] == labels[agree]))
        if agree.any()
        else None,
        "accuracy_cue_conflict": (
            float(np.mean(preds[~agree] == labels[~agree])) if (~agree).any() else None
        ),
    }
    if None not in out.values():
        out["cue_reliance"] = out["accuracy_cue_agree"] - out["accuracy_cue_conflict"]
    return out


def reliance(run: Path) -> dict[str, float]:
    """Accuracies on marker-agreeing and marker-conflicting test images of one run."""
    reg = registry()
    recipe = load_recipe(run / "recipe.yaml", reg)
    data = recipe.data.build(BuildContext(seed=recipe.seed))
    test = data.split("test")
    if not callable(getattr(test, "cue_present", None)):
        raise EsxError(
            f"{run}: data {recipe.data.name!r} has no spurious marker (no cue_present); "
            "this measure needs the phantom or lidc_readers"
        )
    with open(run / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([int(r["label"]) for r in rows])
    preds = np.array([int(r["pred"]) for r in rows])
    cue = np.array([test.cue_present(int(r["id"])) for r in rows])
    out = cue_reliance(labels, preds, cue)
    out["accuracy"] = float(np.mean(labels == preds))
    return out


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
