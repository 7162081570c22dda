"""BatchNorm recalibration of an extracted subnet.

A subnet's BatchNorm statistics are slices of the supernet's, which were
accumulated over many subnets; OFA and CompOFA recompute them on a few thousand
training images before evaluating a subnet.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch
from torch import nn


def recalibrate_batchnorm(
    model: nn.Module, batches: Iterable[torch.Tensor], max_batches: int | None = None
) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them.

    The statistics become the plain average over the batches seen (cumulative
    moving average), not an exponential one. Only the BatchNorm layers are put
    in training mode, so dropout stays off; the model's modes and momenta are
    restored afterwards. Returns the number of batches used.

    Raises:
        ValueError: if `batches` yields nothing or `max_batches` < 1 (the
            statistics are then kept).
    """
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be at least 1, got {max_batches}")
    iterator = iter(batches)
    first = next(iterator, None)
    if first is None:  # checked before the old statistics are thrown away
        raise ValueError("BatchNorm recalibration got no batches")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in norms}
    used = 0
    try:
        model.eval()
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
            norm.train()
        with torch.no_grad():
            for batch in itertools.chain([first], iterator):
                if max_batches is not None and used >= max_batches:
                    break
                model(batch)
                used += 1
    finally:
        for module, training in modes.items():
            module.training = training
        for norm, momentum in momenta.items():
            norm.momentum = momentum
    return used
