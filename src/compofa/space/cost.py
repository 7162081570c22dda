"""Parameter and multiply-accumulate counts of a network plan.

Counted the way papers count them: convs and the classifier, with BatchNorm
folded away (its parameters are counted, its arithmetic is not), activations,
pooling and residual additions free.
"""

from __future__ import annotations

from dataclasses import dataclass

from compofa.space.plan import BlockPlan, ConvPlan, LayerPlan, NetworkPlan


@dataclass(frozen=True)
class Cost:
    parameters: int
    macs: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.parameters + other.parameters, self.macs + other.macs)


_ZERO = Cost(0, 0)


def _conv(
    in_channels: int, out_channels: int, kernel: int, groups: int, output_size: int, bn: bool, bias: bool
) -> Cost:
    weights = out_channels * (in_channels // groups) * kernel * kernel
    extra = (2 * out_channels if bn else 0) + (out_channels if bias else 0)
    return Cost(weights + extra, weights * output_size * output_size)


def _plain(plan: ConvPlan) -> Cost:
    return _conv(plan.in_channels, plan.out_channels, plan.kernel_size, 1, plan.output_size, plan.batch_norm, False)


def block_cost(plan: BlockPlan) -> Cost:
    """Parameters and MACs of one inverted-residual block."""
    mid, out_size = plan.mid_channels, plan.output_size
    cost = _ZERO
    if plan.has_expand_conv:
        cost += _conv(plan.in_channels, mid, 1, 1, plan.input_size, True, False)
    cost += _conv(mid, mid, plan.kernel_size, mid, out_size, True, False)
    if plan.use_se:
        cost += _conv(mid, plan.se_channels, 1, 1, 1, False, True)
        cost += _conv(plan.se_channels, mid, 1, 1, 1, False, True)
    return cost + _conv(mid, plan.out_channels, 1, 1, out_size, True, False)


def _classifier(in_features: int, classes: int) -> Cost:
    weights = in_features * classes
    return Cost(weights + classes, weights)


def layer_cost(layer: LayerPlan) -> Cost:
    """Parameters and MACs of one layer of `NetworkPlan.layers`, for a single image."""
    if layer.kind == "block":
        assert layer.block is not None, "a block layer carries its block"
        return block_cost(layer.block)
    if layer.conv is not None:  # stem, final expand, feature mix
        return _plain(layer.conv)
    if layer.kind in ("classifier", "pool_classifier"):
        return _classifier(layer.input_shape[0], layer.output_shape[0])
    if layer.kind == "pool":
        return _ZERO
    raise ValueError(f"no cost model for a {layer.kind!r} layer")


def network_cost(plan: NetworkPlan) -> Cost:
    """Parameters and MACs of one inference of a single image: the sum over `plan.layers`."""
    return sum((layer_cost(layer) for layer in plan.layers), _ZERO)
