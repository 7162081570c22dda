"""Elastic layers: one set of weights serving every width, kernel and depth.

Weight sharing follows OFA: every tensor is stored at its largest
shape and a subnet takes the *first* channels of it; a smaller depthwise kernel
is the centre crop of the 7x7 one, optionally passed through OFA's learned
kernel-transform matrices (7->5 on the 5x5 crop, then 5->3 on the 3x3 crop of
that). Each layer's `forward` takes the sizes to use explicitly, from a
`BlockPlan`; nothing is configured by mutating the layer from outside.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from compofa.space.plan import BlockPlan
from compofa.supernet.layers import same_padding

# In place: each follows a BatchNorm whose output nothing else reads, and
# skipping the allocation of a large activation matters on CPUs.
_ACTIVATIONS = {
    "relu": functools.partial(F.relu, inplace=True),
    "relu6": functools.partial(F.relu6, inplace=True),
    "h_swish": functools.partial(F.hardswish, inplace=True),
}


def centre_crop(kernel: torch.Tensor, size: int) -> torch.Tensor:
    start = (kernel.shape[-1] - size) // 2
    return kernel[..., start : start + size, start : start + size]


class ElasticPointwise(nn.Module):
    """A 1x1 conv whose input and output channels are taken as prefixes."""

    def __init__(self, max_in: int, max_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_out, max_in, 1, 1))

    def active_weight(self, in_channels: int, out_channels: int) -> torch.Tensor:
        return self.weight[:out_channels, :in_channels]

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        # A sliced weight is strided; convolution kernels run faster on a dense copy.
        return F.conv2d(x, self.active_weight(x.shape[1], out_channels).contiguous())


class ElasticDepthwise(nn.Module):
    """A depthwise conv with elastic channels and kernel size.

    With `kernel_transform`, one matrix per pair of consecutive kernel sizes
    (``7to5_matrix``, ``5to3_matrix``; the names of OFA's checkpoints) maps the
    centre crop of the larger kernel to the smaller one; the matrices start as
    identity, so an untrained transform is a plain crop.
    """

    def __init__(self, max_channels: int, kernel_sizes: tuple[int, ...], stride: int, kernel_transform: bool) -> None:
        super().__init__()
        self.kernel_sizes = tuple(sorted(kernel_sizes))
        self.stride = stride
        self.kernel_transform = kernel_transform
        self.weight = nn.Parameter(torch.empty(max_channels, 1, self.kernel_sizes[-1], self.kernel_sizes[-1]))
        if kernel_transform:
            for small, large in zip(self.kernel_sizes, self.kernel_sizes[1:]):
                self.register_parameter(f"{large}to{small}_matrix", nn.Parameter(torch.eye(small * small)))

    def transform_matrix(self, large: int, small: int) -> torch.Tensor:
        return getattr(self, f"{large}to{small}_matrix")

    def active_weight(self, channels: int, kernel_size: int) -> torch.Tensor:
        if kernel_size not in self.kernel_sizes:
            raise ValueError(f"kernel size {kernel_size} not in {self.kernel_sizes}")
        kernel = self.weight[:channels]
        if not self.kernel_transform:
            return centre_crop(kernel, kernel_size)
        # Walk down one size at a time, as the matrices were trained (OFA).
        for large, small in zip(reversed(self.kernel_sizes), reversed(self.kernel_sizes[:-1])):
            if large <= kernel_size:
                break
            crop = centre_crop(kernel, small).reshape(channels, small * small)
            kernel = F.linear(crop, self.transform_matrix(large, small)).reshape(channels, 1, small, small)
        return kernel

    def forward(self, x: torch.Tensor, kernel_size: int) -> torch.Tensor:
        channels = x.shape[1]
        weight = self.active_weight(channels, kernel_size).contiguous()
        return F.conv2d(x, weight, None, self.stride, same_padding(kernel_size), 1, channels)


class ElasticBatchNorm(nn.BatchNorm2d):
    """BatchNorm over the first `x.shape[1]` channels of the stored statistics.

    In training the running statistics of those channels are updated in place,
    as in OFA's DynamicBatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if channels == self.num_features:
            return super().forward(x)
        factor = 0.0
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        assert self.running_mean is not None and self.running_var is not None
        return F.batch_norm(
            x,
            self.running_mean[:channels],
            self.running_var[:channels],
            self.weight[:channels],
            self.bias[:channels],
            self.training or not self.track_running_stats,
            factor,
            self.eps,
        )


class _SqueezeExciteConvs(nn.Module):
    """The two 1x1 convs of a squeeze-excite, as OFA names them (``fc.reduce``, ``fc.expand``)."""

    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)

    @property
    def reduce_bias(self) -> torch.Tensor:
        assert self.reduce.bias is not None  # built with a bias
        return self.reduce.bias

    @property
    def expand_bias(self) -> torch.Tensor:
        assert self.expand.bias is not None
        return self.expand.bias


class ElasticSqueezeExcite(nn.Module):
    """Squeeze-excite whose channels and bottleneck are prefixes of the stored ones."""

    def __init__(self, max_channels: int, max_mid: int) -> None:
        super().__init__()
        self.fc = _SqueezeExciteConvs(max_channels, max_mid)

    def active_weights(self, channels: int, mid: int) -> dict[str, torch.Tensor]:
        """Sliced weights under the names of a static `SqueezeExcite`."""
        reduce, expand = self.fc.reduce, self.fc.expand
        return {
            "fc.reduce.weight": reduce.weight[:mid, :channels],
            "fc.reduce.bias": self.fc.reduce_bias[:mid],
            "fc.expand.weight": expand.weight[:channels, :mid],
            "fc.expand.bias": self.fc.expand_bias[:channels],
        }

    def forward(self, x: torch.Tensor, mid: int) -> torch.Tensor:
        w = self.active_weights(x.shape[1], mid)
        y = F.conv2d(x.mean((2, 3), keepdim=True), w["fc.reduce.weight"], w["fc.reduce.bias"])
        y = F.conv2d(F.relu(y), w["fc.expand.weight"], w["fc.expand.bias"])
        return x * F.hardsigmoid(y)


class _Pointwise(nn.Module):
    """Holds an elastic 1x1 conv and its BatchNorm under OFA's names."""

    def __init__(self, max_in: int, max_out: int) -> None:
        super().__init__()
        self.conv = ElasticPointwise(max_in, max_out)
        self.bn = ElasticBatchNorm(max_out)


class _Depthwise(nn.Module):
    """Holds an elastic depthwise conv, its BatchNorm and optional SE."""

    def __init__(self, plan: BlockPlan, kernel_sizes: tuple[int, ...], kernel_transform: bool) -> None:
        super().__init__()
        self.conv = ElasticDepthwise(plan.mid_channels, kernel_sizes, plan.stride, kernel_transform)
        self.bn = ElasticBatchNorm(plan.mid_channels)
        self.se = ElasticSqueezeExcite(plan.mid_channels, plan.se_channels) if plan.use_se else None


def _bn_state(bn: nn.BatchNorm2d, channels: int, prefix: str) -> dict[str, torch.Tensor]:
    assert bn.running_mean is not None and bn.running_var is not None and bn.num_batches_tracked is not None
    return {
        f"{prefix}.weight": bn.weight[:channels],
        f"{prefix}.bias": bn.bias[:channels],
        f"{prefix}.running_mean": bn.running_mean[:channels],
        f"{prefix}.running_var": bn.running_var[:channels],
        f"{prefix}.num_batches_tracked": bn.num_batches_tracked,
    }


class ElasticMBConv(nn.Module):
    """An inverted-residual block of the supernet at its widest (`max_plan`)."""

    def __init__(self, max_plan: BlockPlan, kernel_sizes: tuple[int, ...], kernel_transform: bool) -> None:
        super().__init__()
        self.activation = max_plan.activation
        self.inverted_bottleneck = _Pointwise(max_plan.in_channels, max_plan.mid_channels)
        self.depth_conv = _Depthwise(max_plan, kernel_sizes, kernel_transform)
        self.point_linear = _Pointwise(max_plan.mid_channels, max_plan.out_channels)

    def forward(self, x: torch.Tensor, plan: BlockPlan) -> torch.Tensor:
        act = _ACTIVATIONS[self.activation]
        x = act(self.inverted_bottleneck.bn(self.inverted_bottleneck.conv(x, plan.mid_channels)))
        x = act(self.depth_conv.bn(self.depth_conv.conv(x, plan.kernel_size)))
        if self.depth_conv.se is not None:
            x = self.depth_conv.se(x, plan.se_channels)
        return self.point_linear.bn(self.point_linear.conv(x, plan.out_channels))

    def active_state(self, plan: BlockPlan) -> dict[str, torch.Tensor]:
        """The weights of this block at `plan`, under the names of a static `MBConv`."""
        mid = plan.mid_channels
        state = {"inverted_bottleneck.conv.weight": self.inverted_bottleneck.conv.active_weight(plan.in_channels, mid)}
        state |= _bn_state(self.inverted_bottleneck.bn, mid, "inverted_bottleneck.bn")
        state["depth_conv.conv.weight"] = self.depth_conv.conv.active_weight(mid, plan.kernel_size)
        state |= _bn_state(self.depth_conv.bn, mid, "depth_conv.bn")
        if self.depth_conv.se is not None:
            se = self.depth_conv.se.active_weights(mid, plan.se_channels)
            state |= {f"depth_conv.se.{name}": tensor for name, tensor in se.items()}
        state["point_linear.conv.weight"] = self.point_linear.conv.active_weight(mid, plan.out_channels)
        state |= _bn_state(self.point_linear.bn, plan.out_channels, "point_linear.bn")
        return state


class ElasticBlock(nn.Module):
    """An elastic MBConv with the identity skip of its supernet position."""

    def __init__(self, conv: ElasticMBConv, residual: bool) -> None:
        super().__init__()
        self.conv = conv
        self.residual = residual

    def forward(self, x: torch.Tensor, plan: BlockPlan) -> torch.Tensor:
        out = self.conv(x, plan)
        return out + x if self.residual else out


def _permute(tensor: torch.Tensor, order: torch.Tensor, dim: int) -> None:
    tensor.copy_(torch.index_select(tensor, dim, order))


def _permute_bn(bn: nn.BatchNorm2d, order: torch.Tensor) -> None:
    for tensor in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        assert tensor is not None
        _permute(tensor, order, 0)


def sort_middle_channels(block: ElasticMBConv, group_ends: tuple[int, ...] = ()) -> None:
    """Re-order a block's middle channels by importance, most important first.

    Importance is the L1 norm of each middle channel's point-wise (projection)
    weights, as in OFA's progressive shrinking before elastic width. Channels
    below each of `group_ends` stay below it (sorted among themselves), which
    keeps the channel set of a width already trained (OFA's later width phase).
    The SE bottleneck is then sorted by its own expand weights.
    """
    with torch.no_grad():
        importance = block.point_linear.conv.weight.abs().sum(dim=(0, 2, 3))
        group = torch.zeros_like(importance)
        for end in group_ends:
            group[end:] += 1
        # Sort by group first, then by importance within a group.
        order = torch.argsort(group * (importance.max() + 1) * 2 - importance, stable=True)
        _permute(block.point_linear.conv.weight, order, 1)
        _permute(block.depth_conv.conv.weight, order, 0)
        _permute_bn(block.depth_conv.bn, order)
        _permute(block.inverted_bottleneck.conv.weight, order, 0)
        _permute_bn(block.inverted_bottleneck.bn, order)
        se = block.depth_conv.se
        if se is not None:
            _permute(se.fc.expand.weight, order, 0)
            _permute(se.fc.expand_bias, order, 0)
            _permute(se.fc.reduce.weight, order, 1)
            se_order = torch.argsort(-se.fc.expand.weight.abs().sum(dim=(0, 2, 3)), stable=True)
            _permute(se.fc.expand.weight, se_order, 1)
            _permute(se.fc.reduce.weight, se_order, 0)
            _permute(se.fc.reduce_bias, se_order, 0)
