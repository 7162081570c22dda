"""One optimizer step: several subnets, their gradients summed, distilled from the full network.

Paper section 5.1: N subnets per batch, gradients aggregated before one
optimizer step; the loss of each is cross-entropy with label smoothing plus,
with weight `distill`, the soft cross-entropy to the teacher's outputs
(Hinton et al. 2015; OFA's ``kd_type='ce'``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from compofa.space import SubnetSpec
from compofa.supernet.network import Supernet


def soft_cross_entropy(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of `logits` against the teacher's softmax, averaged over the batch."""
    return -(F.softmax(teacher_logits, dim=1) * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


@dataclass(frozen=True)
class StepLosses:
    """Losses of one step, averaged over its subnets (for logs)."""

    loss: float
    cross_entropy: float
    distillation: float
    top1: float  # share of the batch the step's subnets classified right, averaged


def resize_batch(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """`images` at `resolution` pixels (bilinear, antialiased when shrinking); unchanged if already there."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)


def train_step(
    supernet: Supernet,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    specs: Sequence[SubnetSpec],
    label_smoothing: float,
    distill: float,
    teacher: nn.Module | None = None,
    reduce: Callable[[], None] | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> StepLosses:
    """Train `specs` on one batch and take one optimizer step.

    `model` is what runs the active subnet (the supernet, or a wrapper around
    it); `reduce` runs once the subnets' gradients are summed, before the step
    (the all-reduce over ranks in distributed training). With `scaler`, the
    forward passes run in float16 autocast (mixed precision on a GPU) and the
    loss is scaled; the gradients are reduced still scaled, so every rank finds
    the same overflow and skips or takes the same step.
    """
    autocast = torch.autocast(images.device.type, dtype=torch.float16) if scaler is not None \
        else contextlib.nullcontext()
    optimizer.zero_grad(set_to_none=True)
    teacher_logits = None
    if teacher is not None and distill > 0:
        with torch.no_grad(), autocast:
            teacher_logits = teacher(images).float()
    totals = [0.0, 0.0, 0.0, 0.0]
    for spec in specs:
        with supernet.active(spec):
            with autocast:
                logits = model(images).float()
            cross_entropy = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
            distillation = soft_cross_entropy(logits, teacher_logits) if teacher_logits is not None \
                else logits.new_zeros(())
            loss = cross_entropy + distill * distillation
            (scaler.scale(loss) if scaler is not None else loss).backward()  # summed over the step's subnets
        totals[0] += float(loss.detach())
        totals[1] += float(cross_entropy.detach())
        totals[2] += float(distillation.detach())
        totals[3] += float((logits.detach().argmax(dim=1) == labels).float().mean())
    if reduce is not None:
        reduce()
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    count = len(specs)
    return StepLosses(*(total / count for total in totals))
