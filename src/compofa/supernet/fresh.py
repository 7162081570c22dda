"""Reproducible untrained networks for latency work.

Latency does not depend on the values of the weights, with one exception that
matters: freshly initialised OFA networks in eval mode shrink activations layer
after layer (unit BatchNorm statistics, fan-out initialisation of depthwise
convs) until they reach subnormal floats, which many CPUs process tens of times
slower. Two ways around it, both seeded, so every run gives the same weights:

- `fresh_supernet`: a whole supernet, its BatchNorm statistics calibrated on
  random images so every activation stays at unit scale, as in a trained network.
- `seeded_subnet` / `subnet_with_weights`: one standalone subnet holding the
  arrays of its ONNX graph (`compofa.graphs.seeded`, already scaled to keep
  activations at unit scale), so PyTorch and ONNX backends time the same network.
"""

from __future__ import annotations

import math

import torch

from compofa.graphs.onnx_graph import Weights, network_parameters
from compofa.graphs.seeded import SeededWeights
from compofa.space import Family, SubnetSpec, get_space
from compofa.space.plan import plan_subnet
from compofa.supernet.bn import recalibrate_batchnorm
from compofa.supernet.network import Subnet, Supernet

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


def subnet_with_weights(spec: SubnetSpec, width: float, weights: Weights) -> Subnet:
    """Subnet `spec` at `width`, in eval mode, computing what its ONNX graph with `weights` computes.

    The graph's arrays have BatchNorm folded in; each BatchNorm here is made the
    identity (zero mean, unit variance, weight ``sqrt(1 + eps)``) with the folded
    bias as its shift.
    """
    plan = plan_subnet(spec, width)
    gamma = math.sqrt(1.0 + plan.family.bn_eps)
    state: dict[str, torch.Tensor] = {}
    for parameter, weight, bias in network_parameters(plan, weights):
        state[parameter.weight_key] = torch.tensor(weight)  # a copy: the seeded arrays are shared and read-only
        if parameter.bn_key is not None and bias is not None:
            channels = parameter.shape[0]
            state |= {
                f"{parameter.bn_key}.weight": torch.full((channels,), gamma),
                f"{parameter.bn_key}.bias": torch.tensor(bias),
                f"{parameter.bn_key}.running_mean": torch.zeros(channels),
                f"{parameter.bn_key}.running_var": torch.ones(channels),
                f"{parameter.bn_key}.num_batches_tracked": torch.tensor(0),
            }
        elif parameter.bias_key is not None and bias is not None:
            state[parameter.bias_key] = torch.tensor(bias)
    module = Subnet(spec, width, device="meta")
    module.load_state_dict(state, assign=True)  # strict: the graph names every tensor the module has
    return module.eval()


def seeded_subnet(spec: SubnetSpec, width: float | None = None, seed: int = 0) -> Subnet:
    """Subnet `spec` with the seeded weights of its ONNX graph (`compofa.graphs.seeded.SeededWeights`)."""
    family = get_space(spec.space).family
    weights = SeededWeights(family, family.default_width if width is None else width, seed)
    return subnet_with_weights(spec, weights.width, weights)
