"""Every metric esx writes, defined once: its name, what it measures, which way is better.

``esx run`` prints, ``esx report`` tables and pages define, and the docs'
metric reference lists the metrics from here. A dataset's own metrics (a group's
accuracy, a reliance score it declares) are defined by pattern; a metric a
plugin adds without a definition is shown with "defined by the component that
writes it".
"""

from __future__ import annotations

#: classification metrics on a split, in the order tables show them
CLASSIFICATION = ("accuracy", "auc", "precision", "recall", "f1")

#: explanation metrics tabled per row and printed after a run, in that order
EXPLANATION = ("epg", "epg_ratio", "pointing", "pr_auc", "iou")

#: recorded with the explanation metrics but settings, not scores
EXPLANATION_SETTINGS = ("threshold", "pointing_tolerance", "images", "class", "explainer")

DEFINITIONS: dict[str, str] = {
    "accuracy": "share of images whose predicted class is the label",
    "auc": "area under the ROC curve of the positive class's probability (a K-class task: "
    "the mean one-vs-rest AUC over the classes present)",
    "precision": "of the images predicted positive, the share that are (K classes: the "
    "macro mean over classes)",
    "recall": "of the positive images, the share predicted positive (K classes: the macro "
    "mean over classes)",
    "f1": "harmonic mean of precision and recall (K classes: the macro mean over classes)",
    "loss": "mean cross-entropy of the predictions",
    "worst_group_accuracy": "the lowest accuracy over the groups of test images the dataset "
    "declares (over the classes where it declares none)",
    "epg": "energy-based pointing game: the share of the map's positive attribution that "
    "falls inside the true mask",
    "epg_ratio": "EPG over the mask's share of the image: 1 = no better than a uniform map "
    "(the plain EPG favours large masks)",
    "epg_small": "EPG on the smaller half of the true masks (split at the median area)",
    "epg_large": "EPG on the larger half of the true masks",
    "pointing": "pointing game: 1 when the map's maximum lies inside the true mask (dilated "
    "by eval.pointing_tolerance pixels), averaged over images",
    "pointing_small": "pointing game on the smaller half of the true masks",
    "pointing_large": "pointing game on the larger half of the true masks",
    "pr_auc": "average precision of the map's pixels against the true mask (threshold-free)",
    "iou": "intersection over union of the map thresholded at eval.threshold and the true mask",
    "mask_area": "the true mask's mean share of the image",
    "threshold": "the map value above which a pixel counts as explained (eval.threshold)",
    "pointing_tolerance": "pixels of tolerance of the pointing game (eval.pointing_tolerance)",
    "images": "test images whose explanations were measured",
    "class": "the class explained at evaluation (the predicted one)",
    "explainer": "the explainer whose maps were measured (eval.explainer)",
    "cue_reliance": "accuracy where the dataset's cue agrees with the label minus accuracy "
    "where it conflicts (lower is better)",
}

#: where the explanation metrics' precision and recall are meant, not the classifier's
EXPLANATION_DEFINITIONS = {
    "precision": "share of the thresholded map's pixels inside the true mask",
    "recall": "share of the true mask's pixels the thresholded map covers",
}


def define(name: str, explanation: bool = False) -> str:
    """What metric ``name`` measures (``explanation``: as an explanation metric)."""
    if explanation and name in EXPLANATION_DEFINITIONS:
        return EXPLANATION_DEFINITIONS[name]
    if name in DEFINITIONS:
        return DEFINITIONS[name]
    for prefix in ("val_", "train_"):
        if name.startswith(prefix):
            return define(name[len(prefix) :]) + f" ({prefix.rstrip('_')})"
    if name.startswith("accuracy_class_"):
        return f"accuracy on the test images of class {name.removeprefix('accuracy_class_')}"
    if name.startswith("accuracy_"):
        group = name.removeprefix("accuracy_")
        return f"accuracy on the group of test images the dataset calls {group!r}"
    return "defined by the component that writes it"


def definitions(names: list[str], explanation: bool = False) -> list[tuple[str, str]]:
    """``(name, definition)`` for each name, in order, without repeats."""
    return [(n, define(n, explanation)) for n in dict.fromkeys(names)]


#: every file a run folder may hold (``*`` stands for any name)
RUN_FOLDER: dict[str, str] = {
    "recipe.yaml": "the resolved recipe: every key with the value the run used (defaults "
    "filled in, the data actually used after a fallback); `esx run --resume` reads it",
    "status.json": "running, finished, failed or interrupted, with where it stopped, the "
    "error, and the host and process of a running run",
    "run.log": "the log, tracebacks included",
    "history.csv": "one row per finished epoch: the training losses and validation metrics",
    "best.safetensors": "the weights of the epoch chosen on validation (train.select_metric)",
    "last.safetensors": "weights, optimiser and random states after the last finished epoch "
    "(resumes an unfinished run; deleted when the run finishes unless "
    "train.keep_last_checkpoint)",
    "metrics.json": "the results (its keys below)",
    "predictions.csv": "one row per test image: id, label, pred and the probabilities",
    "overlays.png": "test images with the model's map and the true mask, correct and wrong "
    "predictions side by side",
    "report.html": "the run's page: what ran, scores with definitions, curves, tables, figures",
    "*.png": "a component's own figures, named by the component",
}

#: the top-level keys of a run's ``metrics.json``
METRICS_JSON: dict[str, str] = {
    "test": "the test split's metrics from the chosen checkpoint (accuracy, auc, precision, "
    "recall, f1, accuracy_class_<k>, accuracy_<group>, worst_group_accuracy)",
    "validation": "the chosen epoch (best_epoch), the metric it was chosen on "
    "(select_metric) and its validation metrics",
    "explanation": "how the eval explainer's maps localise the true masks on the test images "
    "with one (the explanation metrics, with their settings)",
    "explanations": "the same per explainer, when eval.explainers names more than one",
    "groups": "the groups of test images: who declared them, their sizes, the worst one",
    "data": "what the data was: name, synthetic or not, splits, annotators, seeds; "
    "fallback_from when the recipe's data was absent",
    "run": "seed, seconds, recipe file, device, processes, precision, versions of esx and "
    "torch, and each component's package and version",
    "tables": "the components' tables (esx.types.Table), which esx report merges over runs",
    "lower_is_better": "metrics (declared by whoever wrote them) where lower is better",
    "<family>": "a component's own report (its ``report`` hook's result), under its "
    "family's name, e.g. ``aggregator``",
}
