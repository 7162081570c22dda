"""Parameter and MAC counts of a plan against PyTorch's own counters."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from compofa.space import get_space, list_spaces
from compofa.space.cost import network_cost
from compofa.supernet import Supernet, fresh_supernet


@functools.lru_cache(maxsize=None)
def _supernet(family: str) -> Supernet:
    return fresh_supernet(family)


@pytest.mark.parametrize("space_name", [space.name for space in list_spaces()])
def test_cost_matches_pytorch(space_name: str) -> None:
    """Parameters equal the subnet's numel; MACs are half the FLOPs torch counts for one image."""
    space = get_space(space_name)
    supernet = _supernet(space.family.name)
    for seed in range(2):
        spec = space.sample(np.random.default_rng(seed), resolutions=[160])
        subnet = supernet.subnet(spec).eval()
        cost = network_cost(supernet.plan(spec))
        assert cost.parameters == sum(p.numel() for p in subnet.parameters())
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            subnet(torch.zeros(1, 3, 160, 160))
        assert 2 * cost.macs == counter.get_total_flops()

