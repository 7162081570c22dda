"""Parameter and MAC counts of a plan against PyTorch's own counters."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from compofa.space import get_space, list_spaces
from compofa.space.cost import Cost, layer_cost, network_cost
from compofa.space.plan import LAYER_KINDS
from compofa.supernet import Supernet, fresh_supernet
from compofa.supernet.network import LAYER_MODULES, layer_modules


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



@pytest.mark.parametrize("space_name", ["compofa", "ofa-proxyless"])
def test_layer_costs_match_pytorch_layer_by_layer(space_name: str) -> None:
    """Each layer of `NetworkPlan.layers` costs what its PyTorch layer module counts; they add up to the network."""
    assert set(LAYER_MODULES) == set(LAYER_KINDS)
    space = get_space(space_name)
    supernet = _supernet(space.family.name)
    spec = space.sample(np.random.default_rng(3), resolutions=[160])
    plan = supernet.plan(spec)
    modules = layer_modules(supernet.subnet(spec).eval())
    assert len(modules) == len(plan.layers)
    x = torch.zeros(1, 3, 160, 160)
    for layer, module in zip(plan.layers, modules):
        cost = layer_cost(layer)
        assert cost.parameters == sum(p.numel() for p in module.parameters()), layer.kind
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            x = module(x)
        assert 2 * cost.macs == counter.get_total_flops(), layer.kind
        assert tuple(x.shape[1:]) == layer.output_shape
    assert sum((layer_cost(layer) for layer in plan.layers), Cost(0, 0)) == network_cost(plan)
