"""``last.safetensors``: everything needed to continue a run after its last finished epoch.

Model and optimiser tensors, every random generator's state and the loop's
own state (epoch, best score, history) go into one file, written atomically
at the end of each epoch, so a run killed at any moment resumes to the same
result as an uninterrupted one.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from esx import outputs
from esx.errors import EsxError

LAST = "last.safetensors"


def save(
    folder: Path,
    model: dict[str, Tensor],
    opt: torch.optim.Optimizer,
    shuffle: torch.Generator,
    loop: dict[str, Any],
) -> None:
    """Write ``folder/last.safetensors`` (model weights, optimiser, RNGs and ``loop``)."""
    tensors = {f"model.{k}": v for k, v in model.items()}
    for idx, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.shuffle"] = shuffle.get_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    np_state = np.random.get_state()
    meta = {
        **loop,
        "python_rng": random.getstate(),
        "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    outputs.save_state(folder / LAST, tensors, {"esx": json.dumps(meta)})


def restore(
    folder: Path, opt: torch.optim.Optimizer, shuffle: torch.Generator
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load the optimiser and every RNG from ``folder/last.safetensors``; return the model
    weights (for :meth:`esx.build.Components.load`) and the loop's state."""
    path = folder / LAST
    if not path.is_file():
        raise EsxError(
            f"cannot resume: {path} does not exist (no epoch had finished); "
            "start the run again without --resume"
        )
    tensors, meta = outputs.load_state_with_meta(
        path, f"delete it and start the run again (esx run RECIPE --out {folder} --overwrite)"
    )
    loop = json.loads(meta["esx"])
    sd = opt.state_dict()
    sd["state"] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            sd["state"].setdefault(int(idx), {})[name] = v
    opt.load_state_dict(sd)
    torch.set_rng_state(tensors["rng.torch"])
    shuffle.set_state(tensors["rng.shuffle"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    py = loop.pop("python_rng")
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = loop.pop("numpy_rng")
    np.random.set_state((npst[0], np.array(npst[1], dtype=np.uint32), *npst[2:]))
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    return model, loop


#: recipe keys a resume may change (``esx run --resume RUN --set KEY=VALUE``): where and how
#: the run computes, not what it computes
RESUMABLE_KEYS = (
    "device",
    "train.num_workers",
    "train.eval_batch_size",
    "train.keep_last_checkpoint",
    "eval.overlays",
)


def resume_overrides(sets: list[str]) -> list[str]:
    """The ``--set`` items of a resume; one that would change the experiment is refused."""
    for item in sets:
        key = item.split("=", 1)[0].strip()
        if key not in RESUMABLE_KEYS:
            raise EsxError(
                f"--resume --set {item}: a resume continues the same experiment, so it may "
                f"change only {', '.join(RESUMABLE_KEYS)}; to change {key}, start again: "
                "esx run RECIPE --out RUN --overwrite --set ..."
            )
    return sets


def finished_note(folder: Path) -> str:
    """What ``esx run --resume`` says of a finished run, which it leaves as it is."""
    return (
        f"{folder} is finished (it has metrics.json): nothing to resume, nothing changed. "
        f"To run it again: esx run {folder / 'recipe.yaml'} --out {folder} --overwrite; to "
        f"measure its explanations again: esx evaluate {folder}"
    )


def failure_advice(folder: Path) -> str:
    """What a run that failed in a component says after the error: where the traceback
    is, and both ways on (resume after fixing a plugin, start again after fixing a recipe
    value, which a resume cannot change)."""
    return (
        f"the traceback is in {folder / 'run.log'}. If the cause is in a plugin's code, fix "
        f"it and continue with: esx run --resume {folder}. If it is a recipe value, fix it "
        f"and start again: esx run RECIPE --out {folder} --overwrite (a resume keeps the "
        f"run's recipe; only {', '.join(RESUMABLE_KEYS)} may change, with --set)"
    )
