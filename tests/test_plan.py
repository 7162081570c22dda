"""Tests of the layer plans: every channel count, stride and skip of a subnet or supernet.

The expected figures are those of docs/architecture.md ("Model facts the code relies on")
and of the public OFA networks (OFAMobileNetV3 / OFAProxylessNASNets), whose
`get_active_subnet` gives the same block shapes.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compofa.space import SubnetSpec, get_space, list_spaces, make_divisible, parse_spec
from compofa.space.family import MOBILENET_V3, PROXYLESSNAS, Family
from compofa.space.plan import SUPERNET_RESOLUTION, NetworkPlan, conv_output_size, plan_subnet, plan_supernet

SPACE_NAMES = tuple(space.name for space in list_spaces())


def stage_first_blocks(plan: NetworkPlan) -> list[int]:
    """Indices into plan.blocks of the first block of every elastic stage."""
    firsts, seen = [], set()
    for index, block in enumerate(plan.blocks):
        if block.stage >= 0 and block.stage not in seen:
            seen.add(block.stage)
            firsts.append(index)
    return firsts


# -- make_divisible -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (16 * 1.2, 24),  # 19.2 rounds to 16, more than 10% below: one step up
        (24 * 1.2, 32),  # 28.8
        (112 * 1.2, 136),  # 134.4
        (32 * 1.3, 40),  # 41.6
        (16 * 1.3, 24),  # 20.8
        (192 * 1.3, 248),  # 249.6 rounds down, within 10%
        (96 * 1.3, 128),  # 124.8
        (1280 * 1.3, 1664),
        (36, 40),  # 36 rounds half up
        (102, 104),
        (204, 208),
        (12, 16),
        (11.9, 16),  # rounds to 8, 33% below: one step up
        (9, 16),  # rounds to 8 < 8.1
        (8.8, 8),
        (3, 8),  # never below the divisor
        (0.5, 8),
        (1152, 1152),
    ],
)
def test_make_divisible_examples(value: float, expected: int) -> None:
    """make_divisible(v, 8) = max(8, int(v + 4) // 8 * 8), plus 8 if below 0.9 v (OFA's rounding)."""
    assert make_divisible(value) == expected
    assert make_divisible(value, 8) == expected


@pytest.mark.parametrize(("value", "divisor", "expected"), [(30, 16, 32), (20, 16, 32), (23, 16, 32), (5, 4, 8), (7, 1, 7)])
def test_make_divisible_other_divisors(value: float, divisor: int, expected: int) -> None:
    """The divisor argument is honoured (20 -> 16 with divisor 16 is 20% low, so 32)."""
    assert make_divisible(value, divisor) == expected


@settings(max_examples=100, deadline=None)
@given(value=st.floats(min_value=0.01, max_value=10_000, allow_nan=False), divisor=st.sampled_from([1, 4, 8, 16]))
def test_make_divisible_properties(value: float, divisor: int) -> None:
    """The result is a multiple of the divisor, at least the divisor, not 10% below v, and at most one step above v."""
    result = make_divisible(value, divisor)
    assert isinstance(result, int)
    assert result % divisor == 0
    assert result >= divisor
    assert result >= 0.9 * value
    assert result <= max(divisor, value + divisor)


# -- channel counts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "width", "stem", "first", "stages", "final_expand", "feature_mix"),
    [
        (MOBILENET_V3, 1.0, 16, 16, (24, 40, 80, 112, 160), 960, 1280),
        (MOBILENET_V3, 1.2, 24, 24, (32, 48, 96, 136, 192), 1152, 1536),
        (PROXYLESSNAS, 1.3, 40, 24, (32, 56, 104, 128, 248, 416), None, 1664),
        (PROXYLESSNAS, 1.0, 32, 16, (24, 40, 80, 96, 192, 320), None, 1280),
    ],
)
def test_supernet_widths(
    family: Family,
    width: float,
    stem: int,
    first: int,
    stages: tuple[int, ...],
    final_expand: int | None,
    feature_mix: int,
) -> None:
    """Stem | first block | stages | final expand | feature mix widths (docs/architecture.md figures)."""
    plan = plan_supernet(family, width)
    assert plan.stem.in_channels == 3
    assert plan.stem.out_channels == stem
    assert plan.blocks[0].in_channels == stem
    assert plan.blocks[0].out_channels == first
    assert plan.stage_outputs == stages
    for stage, expected in enumerate(stages):
        assert {b.out_channels for b in plan.blocks if b.stage == stage} == {expected}
    # Each block reads what the one before it wrote.
    for before, after in zip(plan.blocks, plan.blocks[1:]):
        assert after.in_channels == before.out_channels
    if final_expand is None:
        assert plan.final_expand is None
        assert plan.feature_mix.in_channels == stages[-1]
    else:
        assert plan.final_expand is not None
        assert plan.final_expand.in_channels == stages[-1]
        assert plan.final_expand.out_channels == final_expand
        assert plan.feature_mix.in_channels == final_expand
    assert plan.feature_mix.out_channels == feature_mix
    assert plan.classifier_in == feature_mix
    assert plan.num_classes == 1000


def test_note10_lut_layer_shapes() -> None:
    """The w1.2 head matches the Note10 LUT keys: Conv 224x224x3 -> 112x112x24, Conv_1 7x7x192 -> 7x7x1152,
    Conv_2 1x1x1152 -> 1x1x1536."""
    plan = plan_subnet(get_space("compofa").largest(224), 1.2)
    stem = plan.stem
    assert (stem.input_size, stem.in_channels, stem.output_size, stem.out_channels) == (224, 3, 112, 24)
    final = plan.final_expand
    assert final is not None
    assert (final.input_size, final.in_channels, final.output_size, final.out_channels) == (7, 192, 7, 1152)
    mix = plan.feature_mix
    assert (mix.input_size, mix.in_channels, mix.output_size, mix.out_channels) == (1, 1152, 1, 1536)


@pytest.mark.parametrize(
    ("family", "width", "mids"),
    [
        (
            MOBILENET_V3,
            1.2,
            [24, 144, 192, 192, 192, 192, 288, 288, 288, 288, 576, 576, 576, 576, 816, 816, 816, 816, 1152, 1152, 1152],
        ),
        (
            MOBILENET_V3,
            1.0,
            [16, 96, 144, 144, 144, 144, 240, 240, 240, 240, 480, 480, 480, 480, 672, 672, 672, 672, 960, 960, 960],
        ),
        (
            PROXYLESSNAS,
            1.3,
            [40, 144, 192, 192, 192, 192, 336, 336, 336, 336, 624, 624, 624, 624, 768, 768, 768,
             768, 1488, 1488, 1488, 1488],
        ),
    ],
)
def test_supernet_middle_widths(family: Family, width: float, mids: list[int]) -> None:
    """Supernet blocks are stored at expand 6 (the first block at expand 1), kernel 7."""
    plan = plan_supernet(family, width)
    assert [b.mid_channels for b in plan.blocks] == mids
    assert [b.kernel_size for b in plan.blocks] == [3] + [7] * (len(mids) - 1)
    assert [b.expand_ratio for b in plan.blocks] == [1] + [6] * (len(mids) - 1)
    assert plan.resolution == SUPERNET_RESOLUTION == 224


def test_subnet_middle_widths_smallest_compofa() -> None:
    """CompOFA w1.2 d2/e3 subnet: middle width = make_divisible(round(C_in * 3), 8) per block."""
    plan = plan_subnet(get_space("compofa").smallest(160), 1.2)
    assert [b.mid_channels for b in plan.blocks] == [24, 72, 96, 96, 144, 144, 288, 288, 408, 408, 576]
    assert [b.in_channels for b in plan.blocks] == [24, 24, 32, 32, 48, 48, 96, 96, 136, 136, 192]


def test_subnet_middle_widths_mixed_expands() -> None:
    """Mixed expand ratios within a stage give per-block middle widths (w1.0)."""
    spec = parse_spec("ofa-mbv3-r224-k35e46_k753e643_k3577e3466_k77e66_k735e436")
    plan = plan_subnet(spec, 1.0)
    assert [b.mid_channels for b in plan.blocks] == [
        16,
        64, 144,  # stage 0: 16*4, 24*6
        144, 160, 120,  # stage 1: 24*6, 40*4, 40*3
        120, 320, 480, 480,  # stage 2: 40*3, 80*4, 80*6, 80*6
        480, 672,  # stage 3: 80*6, 112*6
        448, 480, 960,  # stage 4: 112*4, 160*3, 160*6
    ]


@pytest.mark.parametrize("name", SPACE_NAMES)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**63 - 1), width_index=st.integers(0, 1))
def test_subnet_plan_invariants(name: str, seed: int, width_index: int) -> None:
    """For random subnets of every space: block settings follow the spec, middle width is
    make_divisible(round(C_in * e)), channels match the supernet's at the same position, and a
    block has a skip exactly when it keeps stride 1 and its channel count."""
    spec = get_space(name).sample(np.random.default_rng(seed))
    family = get_space(name).family
    width = family.widths[width_index]
    plan = plan_subnet(spec, width)
    supernet = {b.position: b for b in plan_supernet(family, width).blocks}
    elastic = plan.blocks[1:]
    assert len(elastic) == sum(spec.depths)
    assert [(b.stage, b.kernel_size, b.expand_ratio) for b in elastic] == [
        (s.stage, s.kernel_size, s.expand_ratio) for s in spec.blocks()
    ]
    for block in plan.blocks:
        shared = supernet[block.position]
        assert block.in_channels == shared.in_channels
        assert block.out_channels == shared.out_channels
        assert block.stride == shared.stride
        assert block.mid_channels <= shared.mid_channels
        assert block.mid_channels == make_divisible(round(block.in_channels * block.expand_ratio), 8)
        if block.stage >= 0:
            assert block.residual == (block.stride == 1 and block.in_channels == block.out_channels)
    assert plan.resolution == spec.resolution
    assert plan.width == width


# -- squeeze-excite -----------------------------------------------------------------


def test_se_channels_supernet_w12() -> None:
    """SE in stages 1, 3, 4 (0-based) only, with make_divisible(mid // 4, 8) channels."""
    plan = plan_supernet(MOBILENET_V3, 1.2)
    assert [b.se_channels for b in plan.blocks] == [
        0,
        0, 0, 0, 0,
        48, 72, 72, 72,
        0, 0, 0, 0,
        144, 208, 208, 208,  # 816 // 4 = 204 -> 208
        208, 288, 288, 288,
    ]
    assert [b.use_se for b in plan.blocks] == [b.se_channels > 0 for b in plan.blocks]


def test_se_channels_subnet() -> None:
    """SE width follows the subnet's own middle width: 144 // 4 = 36 -> 40, 408 // 4 = 102 -> 104."""
    plan = plan_subnet(get_space("compofa").smallest(224), 1.2)
    assert [b.se_channels for b in plan.blocks] == [0, 0, 0, 24, 40, 0, 0, 72, 104, 104, 144]


def test_no_se_in_proxyless() -> None:
    """ProxylessNAS has no squeeze-excite anywhere."""
    plan = plan_subnet(get_space("ofa-proxyless").largest(224), 1.3)
    assert all(b.se_channels == 0 and not b.use_se for b in plan.blocks)


def test_activations() -> None:
    """MobileNetV3: h-swish stem/head, ReLU first block and stages 0-1, h-swish stages 2-4; Proxyless ReLU6."""
    plan = plan_supernet(MOBILENET_V3, 1.2)
    assert plan.stem.activation == "h_swish"
    assert [b.activation for b in plan.blocks[:1]] == ["relu"]
    by_stage = {b.stage: b.activation for b in plan.blocks[1:]}
    assert by_stage == {0: "relu", 1: "relu", 2: "h_swish", 3: "h_swish", 4: "h_swish"}
    assert plan.final_expand is not None and plan.final_expand.activation == "h_swish"
    assert plan.feature_mix.activation == "h_swish"
    proxyless = plan_supernet(PROXYLESSNAS, 1.3)
    layers = [proxyless.stem, proxyless.feature_mix, *proxyless.blocks]
    assert {layer.activation for layer in layers} == {"relu6"}


def test_batch_norm_flags() -> None:
    """MobileNetV3's feature mix has no BN (it follows the pool); Proxyless's has BN; stems always do."""
    mbv3, proxyless = plan_supernet(MOBILENET_V3, 1.0), plan_supernet(PROXYLESSNAS, 1.3)
    assert mbv3.stem.batch_norm and proxyless.stem.batch_norm
    assert mbv3.final_expand is not None and mbv3.final_expand.batch_norm
    assert not mbv3.feature_mix.batch_norm
    assert proxyless.feature_mix.batch_norm


# -- strides and spatial sizes ----------------------------------------------------------


def test_conv_output_size() -> None:
    """Same-padded conv: (H - 1) // S + 1."""
    assert [conv_output_size(h, 2) for h in (224, 113, 112, 33, 7, 1)] == [112, 57, 56, 17, 4, 1]
    assert conv_output_size(14, 1) == 14


@pytest.mark.parametrize(
    ("resolution", "stage_sizes"),
    [
        (224, [112, 56, 28, 14, 14, 7]),
        (160, [80, 40, 20, 10, 10, 5]),
        (200, [100, 50, 25, 13, 13, 7]),
        (132, [66, 33, 17, 9, 9, 5]),
        (128, [64, 32, 16, 8, 8, 4]),
    ],
)
def test_spatial_sizes_mbv3(resolution: int, stage_sizes: list[int]) -> None:
    """After the stem (R + 1) // 2, then one halving per stride-2 stage ([2, 2, 2, 1, 2]); 7x7 at 224."""
    plan = plan_subnet(get_space("compofa").largest(resolution), 1.2)
    assert plan.stem.input_size == resolution
    assert plan.stem.output_size == (resolution + 1) // 2 == stage_sizes[0]
    assert plan.blocks[0].input_size == stage_sizes[0]
    outputs = [plan.blocks[0].output_size] + [
        [b for b in plan.blocks if b.stage == stage][-1].output_size for stage in range(5)
    ]
    assert outputs == stage_sizes
    for before, after in zip(plan.blocks, plan.blocks[1:]):
        assert after.input_size == before.output_size
    assert plan.final_expand is not None and plan.final_expand.input_size == stage_sizes[-1]
    assert plan.feature_mix.input_size == 1  # MobileNetV3 pools before the feature mix


def test_spatial_sizes_proxyless() -> None:
    """ProxylessNAS strides [2, 2, 2, 1, 2, 1]; its feature mix runs at the final 7x7, before pooling."""
    plan = plan_subnet(get_space("compofa-proxyless").smallest(224), 1.3)
    last_outputs = [[b for b in plan.blocks if b.stage == s][-1].output_size for s in range(6)]
    assert last_outputs == [56, 28, 14, 14, 7, 7]
    assert plan.feature_mix.input_size == 7


@pytest.mark.parametrize(
    ("family", "strides"), [(MOBILENET_V3, [2, 2, 2, 1, 2]), (PROXYLESSNAS, [2, 2, 2, 1, 2, 1])]
)
def test_strides(family: Family, strides: list[int]) -> None:
    """Stem stride 2; first block stride 1; only the first block of a stage has the stage's stride."""
    plan = plan_supernet(family, family.default_width)
    assert plan.stem.stride == 2 and plan.stem.kernel_size == 3
    assert plan.blocks[0].stride == 1
    firsts = stage_first_blocks(plan)
    assert [plan.blocks[i].stride for i in firsts] == strides
    assert all(b.stride == 1 for i, b in enumerate(plan.blocks) if i not in firsts)


# -- residual flags ------------------------------------------------------------------------


@pytest.mark.parametrize("width", [1.0, 1.2])
def test_residuals_mbv3(width: float) -> None:
    """MobileNetV3: the first block has a skip (16 -> 16, 24 -> 24); the first block of each stage has
    none; every other block has one."""
    plan = plan_subnet(get_space("ofa-mbv3").largest(224), width)
    assert plan.blocks[0].residual is True
    firsts = stage_first_blocks(plan)
    assert len(firsts) == 5
    assert [plan.blocks[i].residual for i in firsts] == [False] * 5
    assert all(b.residual for i, b in enumerate(plan.blocks[1:], start=1) if i not in firsts)


@pytest.mark.parametrize("width", [1.0, 1.3])
def test_residuals_proxyless(width: float) -> None:
    """ProxylessNAS: no skip on the first block nor on any stage's first block (incl. the single last block)."""
    plan = plan_subnet(get_space("ofa-proxyless").largest(224), width)
    assert plan.blocks[0].residual is False
    firsts = stage_first_blocks(plan)
    assert len(firsts) == 6
    assert [plan.blocks[i].residual for i in firsts] == [False] * 6
    assert plan.blocks[-1].stage == 5 and plan.blocks[-1].residual is False
    assert sum(b.residual for b in plan.blocks) == 15  # 5 stages x 3 following blocks


def test_family_skip_flags() -> None:
    """The family data itself: MobileNetV3's first block may skip, ProxylessNAS's may not."""
    assert MOBILENET_V3.first_block_skip is True
    assert PROXYLESSNAS.first_block_skip is False


def test_first_block_layout() -> None:
    """The fixed first block: position 0, stage -1, depthwise 3x3, expand 1, no expand conv."""
    block = plan_supernet(MOBILENET_V3, 1.2).blocks[0]
    assert (block.position, block.stage, block.kernel_size, block.expand_ratio) == (0, -1, 3, 1)
    assert not block.has_expand_conv
    assert block.mid_channels == block.in_channels == 24
    assert all(b.has_expand_conv for b in plan_supernet(MOBILENET_V3, 1.2).blocks[1:])


# -- positions in the supernet ---------------------------------------------------------------


def test_positions_mbv3() -> None:
    """Stage s block i of a MobileNetV3 subnet uses supernet block 1 + 4 * s + i."""
    spec = parse_spec("ofa-mbv3-r224-k35e46_k753e643_k3577e3466_k77e66_k735e436")
    plan = plan_subnet(spec, 1.2)
    assert [b.position for b in plan.blocks] == [0, 1, 2, 5, 6, 7, 9, 10, 11, 12, 13, 14, 17, 18, 19]
    index = 1
    for stage, depth in enumerate(spec.depths):
        for i in range(depth):
            assert plan.blocks[index].position == 1 + 4 * stage + i
            assert plan.blocks[index].stage == stage
            index += 1


def test_positions_proxyless() -> None:
    """ProxylessNAS: stages 0-4 at 1 + 4 * s + i, the single last block at 21."""
    spec = SubnetSpec("compofa-proxyless", 224, (2, 4, 3, 2, 2, 1), (3,) * 14, (3, 3) + (6,) * 4 + (4,) * 3 + (3,) * 4 + (6,))
    plan = plan_subnet(spec, 1.3)
    assert [b.position for b in plan.blocks] == [0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 13, 14, 17, 18, 21]


def test_supernet_positions_are_contiguous() -> None:
    """The supernet plan has every block: 21 for MobileNetV3, 22 for ProxylessNAS, positions 0..n-1."""
    assert [b.position for b in plan_supernet(MOBILENET_V3, 1.2).blocks] == list(range(21))
    assert [b.position for b in plan_supernet(PROXYLESSNAS, 1.3).blocks] == list(range(22))


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [0, -1.2])
def test_bad_width_refused(width: float) -> None:
    """A non-positive width multiplier is refused."""
    with pytest.raises(ValueError, match="width"):
        plan_supernet(MOBILENET_V3, width)
    with pytest.raises(ValueError, match="width"):
        plan_subnet(get_space("compofa").largest(224), width)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_layers_chain_and_follow_the_family_head(name: str) -> None:
    """`plan.layers` is the one split into lookup-table layers: each layer reads what the one before
    wrote, blocks appear once each in order, and the head is the family's."""
    design = get_space(name)
    for seed in range(3):
        spec = design.sample(np.random.default_rng(seed))
        plan = plan_subnet(spec, design.family.default_width)
        layers = plan.layers
        assert [layer.index for layer in layers] == list(range(len(layers)))
        assert layers[0].kind == "stem" and layers[0].input_shape == (3, spec.resolution, spec.resolution)
        for before, after in zip(layers, layers[1:]):
            assert after.input_shape == before.output_shape, (before, after)
        assert tuple(layer.block for layer in layers if layer.kind == "block") == plan.blocks
        assert [layer.stage for layer in layers if layer.kind == "block"] == [block.stage for block in plan.blocks]
        head = [layer.kind for layer in layers if layer.kind not in ("stem", "block")]
        if design.family.feature_mix_after_pool:
            assert head == ["final_expand", "pool", "feature_mix", "classifier"]
        else:
            assert head == ["feature_mix", "pool_classifier"]
        assert layers[-1].output_shape == (plan.num_classes,)
