"""Where and how a run computes: device, mixed precision, memory layout, processes.

:meth:`Runtime.setup` is called once per process (by the CLI, or by the
trainer when it is used as a library) and everything downstream reads the
result instead of deciding again.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from esx import distributed as dist
from esx.errors import EsxError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def choose_device(wanted: str, world: dist.World | None = None) -> torch.device:
    """``auto`` (CUDA when visible), ``cpu`` or ``cuda``; one GPU per process under torchrun."""
    if wanted == "cuda" and not torch.cuda.is_available():
        raise EsxError("recipe asks for device 'cuda' but no CUDA GPU is visible; use auto or cpu")
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda" and world is not None and world.distributed:
        return torch.device("cuda", world.local_rank)
    return torch.device(wanted)


#: a recipe's ``train.precision`` (but ``auto``) -> the autocast dtype (``None``: full fp32)
DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def choose_precision(wanted: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run (``None``: full fp32)."""
    if wanted == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return DTYPES[wanted]


def precision_name(recorded: str) -> str:
    """A run's recorded precision (:attr:`Runtime.precision`, as ``metrics.json`` has it:
    ``fp32`` or the dtype, e.g. ``torch.bfloat16``) as a recipe names it (``bf16``)."""
    names = {str(dtype): name for name, dtype in DTYPES.items() if dtype is not None}
    return names.get(recorded, recorded)


#: score scale of a differentiable explainer under fp16 (a power of two: unscaling is exact)
FP16_EXPLAIN_SCALE = 2.0**8


@dataclass(frozen=True)
class Runtime:
    """The decisions of :meth:`setup`, shared by training, evaluation and checkpoints."""

    world: dist.World
    device: torch.device
    dtype: torch.dtype | None
    channels_last: bool

    @classmethod
    def setup(
        cls, device: str = "auto", precision: str = "auto", channels_last: bool | None = None
    ) -> Runtime:
        """Choose the device and precision and join the process group (torchrun) once."""
        world = dist.from_env()
        dev = choose_device(device, world)
        dist.setup(world, dev.type)
        last = dev.type == "cuda" if channels_last is None else channels_last
        return cls(world, dev, choose_precision(precision, dev), last)

    @property
    def precision(self) -> str:
        return str(self.dtype or "fp32")

    def autocast(self) -> Any:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler | None:
        """A loss scaler under fp16 (bf16 has fp32's range and needs none)."""
        return torch.amp.GradScaler(self.device.type) if self.dtype == torch.float16 else None

    def layout(self, image: Tensor) -> Tensor:
        return image.contiguous(memory_format=torch.channels_last) if self.channels_last else image

    def optimise(self, total: Tensor, opt: torch.optim.Optimizer, scaler: Any) -> None:
        """Back-propagate ``total`` and step ``opt``, through the fp16 loss scaler if any."""
        if scaler is not None:
            scaler.scale(total).backward()
            scaler.step(opt)
            scaler.update()
        else:
            total.backward()
            opt.step()

    def wrap(self, module: torch.nn.Module, batch_size: int) -> torch.nn.Module:
        """``module`` as the processes train it: itself in one process, else in
        DistributedDataParallel (``batch_size``, the global batch, must divide among them)."""
        if not self.world.distributed:
            return module
        n = self.world.size
        if batch_size % n:
            raise EsxError(
                f"train.batch_size {batch_size} is the global batch and must divide among "
                f"{n} processes; make it a multiple of {n}"
            )
        # Unused parameters are legitimate (e.g. annotator weights a target mode ignores).
        return torch.nn.parallel.DistributedDataParallel(module, find_unused_parameters=True)

    def shard(self, split: Any) -> Any:
        """This process's share of an evaluation split (every ``size``-th image)."""
        if not self.world.distributed:
            return split
        w = self.world
        return torch.utils.data.Subset(split, range(w.rank, len(split), w.size))
