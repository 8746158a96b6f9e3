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
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from esx.errors import EsxError  # noqa: E402
from esx.interfaces import BuildContext  # noqa: E402
from esx.plugins import registry  # noqa: E402
from esx.recipe import load_recipe  # noqa: E402


def reliance(run: Path) -> dict[str, float]:
    """Accuracies on marker-agreeing and marker-conflicting test images of one run."""
    reg = registry()
    recipe = load_recipe(run / "recipe.yaml", reg)
    if recipe.data.name != "phantom":
        raise EsxError(
            f"{run}: data {recipe.data.name!r} has no spurious marker; "
            "this measure needs the phantom"
        )
    data = recipe.data.build(BuildContext(seed=recipe.seed))
    test = data.split("test")
    with open(run / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    hits = {"agree": [], "conflict": []}
    for r in rows:
        label, pred = int(r["label"]), int(r["pred"])
        side = "agree" if test.cue_present(int(r["id"])) == bool(label) else "conflict"
        hits[side].append(label == pred)
    out = {k: sum(v) / len(v) for k, v in hits.items()}
    out["accuracy"] = sum(hits["agree"] + hits["conflict"]) / len(rows)
    out["gap"] = out["agree"] - out["conflict"]
    return out


def runs_of(folder: Path) -> list[Path]:
    if (folder / "predictions.csv").is_file():
        return [folder]
    return sorted(p for p in folder.glob("seed*") if (p / "predictions.csv").is_file())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "folders", nargs="+", type=Path, help="a run folder, or a method folder holding seed*/ runs"
    )
    args = ap.parse_args(argv)
    cols = ("accuracy", "agree", "conflict", "gap")
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
