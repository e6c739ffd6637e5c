"""Data-parallel training under ``torchrun`` (PyTorch's own launcher and DDP engine).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (and the rendezvous address); every process runs
the same ``netspec train`` command. The spec's batch size stays the global batch: each of the N
processes takes an equal share of every batch (so the recipe's learning rate keeps its meaning),
gradients are averaged by DDP, metrics are summed across processes, and only rank 0 writes the
run directory. Backend: NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from netspec.errors import SpecError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: torch.device) -> torch.device:
        """Each process on a machine takes its own GPU."""
        if self.active and requested.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return requested

    def shard(self, indices: list[int], batch_size: int) -> tuple[list[int], int]:
        """This process's share of an epoch's sample order: from each global batch, the slice
        ``rank::size``; returns (indices, per-process batch size)."""
        if not self.active:
            return indices, batch_size
        local = batch_size // self.size
        mine = []
        for start in range(0, len(indices), batch_size):
            mine += indices[start: start + batch_size][self.rank * local: (self.rank + 1) * local]
        return mine, local

    def sum(self, *values: float) -> list[float]:
        """Sum numbers across processes (every process gets the totals)."""
        if not self.active:
            return list(values)
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, value: Any) -> list[Any]:
        if not self.active:
            return [value]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()


def _collective_device() -> torch.device:
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def world_from_env() -> World:
    """The process group torchrun describes, joined once; a single process when not under torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    import torch.distributed as dist

    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and dist.is_nccl_available()
        if use_nccl:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if use_nccl else "gloo")
    return world


def leave(world: World) -> None:
    if world.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def check_batch(world: World, batch_size: int) -> None:
    if world.active and batch_size % world.size:
        raise SpecError.single(f"the batch size {batch_size} does not split evenly over {world.size} processes",
                               hint=f"use a batch size that is a multiple of {world.size} (--batch-size)")
