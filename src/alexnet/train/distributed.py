"""Data parallelism through PyTorch's engine (DDP): set up once, from torchrun's environment.

One machine, N processes (gloo on CPU, NCCL on CUDA):

    torchrun --nproc_per_node=N -m alexnet train --data DIR ...

Several machines: run the same command on each, with torchrun's rendezvous, e.g. on every node

    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d \
        --rdzv-endpoint=HOST0:29400 --rdzv-id=alexnet-run1 -m alexnet train --data DIR ...

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `--batch-size` is the global batch, split evenly
over the ranks, so a run at the same global batch follows the same trajectory (up to float
rounding) whatever the number of processes. Only rank 0 writes the run dir and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank among world_size, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group torchrun describes (no-op when WORLD_SIZE is unset or 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank)


def pick_device(name: str, ctx_local_rank: int = 0) -> torch.device:
    """`auto`: this rank's CUDA device when there is one, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", ctx_local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"--device {name}: not a device (e.g. cpu, cuda, cuda:1)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    if device.type not in ("cpu", "cuda"):
        try:
            torch.empty(0, device=device)
        except Exception as err:  # each backend fails in its own way
            raise ValueError(f"--device {name}: not usable here ({err})") from err
    return device


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """The global batch split over ranks; it must divide evenly to keep the recipe's batch."""
    if batch_size % world_size:
        raise ValueError(
            f"--batch-size {batch_size} is not divisible by the {world_size} processes; "
            f"use a multiple of {world_size}"
        )
    return batch_size // world_size


def all_reduce_mean(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The mean of `value` over ranks (the tensor itself when not distributed)."""
    if not ctx.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / ctx.world_size


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def cleanup(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
