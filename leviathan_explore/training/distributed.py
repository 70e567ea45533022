"""Distributed data-parallel launch through ``torchrun`` (NCCL on GPUs, gloo on CPU).

Launch the ordinary training command under torchrun, e.g.::

    torchrun --nproc_per_node 2 -m leviathan_explore.cli train --arch dense --preset cpu-tiny ...

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; ``init_distributed``
reads them. ``--batch-size`` stays the *global* batch: each rank takes its slice
of every micro-batch, so the loss equals a single process with the same batch.
Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False  # we called init_process_group, so we tear it down

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> None:
        if self.enabled:
            tdist.all_reduce(tensor, op=tdist.ReduceOp.SUM)

    def all_reduce_max(self, tensor: torch.Tensor) -> None:
        if self.enabled:
            tdist.all_reduce(tensor, op=tdist.ReduceOp.MAX)

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()

    def close(self) -> None:
        if self.initialized_here and tdist.is_initialized():
            tdist.destroy_process_group()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is a user error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' but no CUDA device is available; use --device cpu or auto")
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return torch.device("cpu")


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun set up, or return a single-process ``DistInfo``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(device=resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    initialized_here = False
    if not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo",
                                 device_id=dev if dev.type == "cuda" else None)
        initialized_here = True
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev,
                    initialized_here=initialized_here)
