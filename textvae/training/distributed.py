"""Multi-process training with torch.distributed (DDP), started by `torchrun`.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; `setup` joins the process group (gloo on CPU, NCCL on
GPUs, one GPU per local rank). Every process builds the same length-bucketed global batches from the
shared seed and trains on its share of each batch's rows (rows rank, rank + world, ...). Losses are
scaled so DDP's gradient average equals the gradient of the whole batch's mean, and the random
numbers of a step (word dropout, posterior noise) are drawn for the whole batch from a generator all
processes share: the update is the one a single process would make on the combined batch. Only
rank 0 writes files; it evaluates and broadcasts the result so every process takes the same
learning-rate and early-stopping decisions.
"""

from __future__ import annotations

import datetime
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import TextVAEError


@dataclass
class Workers:
    """This process's place among the training processes (a single process is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def rows(self, batch_size: int) -> list[int] | None:
        """The rows of a global batch this process trains on (None = all of them)."""
        return list(range(self.rank, batch_size, self.world_size)) if self.distributed else None

    def share(self, batch_size: int) -> int:
        """How many rows of a global batch this process trains on."""
        rows = self.rows(batch_size)
        return batch_size if rows is None else len(rows)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_sum(self, value: float, device: torch.device) -> float:
        """The sum of `value` over all processes (the value itself for a single process)."""
        if not self.distributed:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return float(total)

    def all_sum_tensor(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed element-wise over all processes, in place (unchanged for a single process)."""
        if self.distributed:
            dist.all_reduce(values)
        return values

    def from_main(self, value):
        """`value` as rank 0 has it, on every process (any picklable object)."""
        if not self.distributed:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]


def setup(device: torch.device) -> tuple[Workers, torch.device]:
    """Join the torchrun process group if there is one; returns the workers and this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Workers(), device
    workers = Workers(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        if torch.cuda.device_count() <= workers.local_rank:
            raise TextVAEError(f"torchrun started local rank {workers.local_rank} but only "
                               f"{torch.cuda.device_count()} GPUs are visible; lower --nproc_per_node")
        device = torch.device("cuda", workers.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():  # rank 0 evaluates while the others wait: allow long waits
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=3))
    return workers, device


def teardown(workers: Workers) -> None:
    """Leave the process group once nothing uses it: DDP models still waiting in reference cycles are collected
    first, since a DDP reducer freed after its process group was destroyed can hang at exit."""
    if workers.distributed and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
