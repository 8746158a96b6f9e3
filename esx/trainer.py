"""The trainer: builds the components a recipe names and runs one experiment.

One step, top to bottom::

    features = backbone.forward_features(image)      one forward
    logits   = backbone.forward_head(features)
    L_pred   = cross_entropy(logits, label)
    out      = aggregator(batch)                     targets (+ its own loss)
    maps     = explainer.explain(..., features, logits, create_graph=True)
    L        = L_pred + λ_exp · loss(maps, targets) + λ_gen · out.loss

Only images that are positive (label > 0) and carry target weight feed the
explanation loss. The trainer knows no component by name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import Tensor
from torch.utils.data import DistributedSampler

from esx import __version__, outputs
from esx import distributed as dist
from esx.data import collate
from esx.errors import DataMissingError, EsxError, NonFiniteLossError
from esx.interfaces import Aggregator, Backbone, BuildContext, Dataset, Explainer, Loss
from esx.metrics import classification, map_overlap
from esx.plugins import Registry
from esx.recipe import DataSpec, Recipe, build_params, dump_recipe
from esx.types import Batch

log = logging.getLogger("esx")


@dataclass
class Components:
    dataset: Dataset
    backbone: Backbone
    explainer: Explainer
    eval_explainer: Explainer
    aggregator: Aggregator
    loss: Loss
    context: BuildContext
    #: set when ``data.fallback`` stood in for absent data: what was wanted and why it failed
    fallback: dict[str, str] | None = None


def choose_device(wanted: str, world: dist.World | None = None) -> torch.device:
    if wanted == "cuda" and not torch.cuda.is_available():
        raise EsxError("recipe asks for device 'cuda' but no CUDA GPU is visible; use auto or cpu")
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda" and world is not None and world.distributed:
        return torch.device("cuda", world.local_rank)
    return torch.device(wanted)


def choose_precision(wanted: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run (``None``: full fp32)."""
    if wanted == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[wanted]


#: score scale of a differentiable explainer under fp16 (a power of two: unscaling is exact)
FP16_EXPLAIN_SCALE = 2.0**8


class StepModule(torch.nn.Module):
    """A training step's whole differentiable computation in one ``forward``.

    Logits, the differentiable explanation maps, the aggregator's targets and
    every loss term come from one call, so that DistributedDataParallel wraps
    a single forward per step (``autograd.grad`` to an activation inside it is
    safe under DDP; a second forward is not).
    """

    def __init__(self, c: Components) -> None:
        super().__init__()
        self.backbone, self.aggregator, self.loss = c.backbone, c.aggregator, c.loss
        self.explainer = c.explainer

    def forward(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, float]]:
        features = self.backbone.forward_features(batch.image)
        logits = self.backbone.forward_head(features)
        terms: dict[str, Tensor] = {"pred": F.cross_entropy(logits.float(), batch.label)}
        out = self.aggregator(batch)
        if self.loss.uses_explanation:
            rows = out.targets.supervised & (batch.label > 0)
            if rows.any():
                maps = self.explainer.explain(
                    self.backbone,
                    batch.image,
                    batch.label,
                    features=features,
                    logits=logits,
                    create_graph=True,
                )
                maps, targets = self.explainer.match(maps[rows].float(), out.targets.select(rows))
                terms["exp"] = self.loss(maps, targets)
        if out.loss is not None:
            terms["gen"] = out.loss.float()
        return terms, out.logs


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build(recipe: Recipe, registry: Registry, device: torch.device) -> Components:
    """Instantiate every component of a validated recipe."""

    def make(family: str, spec: Any, *args: Any) -> Any:
        return registry.get(family, spec.name)(build_params(registry, family, spec), *args)

    fallback = None
    try:
        dataset = make("dataset", recipe.data, recipe.seed)
    except DataMissingError as err:
        if recipe.data.fallback is None:
            raise
        dataset = make("dataset", recipe.data.fallback, recipe.seed)
        fallback = {"wanted": recipe.data.name, "reason": str(err)}
    ctx = BuildContext(data=dataset.info, seed=recipe.seed, device=device)
    backbone = make("backbone", recipe.backbone, ctx).to(device)
    explainer = make("explainer", recipe.explainer, ctx)
    ev = recipe.eval.explainer
    eval_explainer = make("explainer", ev, ctx) if ev is not None else explainer
    aggregator = make("aggregator", recipe.aggregator, ctx).to(device)
    loss = make("loss", recipe.loss, ctx).to(device)
    if loss.uses_explanation and not explainer.differentiable:
        raise EsxError(
            f"explainer {recipe.explainer.name!r} is not differentiable, so loss "
            f"{recipe.loss.name!r} cannot train through it; use a differentiable explainer "
            "for training (see `esx plugins`) and put this one under eval.explainer"
        )
    return Components(dataset, backbone, explainer, eval_explainer, aggregator, loss, ctx, fallback)


def loader(
    ds: Any, batch_size: int, shuffle: torch.Generator | None, workers: int, sampler: Any = None
) -> Any:
    """A DataLoader of :class:`Batch`; shuffled with ``shuffle`` when given, else in the
    order of ``sampler`` (a distributed shard) when given."""
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle is not None,
        num_workers=workers,
        collate_fn=collate,
        generator=shuffle,
        sampler=sampler,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
    )


class Trainer:
    """Runs a recipe end to end and writes the run folder."""

    def __init__(
        self,
        recipe: Recipe,
        registry: Registry,
        out: Path,
        console: Console | None = None,
        recipe_source: str = "",
    ) -> None:
        self.recipe, self.registry, self.out = recipe, registry, Path(out)
        self.console = console or Console(quiet=True)
        self.source = recipe_source
        self.world = dist.from_env()
        self.device = choose_device(recipe.device, self.world)
        dist.setup(self.world, self.device.type)
        seed_everything(recipe.seed)
        self.c = build(recipe, registry, self.device)
        if self.c.fallback is not None:
            # The run folder records what actually ran, so a resume rebuilds the same data.
            used = DataSpec.model_validate(recipe.data.fallback.model_dump())
            self.recipe = recipe = recipe.model_copy(update={"data": used})
        t = recipe.train
        groups = [
            {
                "params": [
                    p
                    for m in (self.c.backbone, self.c.loss)
                    for p in m.parameters()
                    if p.requires_grad
                ],
                "lr": t.lr,
            }
        ]
        groups += self.c.aggregator.param_groups(t.lr)
        self.opt = torch.optim.Adam(groups, lr=t.lr, weight_decay=t.weight_decay)
        self.step_no = 0
        self.dtype = choose_precision(t.precision, self.device)
        # fp16 needs a loss scaler; bf16 has fp32's range and does not.
        self.scaler = (
            torch.amp.GradScaler(self.device.type) if self.dtype == torch.float16 else None
        )
        self.channels_last = (
            self.device.type == "cuda" if t.channels_last is None else t.channels_last
        )
        if self.channels_last:
            self.c.backbone.to(memory_format=torch.channels_last)
        self.module = StepModule(self.c)
        self.model: torch.nn.Module = self.module
        if self.world.distributed:
            if t.batch_size % self.world.size:
                raise EsxError(
                    f"train.batch_size {t.batch_size} is the global batch and must "
                    f"divide among {self.world.size} processes; make it a multiple "
                    f"of {self.world.size}"
                )
            # Unused parameters are legitimate (e.g. annotator weights a target mode ignores).
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.module, find_unused_parameters=True
            )

    # ---------------------------------------------------------------- training
    def step(self, batch: Batch) -> dict[str, float]:
        t = self.recipe.train
        self.model.train()
        if self.channels_last:
            batch = replace(batch, image=batch.image.contiguous(memory_format=torch.channels_last))
        # Under fp16 the explainer scales its class score before autograd.grad and unscales
        # the gradients after (PyTorch's AMP recipe for losses on gradients). The loss
        # scaler's own scale (2^16 at first) would overflow fp16 at the seed itself, since
        # d score / d logit is 1; a fixed 2^8 lifts small gradients clear of fp16's subnormals.
        self.c.explainer.grad_scale = FP16_EXPLAIN_SCALE if self.scaler else 1.0
        with self._autocast():
            terms, agg_logs = self.model(batch)
        weights = {"pred": 1.0, "exp": t.lambda_exp, "gen": t.lambda_gen}
        for name, value in terms.items():
            if not torch.isfinite(value).all():
                raise NonFiniteLossError(
                    f"step {self.step_no}: loss term {name!r} is {value.item()}; "
                    "lower train.lr or check the data for NaN pixels"
                )
        total = sum(weights[k] * v for k, v in terms.items())
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            total.backward()
            self.opt.step()
        self.step_no += 1
        logs = {k: float(v.detach()) for k, v in terms.items()}
        logs.update(agg_logs)
        return logs

    def _autocast(self) -> Any:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    # -------------------------------------------------------------- evaluation
    @torch.no_grad()
    def predict(
        self, dl: Any, progress: Progress | None, label: str, maps: bool = False
    ) -> dict[str, Any]:
        """Probabilities and predictions of a split; explanation overlap if ``maps``."""
        c = self.c
        c.backbone.eval()
        probs, labels, preds, idx, losses, overlap = [], [], [], [], [], []
        task = progress.add_task(label, total=len(dl)) if progress else None
        for batch in dl:
            batch = batch.to(self.device, non_blocking=True)
            image = (
                batch.image.contiguous(memory_format=torch.channels_last)
                if self.channels_last
                else batch.image
            )
            with self._autocast():
                logits = c.backbone(image).float()
            losses.append(F.cross_entropy(logits, batch.label, reduction="sum").item())
            p = logits.softmax(1)[:, 1] if logits.shape[1] > 1 else logits[:, 0].sigmoid()
            pred = logits.argmax(1)
            probs.append(p.cpu()), labels.append(batch.label.cpu())
            preds.append(pred.cpu()), idx.append(batch.index.cpu())
            if maps and batch.truth is not None:
                rows = (batch.label > 0) & (batch.truth.flatten(1).amax(1) > 0)
                if rows.any():
                    m = c.eval_explainer.explain(c.backbone, batch.image[rows], pred[rows])
                    ov = map_overlap(m.detach(), batch.truth[rows, 0], self.recipe.eval.threshold)
                    overlap.append(ov.cpu())
            if progress:
                progress.advance(task)
        if progress:
            progress.remove_task(task)
        parts = dist.gather((probs, labels, preds, idx, losses, overlap), self.world)
        probs, labels, preds, idx, losses, overlap = (
            [x for part in parts for x in part[i]] for i in range(6)
        )
        order = torch.cat(idx).argsort()  # the split's order, whatever the sharding
        out = {
            "prob": torch.cat(probs)[order].numpy(),
            "label": torch.cat(labels)[order].numpy(),
            "pred": torch.cat(preds)[order].numpy(),
            "index": torch.cat(idx)[order].numpy(),
        }
        out["metrics"] = classification(out["label"], out["prob"], out["pred"])
        out["metrics"]["loss"] = sum(losses) / max(1, len(out["label"]))
        if overlap:
            ov = torch.cat(overlap)
            out["explanation"] = {
                "iou": float(ov[:, 0].mean()),
                "precision": float(ov[:, 1].mean()),
                "recall": float(ov[:, 2].mean()),
                "threshold": self.recipe.eval.threshold,
                "images": int(ov.shape[0]),
                "class": "predicted",
                "explainer": self.c.eval_explainer.component_name,
            }
        return out

    # -------------------------------------------------------------------- run
    def state(self) -> dict[str, Tensor]:
        c = self.c
        st = {f"backbone.{k}": v for k, v in c.backbone.state_dict().items()}
        st.update({f"aggregator.{k}": v for k, v in c.aggregator.state_dict().items()})
        st.update({f"loss.{k}": v for k, v in c.loss.state_dict().items()})
        return st

    def load(self, state: dict[str, Tensor]) -> None:
        for prefix, mod in (
            ("backbone.", self.c.backbone),
            ("aggregator.", self.c.aggregator),
            ("loss.", self.c.loss),
        ):
            sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            mod.load_state_dict(sub)

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train, choose the checkpoint on validation, evaluate on test, write the run folder.

        With ``resume``, continue from the folder's ``last.safetensors`` (written
        at the end of every epoch); the result equals an uninterrupted run's.
        """
        r, t, c = self.recipe, self.recipe.train, self.c
        info = c.dataset.info
        main = self.world.main
        if not resume and main:
            outputs.write_text(self.out / "recipe.yaml", dump_recipe(r, self.registry))
        if main:
            self._start_log(append=resume)
        if c.fallback is not None:
            msg = (
                f"DATA NOT FOUND - {c.fallback['reason']}\n"
                f"Running on the recipe's data.fallback instead: {info.name}"
                + (" (SYNTHETIC)" if info.synthetic else "")
            )
            self.console.print(f"[bold red]{msg}[/]")
            log.warning(msg.replace("\n", " "))
        if info.synthetic:
            self.console.print(
                f"[bold yellow]Training on SYNTHETIC data ({info.name}), not real scans.[/]"
            )
        log.info(
            "esx %s, device %s, data %s %s, precision %s, processes %d",
            __version__,
            self.device,
            info.name,
            info.splits,
            self.dtype or "fp32",
            self.world.size,
        )
        shuffle = torch.Generator().manual_seed(r.seed)
        train_dl = self._train_loader(shuffle)
        val_dl = loader(self._shard(c.dataset.split("val")), t.eval_batch_size, None, t.num_workers)
        test_dl = loader(
            self._shard(c.dataset.split("test")), t.eval_batch_size, None, t.num_workers
        )
        higher = t.select_metric != "loss"
        state = {
            "epoch": 0,
            "best": -math.inf if higher else math.inf,
            "best_epoch": 0,
            "history": [],
            "seconds": 0.0,
        }
        if resume:
            state = self._restore(shuffle)
            log.info("resumed after epoch %d", state["epoch"])
        started = time.time() - state["seconds"]
        with self._progress() as progress:
            epochs = progress.add_task("epochs", total=t.epochs, completed=state["epoch"])
            for epoch in range(state["epoch"] + 1, t.epochs + 1):
                sums: dict[str, float] = {}
                bt = progress.add_task(f"epoch {epoch}", total=len(train_dl))
                if isinstance(train_dl.sampler, DistributedSampler):
                    train_dl.sampler.set_epoch(epoch)
                for batch in train_dl:
                    logs = self.step(batch.to(self.device, non_blocking=True))
                    for k, v in logs.items():
                        sums[k] = sums.get(k, 0.0) + v
                    progress.advance(bt)
                progress.remove_task(bt)
                val = self.predict(val_dl, progress, "validation")["metrics"]
                means = dist.all_mean({k: v / len(train_dl) for k, v in sums.items()}, self.world)
                row = {
                    "epoch": epoch,
                    **{f"train_{k}": v for k, v in means.items()},
                    **{f"val_{k}": v for k, v in val.items()},
                }
                state["history"].append(row)
                score = val[t.select_metric]
                better = score > state["best"] if higher else score < state["best"]
                if better or state["best_epoch"] == 0:
                    state["best"], state["best_epoch"] = score, epoch
                    if main:
                        outputs.save_state(self.out / "best.safetensors", self.state())
                log.info(
                    "epoch %d %s",
                    epoch,
                    " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"),
                )
                state["epoch"], state["seconds"] = epoch, time.time() - started
                if main:
                    self._write_history(state["history"])
                    self._checkpoint(state, shuffle)
                progress.advance(epochs)
            dist.barrier(self.world)  # best.safetensors is written
            self.load(outputs.load_state(self.out / "best.safetensors"))
            test = self.predict(test_dl, progress, "test", maps=True)
            report = {}
            if main:
                full_test = loader(c.dataset.split("test"), t.eval_batch_size, None, t.num_workers)
                report = self.c.aggregator.report(full_test, self.device)
        metrics = {}
        if main:
            metrics = self._finish(
                test, state["history"], state["best_epoch"], time.time() - started, report
            )
            self._figures()
        dist.barrier(self.world)
        return metrics

    def _train_loader(self, shuffle: torch.Generator) -> Any:
        t, split = self.recipe.train, self.c.dataset.split("train")
        if not self.world.distributed:
            return loader(split, t.batch_size, shuffle, t.num_workers)
        sampler = DistributedSampler(
            split,
            num_replicas=self.world.size,
            rank=self.world.rank,
            shuffle=True,
            seed=self.recipe.seed,
        )
        return loader(split, t.batch_size // self.world.size, None, t.num_workers, sampler)

    def _shard(self, split: Any) -> Any:
        """This process's share of an evaluation split (every ``size``-th image)."""
        if not self.world.distributed:
            return split
        return torch.utils.data.Subset(split, range(self.world.rank, len(split), self.world.size))

    # ------------------------------------------------------------- checkpoints
    def _checkpoint(self, state: dict[str, Any], shuffle: torch.Generator) -> None:
        """Everything needed to continue after this epoch, in one atomic safetensors file."""
        tensors = {f"model.{k}": v for k, v in self.state().items()}
        for idx, st in self.opt.state_dict()["state"].items():
            for k, v in st.items():
                tensors[f"opt.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.shuffle"] = shuffle.get_state()
        if torch.cuda.is_available():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        np_state = np.random.get_state()
        meta = {
            **state,
            "step_no": self.step_no,
            "python_rng": random.getstate(),
            "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        }
        outputs.save_state(self.out / "last.safetensors", tensors, {"esx": json.dumps(meta)})

    def _restore(self, shuffle: torch.Generator) -> dict[str, Any]:
        path = self.out / "last.safetensors"
        if not path.is_file():
            raise EsxError(
                f"cannot resume: {path} does not exist (no epoch had finished); "
                "start the run again without --resume"
            )
        tensors, meta = outputs.load_state_with_meta(path)
        state = json.loads(meta["esx"])
        self.load({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        sd = self.opt.state_dict()
        sd["state"] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, idx, name = k.split(".", 2)
                sd["state"].setdefault(int(idx), {})[name] = v
        self.opt.load_state_dict(sd)
        torch.set_rng_state(tensors["rng.torch"])
        shuffle.set_state(tensors["rng.shuffle"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        py = state.pop("python_rng")
        random.setstate((py[0], tuple(py[1]), py[2]))
        npst = state.pop("numpy_rng")
        np.random.set_state((npst[0], np.array(npst[1], dtype=np.uint32), *npst[2:]))
        self.step_no = state.pop("step_no")
        return state

    # ----------------------------------------------------------------- helpers
    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description:>12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )

    def _start_log(self, append: bool = False) -> None:
        handler = logging.FileHandler(
            self.out / "run.log", mode="a" if append else "w", encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        for h in list(log.handlers):
            if isinstance(h, logging.FileHandler):
                log.removeHandler(h)
                h.close()
        log.addHandler(handler)
        log.setLevel(logging.INFO)

    def _write_history(self, history: list[dict[str, Any]]) -> None:
        keys = list(dict.fromkeys(k for row in history for k in row))
        outputs.write_csv(
            self.out / "history.csv", keys, [[row.get(k, "") for k in keys] for row in history]
        )

    def _finish(
        self,
        test: dict[str, Any],
        history: list[dict[str, Any]],
        best_epoch: int,
        seconds: float,
        report: dict[str, Any],
    ) -> dict[str, Any]:
        info = self.c.dataset.info
        cols = zip(test["index"], test["label"], test["prob"], test["pred"], strict=True)
        rows = [[int(i), int(lab), f"{p:.6f}", int(pr)] for i, lab, p, pr in cols]
        outputs.write_csv(
            self.out / "predictions.csv", ["id", "label", "prob_positive", "pred"], rows
        )
        best = history[best_epoch - 1]
        families = ("dataset", "backbone", "explainer", "aggregator", "loss")
        metrics = {
            "test": {k: v for k, v in test["metrics"].items() if k != "loss"},
            "explanation": test.get("explanation", {}),
            "validation": {
                "best_epoch": best_epoch,
                "select_metric": self.recipe.train.select_metric,
                **{k[4:]: v for k, v in best.items() if k.startswith("val_")},
            },
            "data": {
                "name": info.name,
                "synthetic": info.synthetic,
                "splits": info.splits,
                "num_annotators": info.num_annotators,
                **info.details,
                **({"fallback_from": self.c.fallback} if self.c.fallback else {}),
            },
            "run": {
                "seed": self.recipe.seed,
                "device": str(self.device),
                "processes": self.world.size,
                "precision": str(self.dtype or "fp32"),
                "seconds": round(seconds, 1),
                "esx_version": __version__,
                "torch_version": torch.__version__,
                "recipe": self.source,
                "components": {f: self.recipe.component(f).name for f in families},
            },
        }
        if report:
            metrics["aggregator"] = report
        outputs.write_json(self.out / "metrics.json", metrics)
        log.info("test %s", metrics["test"])
        return metrics

    def _figures(self) -> None:
        n = self.recipe.eval.overlays
        if n <= 0:
            return
        from esx.figures import overlays

        ds = self.c.dataset.split("test")
        pos = [i for i in range(len(ds)) if ds[i].label > 0][: (n + 1) // 2]
        neg = [i for i in range(len(ds)) if ds[i].label == 0][: n // 2]
        samples = [ds[i] for i in pos + neg]
        if not samples:
            return
        batch = collate(samples).to(self.device)
        self.c.backbone.eval()
        with torch.no_grad():
            pred = self.c.backbone(batch.image).argmax(1)
        maps = self.c.eval_explainer.explain(self.c.backbone, batch.image, pred).detach()
        overlays(self.out / "overlays.png", batch, maps.cpu(), pred.cpu())
        self.c.aggregator.figures(self.out, batch)
