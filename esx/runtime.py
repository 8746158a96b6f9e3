"""Where and how a run computes: device, mixed precision, memory layout, processes.

:meth:`Runtime.setup` is called once per process (by the CLI, or by the
trainer when it is used as a library) and everything downstream reads the
result instead of deciding again.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import random
from collections.abc import Mapping
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


#: ``ESX_ALLOCATOR`` values: ``reuse`` (the esx commands' default), ``system`` (malloc as is)
ALLOCATORS = ("reuse", "system")
#: environment variables by which a user has already tuned malloc (esx then leaves it be)
_MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
               "MALLOC_TOP_PAD_")  # fmt: skip
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
#: the allocator in effect and why; a library import leaves malloc alone
_allocator: tuple[str, str] = ("system", "no esx command applied one")


def allocator_choice(environ: Mapping[str, str]) -> tuple[str, str]:
    """Whether :func:`reuse_freed_memory` applies under ``environ``, and why:
    ``("reuse", why)`` or ``("system", why)``; decides only, changes nothing."""
    wanted = environ.get("ESX_ALLOCATOR", "reuse").strip().lower() or "reuse"
    if wanted not in ALLOCATORS:
        raise EsxError(
            f"ESX_ALLOCATOR={environ['ESX_ALLOCATOR']!r} is not one of {', '.join(ALLOCATORS)}: "
            "unset it (freed memory is reused) or set ESX_ALLOCATOR=system (malloc as is)"
        )
    if wanted == "system":
        return "system", "ESX_ALLOCATOR=system"
    tuned = [k for k in _MALLOC_ENV if k in environ]
    if "malloc" in environ.get("GLIBC_TUNABLES", ""):
        tuned.append("GLIBC_TUNABLES")
    if "malloc" in environ.get("LD_PRELOAD", ""):
        tuned.append("LD_PRELOAD")  # jemalloc, tcmalloc, mimalloc: the user's allocator
    if tuned:
        return "system", f"set by the user ({', '.join(tuned)})"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "system", "not glibc's malloc"
    return "reuse", "freed memory kept for reuse"


def reuse_freed_memory() -> str:
    """Have glibc's malloc keep freed memory for reuse; the allocator in effect after it.

    glibc serves each allocation above its mmap threshold (128 KiB, adapting up to 32
    MiB) with a fresh ``mmap`` and unmaps it when freed, so a training step that frees and
    allocates the same large tensors every step makes the kernel map and zero each of
    their pages again: about a fifth of a CPU run's time in a measured workload
    (``benchmarks/allocator.py``, ``docs/explanation/performance.md``). With no mmap
    (``M_MMAP_MAX`` 0) and the heap's top kept (``M_TRIM_THRESHOLD``), freed blocks are
    reused instead. The arithmetic is the same (every CPU tensor is 64-byte aligned
    either way; a run's checkpoint is bit-identical: ``tests/test_allocator.py``); the
    process keeps its peak memory until it exits.

    Called by the commands that train (``esx run``, ``esx sweep``: :func:`esx.launch.run`,
    :func:`esx.sweep.command`), not on import: a library must not change the allocator of
    the program that imports it. Left as it is where :func:`allocator_choice` says so
    (``ESX_ALLOCATOR=system``, malloc tuned by the user, another allocator preloaded, or
    not glibc).
    """
    global _allocator
    choice, why = allocator_choice(os.environ)
    if _allocator[0] == "reuse":
        return "reuse"  # applied once for the process, with its reason
    if choice == "reuse":
        mallopt = ctypes.CDLL(None).mallopt
        if mallopt(_M_MMAP_MAX, 0) != 1 or mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) != 1:
            choice, why = "system", "glibc's mallopt refused the settings"
    _allocator = (choice, why)
    return choice


def allocator() -> str:
    """The allocator in effect: ``reuse`` once :func:`reuse_freed_memory` applied it, else
    ``system``."""
    return _allocator[0]


def allocator_why() -> str:
    """Why :func:`allocator` is what it is (:func:`allocator_choice`'s reason, or that no
    esx command applied one), for the run's first log line."""
    return _allocator[1]


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
