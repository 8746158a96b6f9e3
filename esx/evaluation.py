"""Evaluation of a trained run: predictions, metrics, ``metrics.json``, components' results.

The test metrics always come from the checkpoint chosen on validation. Only
the main process writes; under torchrun every process predicts its shard and
the predictions are gathered in the split's order.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from esx import __version__, outputs
from esx import distributed as dist
from esx.build import Components
from esx.contracts import ContractError, call
from esx.data import collate
from esx.interfaces import BuildContext, normalise_maps
from esx.metrics import (
    classification,
    group_accuracy,
    localisation,
    multiclass,
    per_class_accuracy,
    summarise_localisation,
)
from esx.plugins import registry
from esx.recipe import load_recipe
from esx.runtime import Runtime
from esx.types import Table


def explainers(c: Components) -> dict[str, Any]:
    """The explainers whose maps are measured: the evaluation explainer first, then the
    training explainer when it is another one."""
    out = {c.eval_explainer.component_name: c.eval_explainer}
    if c.explainer is not c.eval_explainer:
        name = c.explainer.component_name
        out[name if name not in out else f"{name} (training)"] = c.explainer
    return out


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """What ``predictions.csv`` records: the positive class's probability ``(B,)`` of a
    binary task (a sigmoid for a single logit), every class's ``(B, K)`` for K > 2."""
    if logits.shape[1] == 2:
        return logits.softmax(1)[:, 1]
    return logits[:, 0].sigmoid() if logits.shape[1] == 1 else logits.softmax(1)


@torch.no_grad()
def predict(
    c: Components,
    rt: Runtime,
    dl: Any,
    progress: Any,
    label: str,
    threshold: float | None = None,
    tolerance: float = 0,
) -> dict[str, Any]:
    """Probabilities and predictions of a split; with ``threshold``, how each explainer's
    maps (:func:`explainers`) localise the true masks of the images whose class has masks
    (:meth:`~esx.interfaces.DataInfo.explained`). The maps explain the predicted class.

    ``prob`` is the positive class's probability in a binary task and ``(N, K)`` class
    probabilities in a task of K > 2 classes; the metrics follow
    (:func:`esx.metrics.classification` or :func:`esx.metrics.multiclass`)."""
    c.backbone.eval()
    measured = explainers(c) if threshold is not None else {}
    probs, labels, preds, idx, losses = [], [], [], [], []
    overlap: dict[str, list[torch.Tensor]] = {name: [] for name in measured}
    task = progress.add_task(label, total=len(dl)) if progress else None
    for batch in dl:
        batch = batch.to(rt.device, non_blocking=True)
        with rt.autocast():
            logits = c.backbone(rt.layout(batch.image)).float()
        losses.append(F.cross_entropy(logits, batch.label, reduction="sum").item())
        pred = logits.argmax(1)
        probs.append(probabilities(logits).cpu()), labels.append(batch.label.cpu())
        preds.append(pred.cpu()), idx.append(batch.index.cpu())
        if threshold is not None and batch.truth is not None:
            rows = c.dataset.info.explained(batch.label) & (batch.truth.flatten(1).amax(1) > 0)
            for name, ex in measured.items() if rows.any() else ():
                m = call(ex, ex.explain, c.backbone, batch.image[rows], pred[rows]).detach()
                m = m if ex.normalised else normalise_maps(m)
                truth = batch.truth[rows, 0]
                overlap[name].append(localisation(m, truth, threshold, tolerance).cpu())
        if progress:
            progress.advance(task)
    if progress:
        progress.remove_task(task)
    parts = dist.gather((probs, labels, preds, idx, losses, overlap), rt.world)
    probs, labels, preds, idx, losses = ([x for part in parts for x in part[i]] for i in range(5))
    overlap = {name: [x for part in parts for x in part[5][name]] for name in measured}
    order = torch.cat(idx).argsort()  # the split's order, whatever the sharding
    out = {
        "prob": torch.cat(probs)[order].numpy(),
        "label": torch.cat(labels)[order].numpy(),
        "pred": torch.cat(preds)[order].numpy(),
        "index": torch.cat(idx)[order].numpy(),
    }
    score = multiclass if out["prob"].ndim == 2 else classification
    out["metrics"] = score(out["label"], out["prob"], out["pred"])
    out["metrics"]["loss"] = sum(losses) / max(1, len(out["label"]))
    found = {name: torch.cat(rows) for name, rows in overlap.items() if rows}
    if found:
        out["explanations"] = _summaries(found, threshold, tolerance)
        out["explanation"] = out["explanations"][c.eval_explainer.component_name]
    return out


def _summaries(found: dict[str, torch.Tensor], threshold: Any, tolerance: float) -> dict:
    """Each explainer's localisation over the images it explained, with its settings."""
    return {
        name: {
            **summarise_localisation(per_image),
            "threshold": threshold,
            "pointing_tolerance": tolerance,
            "images": int(per_image.shape[0]),
            "class": "predicted",
            "explainer": name,
        }
        for name, per_image in found.items()
    }


def chosen(loop: dict[str, Any], select_metric: str) -> dict[str, Any]:
    """The epoch chosen on validation, with its validation metrics (``metrics.json``'s
    ``validation``)."""
    best = loop["history"][loop["best_epoch"] - 1]
    return {
        "best_epoch": loop["best_epoch"],
        "select_metric": select_metric,
        **{k[4:]: v for k, v in best.items() if k.startswith("val_")},
    }


def component_results(
    c: Components, loader: Any, device: torch.device
) -> tuple[dict[str, Any], list[Table]]:
    """Every component's ``report`` on the test split (non-empty ones, by family) and the
    tables each makes of its own report."""
    reports: dict[str, Any] = {}
    tables: list[Table] = []
    for family, comp in c.each():
        rep = call(comp, comp.report, loader, device)
        if rep:
            reports[family] = rep
        tables += call(comp, comp.tables, rep)
    return reports, tables


#: a group name: what ``accuracy_<name>`` can carry as a metric key
GROUP_NAME = re.compile(r"[a-z][a-z0-9_]*")


def test_groups(dataset: Any, labels: np.ndarray, index: np.ndarray) -> dict[str, np.ndarray]:
    """The dataset's named groups of the test images (:meth:`~esx.interfaces.Dataset.groups`)
    for the images ``index`` (their positions in the test split); the classes
    (``class_<k>``, from ``labels``) when it names none."""
    declared = call(dataset, dataset.groups, "test") or {}
    n = len(dataset.split("test"))
    out = {}
    for name, member in declared.items():
        member = np.asarray(member)
        if not isinstance(name, str) or not GROUP_NAME.fullmatch(name):
            raise ContractError(
                dataset,
                "groups() names each group by a lower-case identifier, e.g. 'decoy_disagrees'",
                repr(name),
            )
        if member.shape != (n,) or member.dtype != bool:
            raise ContractError(
                dataset,
                f"groups() gives each group {n} bools, one per test image",
                f"{member.dtype} of shape {member.shape} for group {name!r}",
            )
        out[name] = member[np.asarray(index)]
    if not out:
        labels = np.asarray(labels)
        out = {f"class_{k}": labels == k for k in range(dataset.info.num_classes)}
    return out


def group_metrics(
    dataset: Any, labels: np.ndarray, preds: np.ndarray, index: np.ndarray
) -> tuple[dict[str, float], dict[str, Any]]:
    """Each class's accuracy, each group's (:func:`test_groups`) and the worst group's, as
    test metrics; and the ``groups`` section of ``metrics.json`` (who declared the groups,
    their sizes, the worst). ``labels``, ``preds`` and ``index`` are test predictions, as
    in ``predictions.csv``."""
    groups = test_groups(dataset, labels, index)
    found = group_accuracy(labels, preds, groups)
    flat = per_class_accuracy(labels, preds, dataset.info.num_classes)
    flat |= {f"accuracy_{g}": v for g, v in found["accuracy"].items()}
    if found["worst"] is not None:
        flat["worst_group_accuracy"] = found["worst_accuracy"]
    declared = any(not g.startswith("class_") for g in groups)
    section = {
        "declared_by": dataset.component_name if declared else "the classes",
        "size": found["size"],
        "worst": found["worst"],
    }
    return flat, section


def regroup(run: Path) -> tuple[dict[str, float], dict[str, Any]]:
    """:func:`group_metrics` of a finished run, made again from its folder: the dataset
    rebuilt from its ``recipe.yaml``, the predictions read from ``predictions.csv``. For runs
    made before their dataset declared its groups; a newer run's ``metrics.json`` holds the
    same numbers."""
    recipe = load_recipe(run / "recipe.yaml", registry())
    data = recipe.data.build(BuildContext(seed=recipe.seed))
    with open(run / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    labels, preds, ids = (np.array([int(r[k]) for r in rows]) for k in ("label", "pred", "id"))
    return group_metrics(data, labels, preds, ids)


def write_results(
    out: Path,
    c: Components,
    rt: Runtime,
    test: dict[str, Any],
    best: dict[str, Any],
    run: dict[str, Any],
    reports: dict[str, Any],
    tables: list[Table],
) -> dict[str, Any]:
    """``predictions.csv`` and ``metrics.json``; returns the metrics."""
    cols = zip(test["index"], test["label"], test["prob"], test["pred"], strict=True)
    if test["prob"].ndim == 1:
        header = ["id", "label", "prob_positive", "pred"]
        rows = [[int(i), int(lab), f"{p:.6f}", int(pr)] for i, lab, p, pr in cols]
    else:  # K classes: the prediction, then every class's probability
        header = ["id", "label", "pred", *(f"prob_{k}" for k in range(test["prob"].shape[1]))]
        rows = [[int(i), int(lab), int(pr), *(f"{q:.6f}" for q in p)] for i, lab, p, pr in cols]
    outputs.write_csv(out / "predictions.csv", header, rows)
    info = c.dataset.info
    by_group, groups = group_metrics(c.dataset, test["label"], test["pred"], test["index"])
    metrics = {
        "test": {k: v for k, v in test["metrics"].items() if k != "loss"} | by_group,
        "groups": groups,
        "explanation": test.get("explanation", {}),
        **({"explanations": test["explanations"]} if len(test.get("explanations", {})) > 1 else {}),
        "validation": best,
        "data": {
            "name": info.name,
            "synthetic": info.synthetic,
            "splits": info.splits,
            "num_annotators": info.num_annotators,
            "num_classes": info.num_classes,
            **info.details,
            **({"fallback_from": c.fallback} if c.fallback else {}),
        },
        "run": {
            **run,
            "device": str(rt.device),
            "processes": rt.world.size,
            "precision": rt.precision,
            "esx_version": __version__,
            "torch_version": torch.__version__,
            "components": {
                f: {
                    "name": comp.component_name,
                    "package": comp.component_package,
                    "version": comp.component_version,
                }
                for f, comp in c.each()
            },
        },
        **reports,
    }
    if tables:
        metrics["tables"] = [t.to_dict() for t in tables]
    outputs.write_json(out / "metrics.json", metrics)
    return metrics


def _by_class(indices: list[int], label: dict[int, int]) -> list[int]:
    """``indices`` reordered to take the classes in turn (lowest index first in each)."""
    queues: dict[int, list[int]] = {}
    for i in sorted(indices):
        queues.setdefault(label[i], []).append(i)
    out: list[int] = []
    while any(queues.values()):
        for k in sorted(queues, reverse=True):  # the positive class first in a binary task
            if queues[k]:
                out.append(queues[k].pop(0))
    return out


def overlay_picks(label: dict[int, int], wrong: set[int], n: int) -> list[int]:
    """The ``n`` test images ``overlays.png`` shows: half correct predictions and half
    mistakes where there are enough of each (the other kind fills in where there are
    not), each kind taking the classes in turn; correct ones first."""
    right = _by_class([i for i in label if i not in wrong], label)
    bad = _by_class([i for i in label if i in wrong], label)
    k_bad = min(len(bad), max(n // 2, n - len(right)))
    k_right = min(len(right), n - k_bad)
    return right[:k_right] + bad[:k_bad]


def figures(
    out: Path, c: Components, device: torch.device, n: int, test: dict[str, Any] | None = None
) -> None:
    """``overlays.png`` of ``n`` test images and every component's figures.

    With the test predictions given, half the images are correct predictions and half
    mistakes where the run has both (:func:`overlay_picks`), correct ones on the left,
    each labelled, with classes taken in turn.
    """
    if n <= 0:
        return
    from esx.figures import overlays

    ds = c.dataset.split("test")
    if test is not None:  # labels from the predictions: no sample is loaded to choose
        label = {int(i): int(y) for i, y in zip(test["index"], test["label"], strict=True)}
        wrong = {
            int(i)
            for i, y, p in zip(test["index"], test["label"], test["pred"], strict=True)
            if y != p
        }
    else:
        label, wrong = {i: ds[i].label for i in range(len(ds))}, set()
    samples = [ds[i] for i in overlay_picks(label, wrong, n)]
    if not samples:
        return
    batch = collate(samples).to(device)
    c.backbone.eval()
    with torch.no_grad():
        pred = c.backbone(batch.image).argmax(1)
    maps = c.eval_explainer.explain(c.backbone, batch.image, pred).detach()
    maps = maps if c.eval_explainer.normalised else normalise_maps(maps)
    overlays(out / "overlays.png", batch, maps.cpu(), pred.cpu(), c.eval_explainer.component_name)
    for _, comp in c.each():
        call(comp, comp.figures, out, batch)
