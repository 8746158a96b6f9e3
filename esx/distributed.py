"""Many processes, one run: what esx needs of ``torch.distributed``.

``torchrun --nproc_per_node N -m esx run RECIPE`` starts N processes with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` set; :func:`setup` joins them
(nccl on GPUs, gloo on CPUs). Without those variables everything here is a
no-op for a single process, so the trainer has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from esx.errors import EsxError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Only the main process prints and writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def from_env() -> World:
    """The process's place in a ``torchrun`` launch (a single process otherwise)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise EsxError(
            f"WORLD_SIZE/RANK/LOCAL_RANK must be integers ({exc}); launch with "
            "torchrun --nproc_per_node N -m esx run RECIPE"
        ) from None
    return World(rank, size, local)


def setup(world: World, device_type: str) -> None:
    """Join the process group (once); pin this process to its GPU."""
    if not world.distributed or dist.is_initialized():
        return
    if device_type == "cuda":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")


def gather(obj: Any, world: World) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` for one process)."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any, world: World) -> Any:
    """The main process's ``obj`` on every process."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_mean(values: dict[str, float], world: World) -> dict[str, float]:
    """Mean over processes of a dict of numbers with the same keys everywhere."""
    if not world.distributed:
        return values
    every = gather(values, world)
    return {k: sum(float(v.get(k, 0.0)) for v in every) / world.size for k in every[0]}


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
