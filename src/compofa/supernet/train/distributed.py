"""Data-parallel training under ``torchrun``: one process per device, gloo on CPUs, nccl on GPUs.

Every rank builds the same supernet (same seed or the same initial checkpoint)
and draws the same subnets and resolution per step (`sampling.step_generator`),
each on its own shard of the batch. After a step's subnets have summed their
gradients locally, one all-reduce averages them over the ranks, so every rank
takes the same optimizer step. (DistributedDataParallel would all-reduce after
each subnet's backward and needs to be told which parameters a subnet leaves
unused; one explicit reduction per step does neither.) At the end of every
epoch the ranks compare a checksum of their weights, and a divergence is an
error rather than a silently wrong model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from compofa.errors import CompofaError


class DistributedError(CompofaError):
    """A device that is not here, or ranks that cannot start together or that drifted apart."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (1 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def leader(self) -> bool:
        """Writes checkpoints and logs."""
        return self.rank == 0


def join(device: str) -> Ranks:
    """Join the process group torchrun describes in the environment (no-op when run alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
    return Ranks(rank, world, local_rank)


def device_for(requested: str, ranks: Ranks = Ranks()) -> torch.device:
    """The device `requested` names, checked to exist here; ``cuda`` under torchrun means this rank's GPU."""
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise DistributedError(f"unknown device {requested!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DistributedError(f"device {requested!r} needs an NVIDIA GPU with a driver, and none is visible here")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise DistributedError(f"device {requested!r}: only {torch.cuda.device_count()} GPU(s) are visible")
    if requested == "cuda" and ranks.distributed:
        return torch.device("cuda", ranks.local_rank)
    return device


def average_gradients(model: nn.Module, ranks: Ranks) -> None:
    """Average every parameter's gradient over the ranks, in one flat all-reduce."""
    if not ranks.distributed:
        return
    parameters = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ranks.world
    offset = 0
    for parameter, grad in zip(parameters, grads):
        size = grad.numel()
        parameter.grad = flat[offset : offset + size].view_as(grad).clone()
        offset += size


def check_in_sync(model: nn.Module, ranks: Ranks) -> None:
    """Raise if the ranks' weights differ (they must, after identical steps, be identical)."""
    if not ranks.distributed:
        return
    with torch.no_grad():
        checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    gathered = [torch.zeros_like(checksum) for _ in range(ranks.world)]
    dist.all_gather(gathered, checksum)
    values = [float(t) for t in gathered]
    if max(values) != min(values):
        raise DistributedError(f"ranks hold different weights (checksums {values}); the run cannot continue")


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()
