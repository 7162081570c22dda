"""Reproducible untrained supernets for latency work.

Latency does not depend on the values of the weights, with one exception that
matters: freshly initialised OFA networks in eval mode shrink activations layer
after layer (unit BatchNorm statistics, fan-out initialisation of depthwise
convs) until they reach subnormal floats, which many CPUs process tens of times
slower. Calibrating the BatchNorm statistics on random images keeps every
activation at unit scale, as in a trained network. The seed makes the weights,
and so the export cache keys, the same in every run.
"""

from __future__ import annotations

import torch

from compofa.space import Family
from compofa.supernet.bn import recalibrate_batchnorm
from compofa.supernet.network import Supernet

_CALIBRATION_BATCHES = 2
_CALIBRATION_SHAPE = (8, 3, 128, 128)


def fresh_supernet(
    family: Family | str, width: float | None = None, kernel_transform: bool = False, seed: int = 0
) -> Supernet:
    """A supernet with seeded random weights and BatchNorm calibrated on noise, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        supernet = Supernet(family, width, kernel_transform)
    batches = (torch.randn(*_CALIBRATION_SHAPE, generator=generator) for _ in range(_CALIBRATION_BATCHES))
    recalibrate_batchnorm(supernet, batches)
    return supernet.eval()
