"""Model families: the fixed skeleton of a supernet, as data.

A family says what every network of one supernet has in common (stem, first
block, stages, head) and how base widths scale with the width multiplier. The
figures are those of the public Once-for-All networks (docs/architecture.md, "Model facts
the code relies on"). Nothing here imports torch: the same data drives the PyTorch
supernet, the ONNX graph builder, layer lookup tables and FLOP counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from compofa.errors import WidthError
from compofa.registry import Registry

#: Every channel count is rounded to a multiple of this (OFA's CHANNEL_DIVISIBLE).
CHANNEL_DIVISOR = 8

ACTIVATIONS = ("relu", "relu6", "h_swish")


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Round `value` to a multiple of `divisor`, never more than 10% below it.

    This is the rounding of the MobileNet family (and of OFA): round to the
    nearest multiple, at least `divisor`, and add one step if rounding down lost
    more than 10%.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class StageDef:
    """One elastic stage of a family: up to `max_depth` inverted-residual blocks."""

    base_width: int
    max_depth: int
    stride: int
    activation: str
    use_se: bool


@dataclass(frozen=True)
class Family:
    """The fixed skeleton of a supernet family.

    Attributes:
        name: registry name (``mobilenetv3``, ``proxylessnas``).
        stem_base_width: output channels of the 3x3 stride-2 stem before scaling.
        stem_activation: activation after the stem's BatchNorm.
        first_block_base_width: output channels of the fixed first block
            (depthwise 3x3, expand ratio 1).
        first_block_activation: activation of the first block.
        first_block_skip: whether the first block has an identity skip when its
            input and output channel counts match (MobileNetV3 yes, Proxyless no).
        stages: the elastic stages.
        final_expand_base_width: 1x1 conv before pooling (MobileNetV3), or None.
        feature_mix_base_width: the 1x1 "feature mix" conv's output channels.
        feature_mix_bn: whether the feature-mix conv has BatchNorm.
        feature_mix_after_pool: MobileNetV3 pools first, then mixes (no BN, no
            bias); Proxyless mixes at full resolution, then pools.
        head_activation: activation of the final expand and feature-mix convs.
        bn_eps, bn_momentum: BatchNorm settings of the reference training code.
        max_expand_ratio: the supernet's widest expand ratio (weights are stored
            for it; every narrower ratio takes the first channels).
        max_kernel_size: the supernet's depthwise kernel (smaller kernels are
            centre crops, optionally transformed).
        kernel_sizes: all kernel sizes the supernet can serve, ascending.
        widths: width multipliers with published or reproducible supernets.
        default_width: the width used when none is given.
        num_classes, dropout: classifier settings.
    """

    name: str
    stem_base_width: int
    stem_activation: str
    first_block_base_width: int
    first_block_activation: str
    first_block_skip: bool
    stages: tuple[StageDef, ...]
    final_expand_base_width: int | None
    feature_mix_base_width: int
    feature_mix_bn: bool
    feature_mix_after_pool: bool
    head_activation: str
    bn_eps: float
    bn_momentum: float
    max_expand_ratio: int
    kernel_sizes: tuple[int, ...]
    widths: tuple[float, ...]
    default_width: float
    num_classes: int = 1000
    dropout: float = 0.1
    se_reduction: int = 4

    @property
    def max_kernel_size(self) -> int:
        return max(self.kernel_sizes)

    @property
    def num_blocks(self) -> int:
        """Elastic blocks in the supernet (the first, fixed block excluded)."""
        return sum(stage.max_depth for stage in self.stages)

    def scaled(self, base_width: int, width: float) -> int:
        """Channels of a layer of `base_width` at width multiplier `width`."""
        return make_divisible(base_width * width)

    def check_width(self, width: float) -> None:
        """Refuse a width multiplier with no supernet of this family (exports, tables and predictors exist
        only for `widths`)."""
        if not width > 0:
            raise WidthError(f"width multiplier must be positive, got {width!r}")
        if width not in self.widths:
            known = ", ".join(f"{w:g}" for w in self.widths)
            raise WidthError(f"width {width:g} is not a {self.name} width; known: {known}")


# Figures of the public OFA code: MobileNetV3-Large skeleton with
# base widths [16, 16, 24, 40, 80, 112, 160, 960, 1280], strides [2, 2, 2, 1, 2].
MOBILENET_V3 = Family(
    name="mobilenetv3",
    stem_base_width=16,
    stem_activation="h_swish",
    first_block_base_width=16,
    first_block_activation="relu",
    first_block_skip=True,
    stages=(
        StageDef(24, 4, 2, "relu", False),
        StageDef(40, 4, 2, "relu", True),
        StageDef(80, 4, 2, "h_swish", False),
        StageDef(112, 4, 1, "h_swish", True),
        StageDef(160, 4, 2, "h_swish", True),
    ),
    final_expand_base_width=960,
    feature_mix_base_width=1280,
    feature_mix_bn=False,
    feature_mix_after_pool=True,
    head_activation="h_swish",
    bn_eps=1e-5,
    bn_momentum=0.1,
    max_expand_ratio=6,
    kernel_sizes=(3, 5, 7),
    widths=(1.0, 1.2),
    # The shipped Note10 LUT and the OFA accuracy predictor describe w1.2.
    default_width=1.2,
)

# ProxylessNAS (mobile) skeleton as in OFA's OFAProxylessNASNets: ReLU6, no SE,
# stages of [4, 4, 4, 4, 4, 1] blocks, strides [2, 2, 2, 1, 2, 1]; CompOFA paper
# section 5.6 trains it at width 1.3.
PROXYLESSNAS = Family(
    name="proxylessnas",
    stem_base_width=32,
    stem_activation="relu6",
    first_block_base_width=16,
    first_block_activation="relu6",
    first_block_skip=False,
    stages=(
        StageDef(24, 4, 2, "relu6", False),
        StageDef(40, 4, 2, "relu6", False),
        StageDef(80, 4, 2, "relu6", False),
        StageDef(96, 4, 1, "relu6", False),
        StageDef(192, 4, 2, "relu6", False),
        StageDef(320, 1, 1, "relu6", False),
    ),
    final_expand_base_width=None,
    feature_mix_base_width=1280,
    feature_mix_bn=True,
    feature_mix_after_pool=False,
    head_activation="relu6",
    bn_eps=1e-3,
    bn_momentum=0.1,
    max_expand_ratio=6,
    kernel_sizes=(3, 5, 7),
    widths=(1.0, 1.3),
    default_width=1.3,
)

_FAMILIES: Registry[Family] = Registry("model family")


def register_family(family: Family) -> Family:
    """Add a family to the registry; a duplicate name is an error."""
    return _FAMILIES.register(family.name, family)


def get_family(name: str) -> Family:
    return _FAMILIES.get(name)


def list_families() -> tuple[Family, ...]:
    return _FAMILIES.values()


register_family(MOBILENET_V3)
register_family(PROXYLESSNAS)
