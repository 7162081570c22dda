"""Tests of the design spaces: counting, enumeration, sampling, membership, registry.

Cardinalities are those of docs/architecture.md ("Design spaces"): an OFA
stage has 9^2 + 9^3 + 9^4 = 7371 choices, a CompOFA stage 3, a CompOFA
elastic-kernel stage 3^2 + 3^3 + 3^4 = 117.
"""

from __future__ import annotations

import collections
import copy
import json
from typing import Iterable, Sequence

import numpy as np
import pytest

import compofa.space.registry as registry_module
from compofa.errors import CompofaError, RegistryError, SpaceTooLargeError, SpecError, UnknownSpaceError
from compofa.space import (
    ENUMERATION_LIMIT,
    SEARCH_RESOLUTIONS,
    TRAIN_RESOLUTIONS,
    DesignSpace,
    StageChoices,
    SubnetSpec,
    get_space,
    list_spaces,
    register_space,
)
from compofa.space.family import MOBILENET_V3, PROXYLESSNAS

SPACE_NAMES = tuple(space.name for space in list_spaces())
BUILTIN_SPACES = ("ofa-mbv3", "compofa", "compofa-ek", "ofa-proxyless", "compofa-proxyless")

# A chi-square statistic above this with 2 to 8 degrees of freedom has p < 1e-4:
# loose enough never to trip on a fair sampler, far below what a biased one gives.
CHI_SQUARE_BOUND = 30.0


def chi_square(counts: Sequence[int], probabilities: Sequence[float]) -> float:
    """Pearson's statistic of observed `counts` against expected `probabilities`."""
    total = sum(counts)
    return sum((count - total * p) ** 2 / (total * p) for count, p in zip(counts, probabilities))


def unchecked_spec(
    space: str, resolution: int, depths: Iterable[int], kernels: Iterable[int], expands: Iterable[int]
) -> SubnetSpec:
    """A SubnetSpec built without validation, to test `DesignSpace.check` on values construction would refuse."""
    spec = object.__new__(SubnetSpec)
    depths = tuple(depths)
    object.__setattr__(spec, "space", space)
    object.__setattr__(spec, "resolution", resolution)
    object.__setattr__(spec, "depths", depths)
    object.__setattr__(spec, "kernel_sizes", tuple(kernels))
    object.__setattr__(spec, "expand_ratios", tuple(expands))
    object.__setattr__(spec, "_stage_starts", tuple(sum(depths[:i]) for i in range(len(depths))))
    return spec


# -- counting -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cardinality"),
    [
        ("compofa", 243),
        ("compofa-proxyless", 729),
        ("ofa-mbv3", 7371**5),
        ("compofa-ek", 117**5),
        ("ofa-proxyless", 7371**5 * 9),
    ],
)
def test_cardinality(name: str, cardinality: int) -> None:
    """Exact subnet counts per resolution (paper section 4.1)."""
    assert get_space(name).cardinality == cardinality


def test_ofa_cardinality_is_about_2e19() -> None:
    """The OFA MobileNetV3 space has about 2.2e19 subnets, as the paper says."""
    assert 2.17e19 < get_space("ofa-mbv3").cardinality < 2.18e19


@pytest.mark.parametrize(
    ("name", "per_stage"),
    [
        ("ofa-mbv3", (7371,) * 5),
        ("compofa", (3,) * 5),
        ("compofa-ek", (117,) * 5),
        ("ofa-proxyless", (7371,) * 5 + (9,)),
        ("compofa-proxyless", (3,) * 5 + (3,)),
    ],
)
def test_stage_cardinalities(name: str, per_stage: tuple[int, ...]) -> None:
    """Choices per stage; the single-block last ProxylessNAS stage has only k and e (or e alone)."""
    assert tuple(stage.cardinality for stage in get_space(name).stages) == per_stage


def test_stage_counts_by_depth() -> None:
    """An OFA stage has 9^d configurations at depth d; a CompOFA stage one per depth."""
    ofa_stage = get_space("ofa-mbv3").stages[0]
    assert [ofa_stage.count(d) for d in (2, 3, 4)] == [81, 729, 6561]
    compofa_stage = get_space("compofa").stages[0]
    assert [compofa_stage.count(d) for d in (2, 3, 4)] == [1, 1, 1]
    ek_stage = get_space("compofa-ek").stages[0]
    assert [ek_stage.count(d) for d in (2, 3, 4)] == [9, 27, 81]


@pytest.mark.parametrize(
    ("name", "enumerable"),
    [("compofa", True), ("compofa-proxyless", True), ("ofa-mbv3", False), ("compofa-ek", False), ("ofa-proxyless", False)],
)
def test_enumerable(name: str, enumerable: bool) -> None:
    """Only the CompOFA fixed-kernel spaces are small enough to enumerate."""
    assert get_space(name).enumerable is enumerable
    assert (get_space(name).cardinality <= ENUMERATION_LIMIT) is enumerable


# -- enumeration ------------------------------------------------------------------


def test_enumerate_compofa_one_resolution() -> None:
    """compofa at 224 enumerates 243 distinct specs, all members, the largest and smallest among them."""
    space = get_space("compofa")
    specs = list(space.enumerate([224]))
    assert len(specs) == 243
    assert len(set(specs)) == 243
    assert all(space.contains(spec) and spec.resolution == 224 for spec in specs)
    assert space.largest(224) in specs and space.smallest(224) in specs
    # Every depth combination appears exactly once: CompOFA has one subnet per depth tuple.
    depth_tuples = collections.Counter(spec.depths for spec in specs)
    assert len(depth_tuples) == 243 and set(depth_tuples.values()) == {1}


def test_enumerate_compofa_per_resolution() -> None:
    """Enumerating at several resolutions gives the same 243 subnets at each."""
    specs = list(get_space("compofa").enumerate([160, 192, 224]))
    assert len(specs) == 3 * 243 and len(set(specs)) == 3 * 243
    by_resolution = collections.defaultdict(set)
    for spec in specs:
        by_resolution[spec.resolution].add((spec.depths, spec.kernel_sizes, spec.expand_ratios))
    assert sorted(by_resolution) == [160, 192, 224]
    assert by_resolution[160] == by_resolution[192] == by_resolution[224]
    assert len(by_resolution[160]) == 243


def test_enumerate_default_resolutions() -> None:
    """By default every search resolution (160..224 step 4, the Note10 LUT's) is enumerated."""
    assert SEARCH_RESOLUTIONS == tuple(range(160, 225, 4))
    specs = list(get_space("compofa").enumerate())
    assert len(specs) == 243 * 17
    assert collections.Counter(spec.resolution for spec in specs) == {r: 243 for r in SEARCH_RESOLUTIONS}


def test_enumerate_compofa_proxyless() -> None:
    """compofa-proxyless enumerates 729 distinct members: 243 depth tuples times 3 last-block expand ratios."""
    space = get_space("compofa-proxyless")
    specs = list(space.enumerate([224]))
    assert len(set(specs)) == 729
    assert all(space.contains(spec) for spec in specs)
    assert {spec.expand_ratios[-1] for spec in specs} == {3, 4, 6}
    assert {spec.kernel_sizes for spec in specs} == {(3,) * n for n in range(11, 22)}


@pytest.mark.parametrize("name", ["ofa-mbv3", "compofa-ek", "ofa-proxyless"])
def test_enumerate_large_space_refused(name: str) -> None:
    """Enumerating a space beyond ENUMERATION_LIMIT raises SpaceTooLargeError that says to sample instead."""
    with pytest.raises(SpaceTooLargeError, match="sample"):
        list(get_space(name).enumerate([224]))


def test_enumerate_refuses_unknown_resolution() -> None:
    """Enumerating at a resolution the space does not allow is a SpecError."""
    with pytest.raises(SpecError, match="resolution 100"):
        list(get_space("compofa").enumerate([224, 100]))


def test_enumerated_specs_are_plain_ints() -> None:
    """Enumerated specs hold Python ints, so their dicts serialize to JSON."""
    spec = next(iter(get_space("compofa").enumerate([224])))
    json.dumps(spec.to_dict())
    assert all(type(v) is int for v in spec.depths + spec.kernel_sizes + spec.expand_ratios)


# -- sampling ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_sampling_is_deterministic_for_a_seed(name: str) -> None:
    """The same seed gives the same specs; no global RNG is involved."""
    space = get_space(name)
    first = space.sample_many(np.random.default_rng(1234), 20)
    np.random.seed(0)  # global state must not matter
    second = space.sample_many(np.random.default_rng(1234), 20)
    assert first == second
    assert len(first) == 20


@pytest.mark.parametrize("name", ["ofa-mbv3", "compofa-ek", "ofa-proxyless"])
def test_sampling_differs_between_seeds(name: str) -> None:
    """Different seeds give different specs in the large spaces."""
    space = get_space(name)
    assert space.sample_many(np.random.default_rng(1), 5) != space.sample_many(np.random.default_rng(2), 5)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_samples_are_members(name: str) -> None:
    """Every sample lies in its space, at a search resolution, with plain-int JSON-able fields."""
    space = get_space(name)
    for spec in space.sample_many(np.random.default_rng(5), 100):
        assert spec.space == name
        assert space.contains(spec)
        assert spec.resolution in SEARCH_RESOLUTIONS
        json.dumps(spec.to_dict())
        json.dumps(spec.to_ofa_dict())


def test_sampling_respects_resolutions() -> None:
    """`resolutions` restricts the drawn resolution, and every given one is drawn."""
    space = get_space("compofa")
    specs = space.sample_many(np.random.default_rng(3), 200, resolutions=[128, 224])
    assert collections.Counter(spec.resolution for spec in specs).keys() == {128, 224}
    assert {spec.resolution for spec in space.sample_many(np.random.default_rng(3), 10, [176])} == {176}


def test_default_sampling_covers_search_resolutions() -> None:
    """Without `resolutions`, sampling draws from all 17 search resolutions and no other."""
    specs = get_space("compofa").sample_many(np.random.default_rng(11), 600)
    assert {spec.resolution for spec in specs} == set(SEARCH_RESOLUTIONS)


@pytest.mark.parametrize("resolutions", [[225], [160, 232], [124], []])
def test_sampling_refuses_bad_resolutions(resolutions: list[int]) -> None:
    """A resolution outside the space, or none at all, is a SpecError."""
    with pytest.raises(SpecError):
        get_space("compofa").sample(np.random.default_rng(0), resolutions)


def test_compofa_depths_are_uniform() -> None:
    """In CompOFA each depth of a stage is one subnet, so depths 2/3/4 are drawn 1/3 each, stages independent."""
    specs = get_space("compofa").sample_many(np.random.default_rng(2024), 1500, resolutions=[224])
    for stage in range(5):
        counts = collections.Counter(spec.depths[stage] for spec in specs)
        assert chi_square([counts[d] for d in (2, 3, 4)], [1 / 3] * 3) < CHI_SQUARE_BOUND
    pairs = collections.Counter((spec.depths[0], spec.depths[4]) for spec in specs)
    cells = [(a, b) for a in (2, 3, 4) for b in (2, 3, 4)]
    assert chi_square([pairs[cell] for cell in cells], [1 / 9] * 9) < CHI_SQUARE_BOUND


def test_ofa_sampling_is_uniform_over_subnets_not_depths() -> None:
    """In OFA a stage at depth 4 has 6561 of 7371 configurations: uniform sampling draws it ~89% of the time."""
    specs = get_space("ofa-mbv3").sample_many(np.random.default_rng(99), 1500, resolutions=[224])
    probabilities = [81 / 7371, 729 / 7371, 6561 / 7371]
    for stage in (0, 3):
        counts = collections.Counter(spec.depths[stage] for spec in specs)
        observed = [counts[d] for d in (2, 3, 4)]
        assert chi_square(observed, probabilities) < CHI_SQUARE_BOUND
        # A depth-uniform sampler (as OFA's training sampler) would fail here by far.
        assert chi_square(observed, [1 / 3] * 3) > 1000
    # Within a block, kernel and expand ratio are uniform and independent.
    first_blocks = collections.Counter((spec.kernel_sizes[0], spec.expand_ratios[0]) for spec in specs)
    cells = [(k, e) for k in (3, 5, 7) for e in (3, 4, 6)]
    assert chi_square([first_blocks[cell] for cell in cells], [1 / 9] * 9) < CHI_SQUARE_BOUND


def test_compofa_ek_depths_follow_configuration_counts() -> None:
    """compofa-ek draws depth d with probability 3^d / 117 (kernels free, expand coupled)."""
    specs = get_space("compofa-ek").sample_many(np.random.default_rng(17), 1000, resolutions=[224])
    counts = collections.Counter(spec.depths[1] for spec in specs)
    assert chi_square([counts[d] for d in (2, 3, 4)], [9 / 117, 27 / 117, 81 / 117]) < CHI_SQUARE_BOUND
    for spec in specs:
        for stage, depth in enumerate(spec.depths):
            assert set(spec.stage_expand_ratios(stage)) == {{2: 3, 3: 4, 4: 6}[depth]}


# -- membership -------------------------------------------------------------------


def test_contains_is_false_for_other_spaces() -> None:
    """A spec belongs only to the space it names, even when its values would fit another."""
    compofa_spec = get_space("compofa").largest(224)
    assert get_space("compofa").contains(compofa_spec)
    assert not get_space("compofa-ek").contains(compofa_spec)
    assert not get_space("ofa-mbv3").contains(compofa_spec)
    with pytest.raises(SpecError, match="'compofa'.*'ofa-mbv3'"):
        get_space("ofa-mbv3").check(compofa_spec)


def test_missing_from_names_the_first_choice_another_space_lacks() -> None:
    compofa, ek, ofa = get_space("compofa"), get_space("compofa-ek"), get_space("ofa-mbv3")
    assert compofa.missing_from(ofa) is None and ek.missing_from(ofa) is None and compofa.missing_from(ek) is None
    assert ofa.missing_from(compofa) == "kernel size 5 in stage 0"  # CompOFA fixes each stage's kernel size
    assert ek.missing_from(compofa) == "kernel size 5 in stage 0"
    assert ofa.missing_from(get_space("compofa-ek")) == "expand ratio 4 at depth 2 in stage 0"
    assert compofa.missing_from(get_space("compofa-proxyless")) == "the mobilenetv3 family"


@pytest.mark.parametrize(
    ("space", "resolution", "depths", "kernels", "expands", "field"),
    [
        ("compofa", 226, (2,) * 5, (3, 3, 5, 5, 3, 3, 3, 3, 5, 5), (3,) * 10, "resolution"),
        ("compofa", 224, (2,) * 4, (3, 3, 5, 5, 3, 3, 3, 3), (3,) * 8, "depths"),
        ("compofa", 224, (2, 2, 1, 2, 2), (3, 3, 5, 5, 3, 3, 3, 5, 5), (3,) * 9, "depths[2]"),
        ("compofa", 224, (2,) * 5, (3, 3, 5, 7, 3, 3, 3, 3, 5, 5), (3,) * 10, "kernel_sizes[3]"),
        ("compofa", 224, (2,) * 5, (3, 3, 5, 5, 3, 3, 3, 3, 5, 5), (3,) * 9 + (6,), "expand_ratios[9]"),
        ("ofa-mbv3", 224, (2,) * 5, (3,) * 6 + (9,) + (3,) * 3, (3,) * 10, "kernel_sizes[6]"),
        ("ofa-mbv3", 224, (2,) * 5, (3,) * 10, (3, 5) + (3,) * 8, "expand_ratios[1]"),
        ("ofa-proxyless", 224, (2,) * 5 + (2,), (3,) * 12, (3,) * 12, "depths[5]"),
        ("compofa-proxyless", 224, (2,) * 5 + (1,), (3,) * 10 + (5,), (3,) * 11, "kernel_sizes[10]"),
    ],
)
def test_check_names_the_bad_field(
    space: str, resolution: int, depths: tuple[int, ...], kernels: tuple[int, ...], expands: tuple[int, ...], field: str
) -> None:
    """`check` names the first field outside the space; `contains` is then False."""
    spec = unchecked_spec(space, resolution, depths, kernels, expands)
    design = get_space(space)
    assert not design.contains(spec)
    with pytest.raises(SpecError) as caught:
        design.check(spec)
    assert field in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


def test_resolution_error_describes_allowed_range() -> None:
    """The resolution error states the allowed range compactly."""
    assert TRAIN_RESOLUTIONS == tuple(range(128, 225, 4))
    with pytest.raises(SpecError, match=r"128\.\.224 step 4"):
        get_space("compofa").largest(230)


@pytest.mark.parametrize("resolution", [124, 126, 130, 228, 0, -224])
def test_resolutions_outside_space_refused(resolution: int) -> None:
    """Resolutions that are not multiples of 4 in 128..224 are refused everywhere."""
    for name in BUILTIN_SPACES:
        with pytest.raises(SpecError, match=r"has no resolution -?\d+: it takes"):
            get_space(name).largest(resolution)


def test_train_resolutions_are_all_allowed() -> None:
    """Every training resolution (multiples of 4 from 128 to 224) is allowed in every space."""
    for name in BUILTIN_SPACES:
        space = get_space(name)
        assert space.resolutions == TRAIN_RESOLUTIONS
        for resolution in (128, 132, 200, 224):
            assert space.smallest(resolution).resolution == resolution


# -- largest / smallest -------------------------------------------------------------


def test_largest_and_smallest_mbv3() -> None:
    """ofa-mbv3: largest is d4 k7 e6 everywhere, smallest d2 k3 e3; default resolutions 224 and 160."""
    space = get_space("ofa-mbv3")
    largest, smallest = space.largest(), space.smallest()
    assert largest == SubnetSpec("ofa-mbv3", 224, (4,) * 5, (7,) * 20, (6,) * 20)
    assert smallest == SubnetSpec("ofa-mbv3", 160, (2,) * 5, (3,) * 10, (3,) * 10)


def test_largest_and_smallest_compofa() -> None:
    """compofa: kernels fixed 3,5,3,3,5 per stage; d4/e6 and d2/e3."""
    space = get_space("compofa")
    assert space.largest(192) == SubnetSpec(
        "compofa", 192, (4,) * 5, (3,) * 4 + (5,) * 4 + (3,) * 8 + (5,) * 4, (6,) * 20
    )
    assert space.smallest(224) == SubnetSpec("compofa", 224, (2,) * 5, (3, 3, 5, 5, 3, 3, 3, 3, 5, 5), (3,) * 10)


def test_largest_and_smallest_proxyless() -> None:
    """ProxylessNAS spaces end with a single block whose kernel/expand are chosen like the others."""
    assert get_space("ofa-proxyless").largest() == SubnetSpec(
        "ofa-proxyless", 224, (4,) * 5 + (1,), (7,) * 21, (6,) * 21
    )
    assert get_space("compofa-proxyless").largest() == SubnetSpec(
        "compofa-proxyless", 224, (4,) * 5 + (1,), (3,) * 21, (6,) * 21
    )
    assert get_space("compofa-proxyless").smallest() == SubnetSpec(
        "compofa-proxyless", 160, (2,) * 5 + (1,), (3,) * 11, (3,) * 11
    )


# -- space definitions --------------------------------------------------------------


def test_space_families_and_transform() -> None:
    """Each space runs on its family; only OFA spaces use the learned kernel transform."""
    expected = {
        "ofa-mbv3": (MOBILENET_V3, True),
        "compofa": (MOBILENET_V3, False),
        "compofa-ek": (MOBILENET_V3, False),
        "ofa-proxyless": (PROXYLESSNAS, True),
        "compofa-proxyless": (PROXYLESSNAS, False),
    }
    for name, (family, transform) in expected.items():
        space = get_space(name)
        assert space.family is family
        assert space.kernel_transform is transform


def test_compofa_coupling_data() -> None:
    """CompOFA couples d2->e3, d3->e4, d4->e6 (paper section 4.1) with kernels fixed 3,5,3,3,5."""
    stages = get_space("compofa").stages
    assert all(stage.coupled and dict(stage.expand_for_depth) == {2: 3, 3: 4, 4: 6} for stage in stages)
    assert [stage.kernel_sizes for stage in stages] == [(3,), (5,), (3,), (3,), (5,)]
    last = get_space("compofa-proxyless").stages[-1]
    assert not last.coupled and last.depths == (1,) and last.expand_ratios == (3, 4, 6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"depths": (), "kernel_sizes": (3,), "expand_ratios": (3,)},
        {"depths": (2,), "kernel_sizes": (3, 11), "expand_ratios": (3,)},
        {"depths": (2,), "kernel_sizes": (3,), "expand_ratios": (0,)},
        {"depths": (2, 3), "kernel_sizes": (3,), "expand_ratios": (3, 4), "expand_for_depth": ((2, 3),)},
    ],
)
def test_stage_choices_validation(kwargs: dict) -> None:
    """StageChoices refuses empty or multi-digit choices and a coupling that misses a depth."""
    with pytest.raises(ValueError):
        StageChoices(**kwargs)


def test_design_space_validation() -> None:
    """A space must have one stage per family stage, within the family's depth/kernel/expand limits."""
    stage = StageChoices((2, 3, 4), (3, 5, 7), (3, 4, 6))
    with pytest.raises(ValueError, match="stages"):
        DesignSpace("x", MOBILENET_V3, (stage,) * 4, "", False)
    with pytest.raises(ValueError, match="more blocks"):
        DesignSpace("x", PROXYLESSNAS, (stage,) * 6, "", False)
    with pytest.raises(ValueError, match="kernel"):
        DesignSpace("x", MOBILENET_V3, (StageChoices((2,), (9,), (3,)),) * 5, "", False)
    with pytest.raises(ValueError, match="search resolutions"):
        DesignSpace("x", MOBILENET_V3, (stage,) * 5, "", False, resolutions=(224,), search_resolutions=(160,))


# -- registry -------------------------------------------------------------------------


def test_registry_lists_builtin_spaces() -> None:
    """The five built-in spaces are registered, each under its own name."""
    assert set(BUILTIN_SPACES) <= set(SPACE_NAMES)
    assert len(SPACE_NAMES) == len(set(SPACE_NAMES))
    for name in BUILTIN_SPACES:
        assert get_space(name).name == name


def test_duplicate_registration_raises() -> None:
    """Registering a name twice raises RegistryError and leaves the registry as it was."""
    before = list_spaces()
    original = get_space("compofa")
    with pytest.raises(RegistryError, match="compofa"):
        register_space(original)
    with pytest.raises(RegistryError):
        register_space(DesignSpace("compofa", MOBILENET_V3, get_space("ofa-mbv3").stages, "impostor", True))
    assert list_spaces() == before
    assert get_space("compofa") is original


def test_unknown_space_lists_known_spaces() -> None:
    """An unknown name raises UnknownSpaceError (a CompofaError and KeyError) listing the known spaces, unquoted."""
    with pytest.raises(UnknownSpaceError) as caught:
        get_space("mobilenet")
    message = str(caught.value)
    assert message.startswith("unknown design space 'mobilenet'")
    for name in BUILTIN_SPACES:
        assert name in message
    assert isinstance(caught.value, CompofaError) and isinstance(caught.value, KeyError)


def test_register_new_space(monkeypatch: pytest.MonkeyPatch) -> None:
    """A newly registered space is listed, usable for specs, and counted from its data."""
    monkeypatch.setattr(registry_module, "_SPACES", copy.deepcopy(registry_module._SPACES))
    coupled = StageChoices((2, 4), (3,), (3, 6), expand_for_depth=((2, 3), (4, 6)))
    tiny = DesignSpace("tiny-test", MOBILENET_V3, (coupled,) * 5, "two depths per stage", False)
    assert register_space(tiny) is tiny
    assert get_space("tiny-test") is tiny
    assert tiny in list_spaces()
    assert tiny.cardinality == 2**5
    assert len(list(tiny.enumerate([224]))) == 32
    spec = SubnetSpec("tiny-test", 224, (2, 4, 2, 4, 2), (3,) * 14, (3, 3, 6, 6, 6, 6, 3, 3, 6, 6, 6, 6, 3, 3))
    assert tiny.contains(spec)
    with pytest.raises(SpecError, match=r"stage 0 has depth 3 \(depths\[0\]\)"):
        SubnetSpec("tiny-test", 224, (3, 4, 2, 4, 2), (3,) * 15, (4,) * 3 + (6,) * 4 + (3,) * 2 + (6,) * 4 + (3,) * 2)


def test_enumerate_fails_at_the_call() -> None:
    """Enumeration refuses a huge space or a bad resolution when called, before any iteration."""
    with pytest.raises(SpaceTooLargeError):
        get_space("ofa-mbv3").enumerate()
    with pytest.raises(SpecError, match="resolution 100"):
        get_space("compofa").enumerate([100])


def test_numpy_integers_are_accepted() -> None:
    """Resolutions and block values given as numpy integers make the same specs as ints."""
    space = get_space("compofa")
    assert list(space.enumerate(np.array([224]))) == list(space.enumerate([224]))
    assert space.largest(np.int64(192)) == space.largest(192)
