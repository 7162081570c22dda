"""Parity with the reference implementation (the MIT-licensed `ofa` package).

The reference's random weights go through our checkpoint reader
(`unwrap_checkpoint` + `load_state`, or `load_supernet` from a file) into our
supernet; every subnet must then give the reference's logits. The reference's
kernel transform is a class attribute read at construction and at forward time,
switched per test with monkeypatch.

The 1e-5 comparisons run in float64 (both networks converted exactly after
loading): in float32 the two implementations round differently (the reference
pools with ``.mean(3).mean(2)`` and gates SE with ``relu6(x + 3) / 6``), and a
network with calibrated random weights carries that rounding to ~1e-5 on the
logits of the full subnet. float64 leaves ~1e-13, so 1e-5 measures the math.
(No code path of ours depends on the dtype; float32 runs in the other test files.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from torch import nn

from compofa.space import SubnetSpec
from compofa.supernet import Supernet
from compofa.supernet.checkpoint import load_state, load_supernet, unwrap_checkpoint
from conftest import (
    PARITY_RESOLUTION,
    REFERENCE_CASES,
    build_reference,
    family_of,
    generator,
    images,
    randomize_,
    reference_logits,
    sample_specs,
    set_reference_transform,
)

TOLERANCE = 1e-5
SPECS_PER_CASE = 3  # the largest, the smallest and a random subnet


def _load(reference: nn.Module, family: str, width: float, transform: bool) -> Supernet:
    """Our supernet holding the reference's weights, read through the checkpoint path."""
    state, metadata = unwrap_checkpoint(reference.state_dict())
    assert metadata == {}
    supernet = Supernet(family, width, transform).eval()
    load_state(supernet, state)
    return supernet


@pytest.fixture(scope="module")
def loaded_supernet(reference_net: Callable[..., nn.Module]) -> Callable[..., Supernet]:
    """Factory: our supernet loaded from the shared reference network of the same key."""
    cache: dict[tuple[str, float, bool, torch.dtype], Supernet] = {}

    def get(family: str, width: float, transform: bool, dtype: torch.dtype = torch.float32) -> Supernet:
        key = (family, width, transform, dtype)
        if key not in cache:
            # Loaded in float32 (what load_state copies into), then converted exactly.
            cache[key] = _load(reference_net(family, width, transform), family, width, transform).to(dtype)
        return cache[key]

    return get


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def test_random_weights_make_parity_meaningful(
    reference_net: Callable[..., nn.Module], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The randomized references give O(1) logits that a 10% change of the first elastic kernel moves by >> 1e-5."""
    set_reference_transform(monkeypatch, True)
    x = images(2, PARITY_RESOLUTION)
    for family, width, space in (("mobilenetv3", 1.2, "compofa"), ("proxylessnas", 1.3, "compofa-proxyless")):
        reference = reference_net(family, width, True)  # float32: its rounding (~1e-6) is far below the bar
        first_block_kernel = reference.blocks[1].conv.depth_conv.conv.conv.weight
        for spec in sample_specs(space, 3):
            logits = reference_logits(reference, spec, x)
            assert 0.1 <= float(logits.abs().max()) <= 20.0, spec
            saved = first_block_kernel.detach().clone()
            try:
                with torch.no_grad():
                    first_block_kernel.mul_(1.1)
                moved = _max_diff(reference_logits(reference, spec, x), logits)
            finally:
                with torch.no_grad():
                    first_block_kernel.copy_(saved)
            assert moved > 10 * TOLERANCE, f"{spec}: a 10% change of block 1 moved the logits by only {moved:.2e}"


@pytest.mark.parametrize("transform", [True, False], ids=["transform-on", "transform-off"])
@pytest.mark.parametrize(("space", "width"), REFERENCE_CASES, ids=[f"{s}-w{w:.1f}" for s, w in REFERENCE_CASES])
def test_subnet_logits_match_reference(
    space: str,
    width: float,
    transform: bool,
    reference_net: Callable[..., nn.Module],
    loaded_supernet: Callable[..., Supernet],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """supernet(x, spec) and supernet.subnet(spec)(x) give the reference's logits (<= 1e-5) for several subnets."""
    set_reference_transform(monkeypatch, transform)
    family = family_of(space)
    reference = reference_net(family, width, transform, torch.float64)
    supernet = loaded_supernet(family, width, transform, torch.float64)
    x = images(2, PARITY_RESOLUTION, dtype=torch.float64)
    specs = sample_specs(space, SPECS_PER_CASE, seed=1)
    for index, spec in enumerate(specs):
        expected = reference_logits(reference, spec, x)
        assert 0.05 <= float(expected.abs().max()) <= 20.0, "logits should be O(1) for 1e-5 to mean something"
        with torch.no_grad():
            assert _max_diff(supernet(x, spec), expected) <= TOLERANCE, f"supernet(x, {spec})"
            if index == len(specs) - 1:  # extraction costs more; test_supernet checks it on every space too
                standalone = supernet.subnet(spec)
                assert standalone(x).dtype == torch.float64
                assert _max_diff(standalone(x), expected) <= TOLERANCE, f"subnet({spec})"


@pytest.mark.parametrize(
    ("family", "width", "space"), [("mobilenetv3", 1.2, "compofa-ek"), ("proxylessnas", 1.3, "ofa-proxyless")]
)
def test_transform_off_supernet_ignores_unused_matrices(
    family: str,
    width: float,
    space: str,
    reference_net: Callable[..., nn.Module],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A state dict with (unused) transform matrices loads into a transform-off supernet, which then crops plainly."""
    reference = reference_net(family, width, True)
    assert any(key.endswith("7to5_matrix") for key in reference.state_dict())
    supernet = _load(reference, family, width, transform=False).double()
    assert not any(key.endswith("_matrix") for key in supernet.state_dict())
    reference = reference_net(family, width, True, torch.float64)
    x = images(2, PARITY_RESOLUTION, dtype=torch.float64)
    spec = sample_specs(space, 3, seed=2)[-1]
    assert min(spec.kernel_sizes) < 7, "the spec must use transformed kernels for this test to mean anything"
    set_reference_transform(monkeypatch, True)
    with_transform = reference_logits(reference, spec, x)
    set_reference_transform(monkeypatch, False)
    without_transform = reference_logits(reference, spec, x)
    assert _max_diff(with_transform, without_transform) > 1e-3, "the matrices should matter under the transform"
    with torch.no_grad():
        assert _max_diff(supernet(x, spec), without_transform) <= TOLERANCE
        assert _max_diff(supernet.subnet(spec)(x), without_transform) <= TOLERANCE


# -- checkpoint layouts -------------------------------------------------------------------


def _old_block_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The older OFA naming: blocks.{i}.mobile_inverted_conv.* instead of blocks.{i}.conv.*."""
    return {re.sub(r"^(blocks\.\d+)\.conv\.", r"\1.mobile_inverted_conv.", k): v for k, v in state.items()}


def _module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"module.{k}": v for k, v in state.items()}


LAYOUTS: dict[str, Callable[[dict[str, torch.Tensor]], Any]] = {
    "as-is": lambda state: state,
    "mobile-inverted-conv": _old_block_names,
    "wrapped": lambda state: {"state_dict": state},
    "module-prefix": _module_prefix,
    "wrapped-prefixed-old-names": lambda state: {"state_dict": _module_prefix(_old_block_names(state)), "epoch": 3},
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_checkpoint_layouts_load_the_same_weights(
    layout: str,
    reference_net: Callable[..., nn.Module],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Every accepted OFA layout, in memory and from a file, loads exactly the reference weights."""
    set_reference_transform(monkeypatch, True)
    reference = reference_net("mobilenetv3", 1.2, True)
    content = LAYOUTS[layout](dict(reference.state_dict()))
    if layout == "mobile-inverted-conv":
        assert any(".mobile_inverted_conv." in key for key in content)
    expected_state, _ = unwrap_checkpoint(reference.state_dict())  # the as-is layout, tested for parity

    state, _ = unwrap_checkpoint(content)
    in_memory = Supernet("mobilenetv3", 1.2, kernel_transform=True).eval()
    load_state(in_memory, state)
    path = tmp_path / "ofa.pth"
    torch.save(content, path)
    from_file = load_supernet(path, "mobilenetv3", kernel_transform=True).eval()
    assert from_file.width == 1.2 and from_file.kernel_transform

    for supernet in (in_memory, from_file):
        actual_state = supernet.state_dict()
        assert actual_state.keys() == expected_state.keys()
        for key, tensor in expected_state.items():
            assert torch.equal(actual_state[key], tensor), key
    # Equal weights give equal logits; check it once, on the file read from the most mangled layout.
    if layout == "wrapped-prefixed-old-names":
        x = images(2, PARITY_RESOLUTION, dtype=torch.float64)
        spec = sample_specs("ofa-mbv3", 3, seed=3)[-1]
        expected_logits = reference_logits(reference_net("mobilenetv3", 1.2, True, torch.float64), spec, x)
        with torch.no_grad():
            assert _max_diff(from_file.double()(x, spec), expected_logits) <= TOLERANCE


@pytest.mark.parametrize(
    ("family", "width", "transform", "space"),
    [
        ("mobilenetv3", 1.0, False, "compofa"),
        ("mobilenetv3", 1.0, True, "ofa-mbv3"),
        ("proxylessnas", 1.3, False, "compofa-proxyless"),
    ],
)
def test_load_supernet_from_reference_file(
    family: str,
    width: float,
    transform: bool,
    space: str,
    reference_net: Callable[..., nn.Module],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """load_supernet reads a saved reference state_dict (width from the stem) and matches its logits."""
    set_reference_transform(monkeypatch, transform)
    reference = reference_net(family, width, transform)
    path = tmp_path / "reference.pth"
    torch.save(reference.state_dict(), path)
    supernet = load_supernet(path, family, kernel_transform=transform).eval()
    assert supernet.width == width
    assert supernet.kernel_transform is transform
    supernet.double()
    reference = reference_net(family, width, transform, torch.float64)
    x = images(2, PARITY_RESOLUTION, dtype=torch.float64)
    spec = sample_specs(space, 3, seed=4)[-1]
    expected = reference_logits(reference, spec, x)
    with torch.no_grad():
        assert _max_diff(supernet.subnet(spec)(x), expected) <= TOLERANCE, str(spec)


# -- middle-channel sorting ------------------------------------------------------------


def _distinct_importances_(reference: nn.Module, seed: int) -> None:
    """Give every middle channel (and SE channel) an L1 importance distinct from the others by >= 1.

    The reference sorts float32 importances offset by 1e5 with an unstable sort;
    ties or near-ties would make its order arbitrary.
    """
    gen = generator("importances", seed)
    with torch.no_grad():
        for key, tensor in reference.state_dict().items():
            if key.startswith("blocks.0."):
                continue
            if key.endswith("point_linear.conv.conv.weight") or key.endswith("depth_conv.se.fc.expand.weight"):
                rows, columns = tensor.shape[:2]  # importance of column j: sum over rows of |w[:, j]|
                ranks = (torch.randperm(columns, generator=gen) + 1).to(tensor.dtype)
                signs = torch.randint(0, 2, (rows, columns), generator=gen).to(tensor.dtype) * 2 - 1
                tensor.copy_((signs * ranks / rows).reshape(tensor.shape))


KEEP = {0: (), 1: (4,), 2: (4, 3)}


@pytest.mark.parametrize("stage", sorted(KEEP), ids=[f"stage{k}" for k in KEEP])
@pytest.mark.parametrize(("family", "width"), [("mobilenetv3", 1.2), ("proxylessnas", 1.3)])
def test_sort_middle_channels_matches_reference(family: str, width: float, stage: int) -> None:
    """sort_middle_channels(keep) gives exactly the reference's re_organize_middle_weights(expand_ratio_stage)."""
    reference = randomize_(build_reference(family, width, True), generator("sort", family, stage), resolution=None)
    _distinct_importances_(reference, seed=stage)
    supernet = _load(reference, family, width, True)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}

    reference.re_organize_middle_weights(expand_ratio_stage=stage)
    supernet.sort_middle_channels(KEEP[stage])

    expected, _ = unwrap_checkpoint(reference.state_dict())
    actual = supernet.state_dict()
    assert actual.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(actual[key], tensor), key
    changed = [k for k in actual if not torch.equal(actual[k], before[k])]
    assert any(k.endswith("point_linear.conv.weight") for k in changed), "the sort should have moved channels"
    if family == "mobilenetv3":
        assert any(k.endswith("se.fc.reduce.bias") for k in changed), "the SE bottleneck should have been sorted"


def test_sort_keeps_trained_widths_together() -> None:
    """With keep (4,), the channels inside the e=4 width stay inside it (only reordered among themselves)."""
    reference = randomize_(build_reference("mobilenetv3", 1.2, True), generator("sort-keep"), resolution=None)
    _distinct_importances_(reference, seed=7)
    supernet = _load(reference, "mobilenetv3", 1.2, True)
    block = supernet.blocks[5].conv  # first block of stage 2 (SE): 32 -> 48 channels at w1.2
    weight = block.point_linear.conv.weight
    width4 = 128  # make_divisible(round(32 * 4))
    inside = set(weight[:, :width4].abs().sum((0, 2, 3)).round().tolist())
    supernet.sort_middle_channels((4,))
    importance = weight.abs().sum((0, 2, 3)).round()
    assert set(importance[:width4].tolist()) == inside
    assert torch.all(importance[: width4 - 1] > importance[1:width4])
    assert torch.all(importance[width4:-1] > importance[width4 + 1 :])
