"""Layer-by-layer plans of a network: every channel count, derived in one place.

`plan_subnet(spec, width)` lays out the layers of one subnet and
`plan_supernet(family, width)` those of the supernet (every block at its widest
and largest kernel, which is the shape its weights are stored in). The PyTorch
modules, the ONNX graph builder, layer lookup-table keys and FLOP counts all read
these plans instead of recomputing channels.

`NetworkPlan.layers` is the one place that says how a network splits into the
layers a layer lookup table times one by one (OFA's split): the stem, every
block, then the head, which differs by family (`LAYER_KINDS`). Graphs, PyTorch
layer modules, lookup-table keys and per-layer costs are all derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from compofa.space.family import Family, make_divisible
from compofa.space.registry import get_space
from compofa.space.spec import SubnetSpec

#: Resolution a supernet plan is laid out at (spatial sizes only matter for FLOPs).
SUPERNET_RESOLUTION = 224


def conv_output_size(input_size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded conv of any odd kernel."""
    return (input_size - 1) // stride + 1


@dataclass(frozen=True)
class ConvPlan:
    """A plain conv layer (stem, final expand, feature mix)."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    activation: str
    batch_norm: bool
    input_size: int

    @property
    def output_size(self) -> int:
        return conv_output_size(self.input_size, self.stride)


@dataclass(frozen=True)
class BlockPlan:
    """One inverted-residual (MBConv) block.

    Attributes:
        position: index of the block in the supernet (0 is the fixed first
            block, which has no expand conv); weights are looked up by it.
        stage: elastic stage of the block, or -1 for the first block.
        mid_channels: channels after the expand conv
            (``make_divisible(round(in_channels * expand_ratio))``).
        se_channels: squeeze-excite bottleneck channels, 0 without SE.
        residual: identity skip around the block.
    """

    position: int
    stage: int
    in_channels: int
    mid_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    expand_ratio: int
    activation: str
    se_channels: int
    residual: bool
    input_size: int

    @property
    def has_expand_conv(self) -> bool:
        return self.expand_ratio != 1

    @property
    def use_se(self) -> bool:
        return self.se_channels > 0

    @property
    def output_size(self) -> int:
        return conv_output_size(self.input_size, self.stride)


#: What each kind of `LayerPlan` computes. MobileNetV3's head is final expand,
#: pool, feature mix, classifier; ProxylessNAS's is feature mix (at full spatial
#: size), then the pooled classifier.
LAYER_KINDS = {
    "stem": "the first conv (conv, BatchNorm, activation)",
    "block": "one inverted-residual block",
    "final_expand": "the 1x1 conv after the last block",
    "pool": "global average pooling",
    "feature_mix": "the 1x1 conv before the classifier",
    "classifier": "flatten, then the linear classifier",
    "pool_classifier": "global average pooling, flatten, then the linear classifier",
}


@dataclass(frozen=True)
class LayerPlan:
    """One layer of a network as a layer lookup table counts it.

    Attributes:
        index: position in the network, 0 for the stem.
        kind: one of `LAYER_KINDS`.
        input_shape, output_shape: per image, channels first: ``(C, H, W)``,
            or ``(classes,)`` for the classifier's output.
        conv: the conv of a stem, final expand or feature mix layer.
        block: the block of a block layer.
        stage: the elastic stage of a block; -1 for layers every subnet of a
            resolution shares (stem, first block, head).
    """

    index: int
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    conv: ConvPlan | None = None
    block: BlockPlan | None = None
    stage: int = -1


@dataclass(frozen=True)
class NetworkPlan:
    """All layers of one network, in execution order."""

    family: Family
    width: float
    resolution: int
    stem: ConvPlan
    blocks: tuple[BlockPlan, ...]
    final_expand: ConvPlan | None
    feature_mix: ConvPlan
    num_classes: int

    @property
    def classifier_in(self) -> int:
        return self.feature_mix.out_channels

    @property
    def stage_outputs(self) -> tuple[int, ...]:
        return tuple(self.family.scaled(stage.base_width, self.width) for stage in self.family.stages)

    @property
    def layers(self) -> tuple[LayerPlan, ...]:
        """The network's layers in execution order (see `LayerPlan`); chained they compute its logits."""
        return _split_layers(self)


def _conv_layer(index: int, kind: str, conv: ConvPlan, output_size: int | None = None) -> LayerPlan:
    side = conv.output_size if output_size is None else output_size
    return LayerPlan(index, kind, (conv.in_channels, conv.input_size, conv.input_size),
                     (conv.out_channels, side, side), conv=conv)


@lru_cache(maxsize=4096)
def _split_layers(plan: NetworkPlan) -> tuple[LayerPlan, ...]:
    layers = [_conv_layer(0, "stem", plan.stem)]
    for block in plan.blocks:
        layers.append(LayerPlan(len(layers), "block", (block.in_channels, block.input_size, block.input_size),
                                (block.out_channels, block.output_size, block.output_size), block=block,
                                stage=block.stage))
    if plan.final_expand is not None:
        layers.append(_conv_layer(len(layers), "final_expand", plan.final_expand))
    channels, side = layers[-1].output_shape[0], layers[-1].output_shape[-1]
    mix, classes = plan.feature_mix, (plan.num_classes,)
    if plan.family.feature_mix_after_pool:
        layers.append(LayerPlan(len(layers), "pool", (channels, side, side), (channels, 1, 1)))
        layers.append(_conv_layer(len(layers), "feature_mix", mix, output_size=1))
        layers.append(LayerPlan(len(layers), "classifier", (mix.out_channels, 1, 1), classes))
    else:
        layers.append(_conv_layer(len(layers), "feature_mix", mix, output_size=mix.input_size))
        side = mix.input_size
        layers.append(LayerPlan(len(layers), "pool_classifier", (mix.out_channels, side, side), classes))
    return tuple(layers)


def _se_channels(family: Family, mid_channels: int) -> int:
    return make_divisible(mid_channels // family.se_reduction)


def plan_network(
    family: Family,
    width: float,
    resolution: int,
    stage_blocks: tuple[tuple[tuple[int, int], ...], ...],
) -> NetworkPlan:
    """Lay out `family` at `width` with (kernel, expand) per active block of each stage.

    No design space is consulted: this lays out any combination the family's
    supernet can hold (lookup tables and cost models tabulate every one).
    """
    family.check_width(width)
    stem_width = family.scaled(family.stem_base_width, width)
    stem = ConvPlan(3, stem_width, 3, 2, family.stem_activation, True, resolution)
    size = stem.output_size

    first_width = family.scaled(family.first_block_base_width, width)
    blocks = [
        BlockPlan(
            position=0,
            stage=-1,
            in_channels=stem_width,
            mid_channels=stem_width,
            out_channels=first_width,
            kernel_size=3,
            stride=1,
            expand_ratio=1,
            activation=family.first_block_activation,
            se_channels=0,
            residual=family.first_block_skip and stem_width == first_width,
            input_size=size,
        )
    ]
    channels, position = first_width, 1
    for stage, (stage_def, settings) in enumerate(zip(family.stages, stage_blocks)):
        out_channels = family.scaled(stage_def.base_width, width)
        for index, (kernel, expand) in enumerate(settings):
            stride = stage_def.stride if index == 0 else 1
            mid = make_divisible(round(channels * expand))
            blocks.append(
                BlockPlan(
                    position=position + index,
                    stage=stage,
                    in_channels=channels,
                    mid_channels=mid,
                    out_channels=out_channels,
                    kernel_size=kernel,
                    stride=stride,
                    expand_ratio=expand,
                    activation=stage_def.activation,
                    se_channels=_se_channels(family, mid) if stage_def.use_se else 0,
                    residual=stride == 1 and channels == out_channels,
                    input_size=size,
                )
            )
            size = conv_output_size(size, stride)
            channels = out_channels
        position += stage_def.max_depth

    final_expand = None
    if family.final_expand_base_width is not None:
        final_width = family.scaled(family.final_expand_base_width, width)
        final_expand = ConvPlan(channels, final_width, 1, 1, family.head_activation, True, size)
        channels = final_width
    mix_width = family.scaled(family.feature_mix_base_width, width)
    mix_input = 1 if family.feature_mix_after_pool else size
    feature_mix = ConvPlan(channels, mix_width, 1, 1, family.head_activation, family.feature_mix_bn, mix_input)
    return NetworkPlan(family, width, resolution, stem, tuple(blocks), final_expand, feature_mix, family.num_classes)


@lru_cache(maxsize=4096)
def plan_subnet(spec: SubnetSpec, width: float) -> NetworkPlan:
    """The layers of the subnet `spec` at width multiplier `width`."""
    family = get_space(spec.space).family
    stage_blocks = tuple(
        tuple(zip(spec.stage_kernel_sizes(stage), spec.stage_expand_ratios(stage)))
        for stage in range(spec.num_stages)
    )
    return plan_network(family, width, spec.resolution, stage_blocks)


@lru_cache(maxsize=16)
def plan_supernet(family: Family, width: float) -> NetworkPlan:
    """The layers of the supernet: every block at full depth, width and kernel."""
    widest = (family.max_kernel_size, family.max_expand_ratio)
    stage_blocks = tuple((widest,) * stage.max_depth for stage in family.stages)
    return plan_network(family, width, SUPERNET_RESOLUTION, stage_blocks)
