"""The trainer: runs one experiment from a resolved recipe.

One step, top to bottom::

    features = backbone.forward_features(image)      one forward
    logits   = backbone.forward_head(features)
    L_pred   = cross_entropy(logits, label)
    out      = aggregator(batch)                     targets (+ its own loss)
    maps     = explainer.explain(..., features, logits, create_graph=True)
    L        = L_pred + λ_exp · loss(maps, targets) + λ_gen · out.loss

Only images that carry target weight and whose class has masks (positives in a
binary task, every image where the dataset says ``masks_for: all``) feed the
explanation loss; the explainer explains the label's class. The trainer knows no
component by name. Building lives in :mod:`esx.build`, device and precision in
:mod:`esx.runtime`, checkpoints in :mod:`esx.checkpoint`, evaluation and
``metrics.json`` in :mod:`esx.evaluation`.
"""

from __future__ import annotations

import functools
import logging
import operator
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch.utils.data import DistributedSampler

from esx import __version__, checkpoint, evaluation, outputs, runlog
from esx import distributed as dist
from esx.build import build
from esx.contracts import ComponentError, ContractError, RunFailed
from esx.data import loader, train_loader
from esx.errors import DiskFullError, NonFiniteLossError
from esx.interfaces import Aggregator
from esx.recipe import Recipe, dump_recipe
from esx.runtime import FP16_EXPLAIN_SCALE, Runtime, allocator, allocator_why, seed_everything
from esx.step import StepModule
from esx.types import Batch

log = logging.getLogger("esx")


class Trainer:
    """Runs a recipe end to end and writes the run folder."""

    def __init__(
        self,
        recipe: Recipe,
        out: Path,
        console: Console | None = None,
        recipe_source: str = "",
        runtime: Runtime | None = None,
    ) -> None:
        t = recipe.train
        self.out, self.source = Path(out), recipe_source
        self.console = console or Console(quiet=True)
        self.rt = runtime or Runtime.setup(recipe.device, t.precision, t.channels_last)
        seed_everything(recipe.seed)
        self.announced = False
        self.c = build(recipe, self.rt.device, self._data_not_found)
        # The run folder records what actually ran, so a resume rebuilds the same data.
        self.recipe = recipe.model_copy(update={"data": self.c.data})
        trained = [
            p for m in (self.c.backbone, self.c.loss) for p in m.parameters() if p.requires_grad
        ]
        groups = [{"params": trained, "lr": t.lr}, *self.c.aggregator.param_groups(t.lr)]
        self.opt = torch.optim.Adam(groups, lr=t.lr, weight_decay=t.weight_decay)
        self.step_no = 0
        self.scaler = self.rt.scaler()
        if self.rt.channels_last:
            self.c.backbone.to(memory_format=torch.channels_last)
        self.module = StepModule(self.c)
        self.model: torch.nn.Module = self.rt.wrap(self.module, t.batch_size)

    def _data_not_found(self, reason: str, instead: str) -> None:
        """Say why the fallback data is being built, before building it."""
        if self.rt.world.main:
            runlog.data_not_found(self.console, reason, instead)
            self.announced = True

    def step(self, batch: Batch) -> dict[str, float]:
        """One optimiser step on ``batch``; returns the loss terms and the aggregator's logs."""
        t = self.recipe.train
        if not all(m.training for m in self.model.modules()):  # evaluation set some to eval
            self.model.train()
        if self.rt.channels_last:
            batch = replace(batch, image=self.rt.layout(batch.image))
        # Under fp16 the explainer scales its class score before autograd.grad and unscales
        # the gradients after (PyTorch's AMP recipe for losses on gradients). The loss
        # scaler's own scale (2^16 at first) would overflow fp16 at the seed itself, since
        # d score / d logit is 1; a fixed 2^8 lifts small gradients clear of fp16's subnormals.
        self.c.explainer.grad_scale = FP16_EXPLAIN_SCALE if self.scaler else 1.0
        with self.rt.autocast():
            terms, agg_logs = self.model(batch)
        if self.module.check:
            self.module.check = False  # the first batch's outputs kept every contract
        values = torch.stack([v.detach().float() for v in terms.values()]).tolist()  # one sync
        NonFiniteLossError.check(dict(zip(terms, values, strict=True)), self.step_no)
        weights = {"pred": 1.0, "exp": t.lambda_exp, "gen": t.lambda_gen}
        scaled = (v if weights[k] == 1 else weights[k] * v for k, v in terms.items())
        self.opt.zero_grad(set_to_none=True)
        self.rt.optimise(functools.reduce(operator.add, scaled), self.opt, self.scaler)
        self.step_no += 1
        return {**dict(zip(terms, values, strict=True)), **agg_logs}

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train, choose the checkpoint on validation, evaluate on test, write the run folder.

        With ``resume``, continue from the folder's ``last.safetensors`` (written
        at the end of every epoch); the result equals an uninterrupted run's.
        ``status.json`` says running, then finished, failed or interrupted; a
        component that fails ends the run with :class:`RunFailed`, naming it, the
        epoch and step, and the resume command (the traceback goes to run.log).
        """
        self.epoch: int | str = "start"
        try:
            return self._run(resume)
        except BaseException as exc:
            framed = self._failed(exc)
            if framed is exc:
                raise
            raise framed from exc

    def _run(self, resume: bool) -> dict[str, Any]:
        t = self.recipe.train
        self._start(resume)
        shuffle = torch.Generator().manual_seed(self.recipe.seed)
        train_dl, val_dl = self._train_loader(shuffle), self._eval_loader("val")
        higher = t.select_metric != "loss"
        loop = {"epoch": 0, "best": -np.inf if higher else np.inf, "best_epoch": 0}
        if resume and not (self.out / checkpoint.LAST).is_file():  # stopped in epoch 1
            log.info("no epoch had finished: the resumed run starts at epoch 1")
            resume = False
        loop = self._restore(shuffle) if resume else {**loop, "history": [], "seconds": 0.0}
        started = time.time() - loop["seconds"]
        self._clock = time.time()  # the start of the epoch in progress
        with runlog.progress(self.console) as progress:
            if not resume:
                self._prepare_aggregator(progress)
            epochs = progress.add_task("epochs", total=t.epochs, completed=loop["epoch"])
            for epoch in range(loop["epoch"] + 1, t.epochs + 1):
                means = self._train_epoch(train_dl, epoch, progress)
                val = evaluation.predict(self.c, self.rt, val_dl, progress, "validation")
                row = {
                    "epoch": epoch,
                    **{f"train_{k}": v for k, v in means.items()},
                    **{f"val_{k}": v for k, v in val["metrics"].items()},
                }
                score = val["metrics"][t.select_metric]
                better = score > loop["best"] if higher else score < loop["best"]
                if better or loop["best_epoch"] == 0:
                    loop["best"], loop["best_epoch"] = score, epoch
                    if self.rt.world.main:
                        outputs.save_state(self.out / "best.safetensors", self.c.state())
                loop["history"].append(row)
                loop["epoch"], loop["seconds"] = epoch, time.time() - started
                self._end_epoch(loop, shuffle)
                progress.advance(epochs)
            metrics = self._evaluate(loop, progress, started)
        dist.barrier(self.rt.world)
        runlog.status(self.out, self.rt.world, "finished")
        return metrics

    def _failed(self, exc: BaseException) -> BaseException:
        """Record the failure (status.json, the traceback in run.log); the error to raise."""
        where = f"epoch {self.epoch}, step {self.step_no}"
        if isinstance(exc, KeyboardInterrupt):
            runlog.status(self.out, self.rt.world, "interrupted", where=where)
            return exc
        log.error("failed at %s", where, exc_info=exc)
        runlog.status(self.out, self.rt.world, "failed", where=where, error=str(exc))
        if not isinstance(exc, ComponentError | ContractError | DiskFullError):
            return exc
        return RunFailed(f"{exc}\n  at {where}; {checkpoint.failure_advice(self.out)}")

    def _start(self, resume: bool) -> None:
        """The main process writes the resolved recipe, opens run.log and says what runs."""
        info = self.c.dataset.info
        runlog.status(self.out, self.rt.world, "running")
        if self.rt.world.main:
            if not resume:
                outputs.write_text(self.out / "recipe.yaml", dump_recipe(self.recipe))
            runlog.start_log(self.out, append=resume)
            runlog.banners(self.console, info, self.c.fallback, self.announced)
        log.info(
            "esx %s, device %s, data %s %s, precision %s, processes %d, allocator %s (%s)",
            *(__version__, self.rt.device, info.name, info.splits),
            *(self.rt.precision, self.rt.world.size, allocator(), allocator_why()),
        )

    def _prepare_aggregator(self, progress: Any) -> None:
        """The aggregator's :meth:`~esx.interfaces.Aggregator.prepare`, once, before training
        (a progress bar counts the batches it reads); under several processes the main
        process's result is given to all."""
        t, agg = self.recipe.train, self.c.aggregator
        if type(agg).prepare is Aggregator.prepare:
            return
        self.epoch = "preparing the aggregator"
        began = time.time()
        order = torch.Generator().manual_seed(self.recipe.seed + 1)
        dl = loader(self.c.dataset.split("train"), t.batch_size, order, t.num_workers)
        counted = runlog.Counted(dl, progress, f"preparing {self.recipe.aggregator.name}")
        agg.prepare(counted, self.rt.device)
        counted.close()
        if self.rt.world.distributed:
            state = dist.broadcast(agg.state_dict() if self.rt.world.main else None, self.rt.world)
            agg.load_state_dict(state)
        log.info(
            "aggregator %r prepared in %.1f s", self.recipe.aggregator.name, time.time() - began
        )
        self._clock = time.time()  # epoch 1's time excludes the preparation

    def _train_epoch(self, dl: Any, epoch: int, progress: Any) -> dict[str, float]:
        """One pass over the training split; the mean of each logged term over steps."""
        sums: dict[str, float] = {}
        self.epoch = epoch
        task = progress.add_task(f"epoch {epoch}", total=len(dl))
        if isinstance(dl.sampler, DistributedSampler):
            dl.sampler.set_epoch(epoch)
        for batch in dl:
            for k, v in self.step(batch.to(self.rt.device, non_blocking=True)).items():
                sums[k] = sums.get(k, 0.0) + v
            progress.advance(task)
        progress.remove_task(task)
        return dist.all_mean({k: v / len(dl) for k, v in sums.items()}, self.rt.world)

    def _evaluate(self, loop: dict[str, Any], progress: Any, started: float) -> dict[str, Any]:
        """Test the checkpoint chosen on validation; the main process writes the results."""
        dist.barrier(self.rt.world)  # best.safetensors is written
        self.epoch = "evaluation"
        t = self.recipe.train
        test = self.test_chosen(progress)
        if not self.rt.world.main:
            return {}
        full_test = loader(self.c.dataset.split("test"), t.eval_batch_size, None, t.num_workers)
        reports, tables = evaluation.component_results(self.c, full_test, self.rt.device)
        run = {"seed": self.recipe.seed, "seconds": round(time.time() - started, 1)}
        chosen = evaluation.chosen(loop, t.select_metric)
        metrics = evaluation.write_results(
            self.out, self.c, self.rt, test, chosen, run | {"recipe": self.source}, reports, tables
        )
        log.info("test %s", metrics["test"])
        if not t.keep_last_checkpoint:
            (self.out / checkpoint.LAST).unlink(missing_ok=True)
        evaluation.figures(self.out, self.c, self.rt.device, self.recipe.eval.overlays, test)
        return metrics

    def test_chosen(self, progress: Any) -> dict[str, Any]:
        """Predictions and explanation metrics of the chosen checkpoint on the test split."""
        fix = f"rerun the run (esx run RECIPE --out {self.out} --overwrite)"
        self.c.load(outputs.load_state(self.out / "best.safetensors", fix))
        e = self.recipe.eval
        dl, tol = self._eval_loader("test"), e.pointing_tolerance
        return evaluation.predict(self.c, self.rt, dl, progress, "test", e.threshold, tol)

    def _train_loader(self, shuffle: torch.Generator) -> Any:
        t = self.recipe.train
        split = self.c.dataset.split("train")
        return train_loader(
            split, t.batch_size, shuffle, t.num_workers, self.rt.world, self.recipe.seed
        )

    def _eval_loader(self, name: str) -> Any:
        t = self.recipe.train
        split = self.rt.shard(self.c.dataset.split(name))
        return loader(split, t.eval_batch_size, None, t.num_workers)

    def _end_epoch(self, loop: dict[str, Any], shuffle: torch.Generator) -> None:
        """Log the epoch and print its line; the main process writes history.csv and
        last.safetensors."""
        row, t = loop["history"][-1], self.recipe.train
        took, self._clock = time.time() - self._clock, time.time()
        runlog.epoch_line(self.console, row, t.epochs, t.select_metric, loop, took)
        values = " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch")
        log.info("epoch %d %s", row["epoch"], values)
        if not self.rt.world.main:
            return
        runlog.write_history(self.out, loop["history"])
        checkpoint.save(
            self.out, self.c.state(), self.opt, shuffle, {**loop, "step_no": self.step_no}
        )

    def _restore(self, shuffle: torch.Generator) -> dict[str, Any]:
        model, loop = checkpoint.restore(self.out, self.opt, shuffle)
        self.c.load(model)
        self.step_no = loop.pop("step_no")
        log.info("resumed after epoch %d", loop["epoch"])
        return loop
