"""Static (fixed-shape) layers of an extracted subnet.

Module and parameter names follow the static networks of the public OFA code
(`first_conv.conv.weight`, `blocks.3.conv.depth_conv.se.fc.reduce.bias`, ...),
so a subnet's state_dict reads the same in both projects.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from compofa.space.plan import BlockPlan, ConvPlan

#: Where a layer's tensors are created; "meta" builds shells without memory or init.
Device = torch.device | str | None


def build_activation(name: str) -> nn.Module:
    """An in-place activation: it always follows a BatchNorm or conv whose output nothing else reads."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "h_swish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


def same_padding(kernel_size: int) -> int:
    return kernel_size // 2


class SqueezeExcite(nn.Module):
    """Squeeze-excite: global pool, 1x1 reduce (ReLU), 1x1 expand, hard sigmoid gate."""

    def __init__(self, channels: int, mid_channels: int, device: Device = None) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            OrderedDict(
                reduce=nn.Conv2d(channels, mid_channels, 1, bias=True, device=device),
                relu=nn.ReLU(inplace=True),
                expand=nn.Conv2d(mid_channels, channels, 1, bias=True, device=device),
                h_sigmoid=nn.Hardsigmoid(),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean((2, 3), keepdim=True))


def conv_bn_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    activation: str | None = None,
    batch_norm: bool = True,
    groups: int = 1,
    device: Device = None,
) -> nn.Sequential:
    """conv -> optional BatchNorm -> optional activation (OFA's ConvLayer)."""
    padding = same_padding(kernel_size)
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False,
                       device=device)
    )
    if batch_norm:
        layers["bn"] = nn.BatchNorm2d(out_channels, device=device)
    if activation:
        layers["act"] = build_activation(activation)
    return nn.Sequential(layers)


def conv_from_plan(plan: ConvPlan, device: Device = None) -> nn.Sequential:
    return conv_bn_act(
        plan.in_channels, plan.out_channels, plan.kernel_size, plan.stride, plan.activation, plan.batch_norm,
        device=device,
    )


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk (+SE), 1x1 project."""

    def __init__(self, plan: BlockPlan, device: Device = None) -> None:
        super().__init__()
        mid = plan.mid_channels
        self.inverted_bottleneck = (
            conv_bn_act(plan.in_channels, mid, 1, activation=plan.activation, device=device)
            if plan.has_expand_conv
            else None
        )
        self.depth_conv = conv_bn_act(
            mid, mid, plan.kernel_size, plan.stride, plan.activation, groups=mid, device=device
        )
        if plan.use_se:
            self.depth_conv.add_module("se", SqueezeExcite(mid, plan.se_channels, device))
        self.point_linear = conv_bn_act(mid, plan.out_channels, 1, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))


class Block(nn.Module):
    """An MBConv with its optional identity skip (OFA's ResidualBlock)."""

    def __init__(self, conv: nn.Module, residual: bool) -> None:
        super().__init__()
        self.conv = conv
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out + x if self.residual else out


class Classifier(nn.Module):
    """Dropout then a linear layer (OFA's LinearLayer)."""

    def __init__(self, in_features: int, num_classes: int, dropout: float, device: Device = None) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.linear = nn.Linear(in_features, num_classes, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            x = self.dropout(x)
        return self.linear(x)
