"""The optimizer and learning-rate schedule of a phase (paper section 5.1; the reference training script).

SGD with Nesterov momentum; weight decay on convolution and linear weights
only (not on BatchNorm parameters and biases, as the reference's
``no_decay_keys='bn#bias'``). The rate warms up linearly for the phase's
warm-up epochs, from the rate of one 256-image batch (the reference's
one-GPU rate) to the rate of the global batch, then follows a cosine to zero
over the remaining steps, set every step. A global batch under 256 images
has a rate below the 256-image one and runs its warm-up epochs at it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from compofa.supernet.train.phases import Phase


def build_optimizer(model: nn.Module, phase: Phase, global_batch: int) -> torch.optim.SGD:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        # 1-D parameters are BatchNorm scales and shifts and biases
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": phase.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=phase.lr(global_batch), momentum=phase.momentum, nesterov=phase.nesterov)


def learning_rate(phase: Phase, global_batch: int, step: int, steps_per_epoch: int) -> float:
    """The rate at global step `step` (0-based, counted over the whole phase)."""
    peak = phase.lr(global_batch)
    warmup_steps = phase.warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        # Below 256 images the 256-image rate is above `peak`, and a "warm-up" down from it diverged (OFA's
        # elastic-kernel phase on 32-image batches): such a batch has nothing to ramp up to and starts at `peak`.
        start = min(phase.lr_per_256, peak)
        return start + (peak - start) * step / warmup_steps
    total = max(1, phase.epochs * steps_per_epoch - warmup_steps)
    return 0.5 * peak * (1 + math.cos(math.pi * min(step - warmup_steps, total) / total))


def set_learning_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = rate
