"""The runs under a folder: one :class:`Row` per resolved experiment, and the runs that
did not finish.

Runs are grouped by the folder above ``seed<k>`` (a sweep's layout) or, for a flat
folder of runs, by the run folder; within a group, runs whose resolved recipes
differ in anything but the seed, the data draw, labels and where they computed
are split into rows of their own, labelled with the keys that differ. The
precision is the one each run used (``auto`` on a CPU and ``fp32`` on a GPU are
one experiment). Rows with the same label are told apart by their folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from esx import inputs
from esx.errors import EsxError
from esx.runlog import read_status
from esx.runtime import precision_name

#: the ``metrics.json`` key listing the run's metrics where a lower value is the better one;
#: their paired verdicts and wins are turned round
LOWER_IS_BETTER_KEY = "lower_is_better"

#: recipe keys that do not make two runs different experiments: the pairing variables (seed,
#: data draw: any ``data.*.seed``), report labels, and where and how a run computed
NOT_EXPERIMENT = (
    "seed",
    "label",
    "group",
    "reference",
    "device",
    "train.num_workers",
    "train.eval_batch_size",
    "train.keep_last_checkpoint",
    "eval.overlays",
)


@dataclass
class Row:
    key: str
    label: str
    group: str
    reference: bool = False
    epochs: set[int] = field(default_factory=set)
    runs: list[dict[str, Any]] = field(default_factory=list)
    #: each run's folder; its name (seed0, seed3-...) pairs it with other rows' runs
    folders: list[Path] = field(default_factory=list)
    #: the resolved experiment (flattened recipe without :data:`NOT_EXPERIMENT`)
    experiment: dict[str, Any] = field(default_factory=dict)
    #: whether the runs' data was synthetic (True, False, or None when mixed)
    synthetic: bool | None = None
    #: the label before rows were told apart (the recipe's label, or what it ran)
    name: str = ""

    def by_pair(self) -> dict[str, dict[str, Any]]:
        return {f.name: run for f, run in zip(self.folders, self.runs, strict=True)}


def _label(recipe: dict[str, Any], key: str) -> str:
    """The recipe's ``label``; else what it ran (``loss on aggregator``); else the folder."""
    if recipe.get("label"):
        return str(recipe["label"])
    try:
        return f"{recipe['loss']['name']} on {recipe['aggregator']['name']}"
    except (KeyError, TypeError):
        return key


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}`` (lists stay values)."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= flatten(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v}
    return out


def _draw(key: str) -> bool:
    """A data draw's seed (``data.params.seed``, ``data.params.of.params.seed``, ...)."""
    return key.startswith("data.") and key.endswith(".seed")


def experiment(recipe: dict[str, Any], run: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a run computed: its resolved recipe, flattened, without :data:`NOT_EXPERIMENT`
    and the data draw's seeds; ``train.precision`` as the run resolved it (its
    ``metrics.json``'s ``run.precision``: ``auto`` is fp32 on a CPU, bf16 on most GPUs)
    where ``run`` records it."""
    exp = {k: v for k, v in flatten(recipe).items() if k not in NOT_EXPERIMENT and not _draw(k)}
    used = ((run or {}).get("run") or {}).get("precision")
    if used is not None:
        exp["train.precision"] = precision_name(used)
    return exp


def collect(root: Path) -> list[Row]:
    """Every finished run under ``root`` (a ``metrics.json``), in rows."""
    rows: dict[tuple[str, str], Row] = {}
    for metrics_path in sorted(root.rglob("metrics.json")):
        folder = metrics_path.parent
        key = folder.parent.name if folder.name.startswith("seed") else folder.name
        recipe_path = folder / "recipe.yaml"
        recipe = yaml.safe_load(recipe_path.read_text()) if recipe_path.is_file() else {}
        fix = "rerun that run, or move its folder out of the report's"
        run = inputs.read_json(metrics_path, fix)
        exp = experiment(recipe or {}, run)
        ident = (key, json.dumps(exp, sort_keys=True, default=str))
        label = _label(recipe, key)
        fresh = Row(key, label, recipe.get("group") or "", experiment=exp, name=label)
        row = rows.setdefault(ident, fresh)
        row.reference |= bool(recipe.get("reference"))
        row.epochs.add(int(recipe.get("train", {}).get("epochs", 0)))
        _declared_lower(run, metrics_path)  # a malformed declaration stops here, naming the file
        synthetic = bool(run.get("data", {}).get("synthetic"))
        row.synthetic = synthetic if not row.runs or row.synthetic == synthetic else None
        row.runs.append(run)
        row.folders.append(folder)
    if not rows:
        raise EsxError(f"no runs (metrics.json files) under {root}; run `esx sweep` first")
    out = sorted(rows.values(), key=lambda r: (r.group, r.key, r.label))
    _tell_apart(out)
    return out


def _tell_apart(rows: list[Row]) -> None:
    """Give rows of one folder that ran different experiments the keys that differ, and
    rows that share a label their folder's name."""
    by_key: dict[str, list[Row]] = {}
    for r in rows:
        by_key.setdefault(r.key, []).append(r)
    for same in by_key.values():
        if len(same) < 2:
            continue
        keys = sorted({k for r in same for k in r.experiment})
        differ = [k for k in keys if len({json.dumps(r.experiment.get(k)) for r in same}) > 1]
        for r in same:
            r.label += " [" + ", ".join(f"{k}={r.experiment.get(k)}" for k in differ) + "]"
    by_label: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        by_label.setdefault((r.group, r.label), []).append(r)
    for same in by_label.values():
        if len(same) > 1:
            for r in same:
                r.label += f" ({r.key})"


def unfinished(root: Path) -> list[dict[str, Any]]:
    """The run folders under ``root`` without metrics.json that say why (status.json): each
    with its status (:func:`esx.runlog.read_status`: a run whose process is gone reads as
    interrupted), where it stopped and its error."""
    out = []
    for status in sorted(root.rglob("status.json")):
        folder = status.parent
        if (folder / "metrics.json").is_file():
            continue
        try:
            st = json.loads(status.read_text())
        except (OSError, ValueError):
            st = {}
        out.append(
            {
                "run": str(folder.relative_to(root)),
                "status": read_status(folder),
                "where": st.get("where", ""),
                "error": " ".join(str(st.get("error", "")).split())[:200],
            }
        )
    return out


def _declared_lower(run: dict[str, Any], path: Path) -> set[str]:
    """The metrics a run's ``metrics.json`` declares lower-is-better: whoever writes a
    metric says which way it reads, so that the core need not know it."""
    names = run.get(LOWER_IS_BETTER_KEY, [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise EsxError(
            f"{path}: {LOWER_IS_BETTER_KEY!r} is {names!r}; it must be a list of metric names "
            f'such as ["cue_reliance"] (the metrics where a lower value is the better one)'
        )
    return set(names)


def lower_is_better(rows: list[Row]) -> frozenset[str]:
    """The metrics any run under the report declares lower-is-better."""
    return frozenset(m for r in rows for run in r.runs for m in run.get(LOWER_IS_BETTER_KEY, []))


def metric(run: dict[str, Any], name: str) -> Any:
    """A run's test metric, or its explanation metric of that name."""
    if name in run.get("test", {}):
        return run["test"][name]
    return (run.get("explanation") or {}).get(name)


def shown_runs(root: Path, rows: list[Row], patterns: list[str] | None) -> list[Path]:
    """The run folders whose figures a folder's HTML page embeds: those matching any of
    ``patterns`` (globs relative to ``root``, e.g. ``a_magi/seed0``), else each row's
    first run."""
    if patterns is None:
        return [sorted(r.folders)[0] for r in rows]
    found = [f for r in rows for f in r.folders]
    out = [f for f in found if any(f.relative_to(root).match(p) for p in patterns)]
    if not out:
        some = ", ".join(str(f.relative_to(root)) for f in found[:3])
        raise EsxError(f"--show {patterns}: no run folder under {root} matches; e.g. {some}")
    return sorted(out)
