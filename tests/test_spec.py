"""Tests of `SubnetSpec`: construction, validation, text form, OFA dict form, read_spec.

Pins the canonical text form (the latency-table key) and the OFA dict form, both
of which other tools and stored tables depend on, so the golden values below
must only change together with a format version.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compofa.errors import CompofaError, SpecError, UnknownSpaceError
from compofa.space import (
    BlockSetting,
    SubnetSpec,
    format_spec,
    get_space,
    list_spaces,
    parse_spec,
    read_spec,
)

BUILTIN_SPACES = ("ofa-mbv3", "compofa", "compofa-ek", "ofa-proxyless", "compofa-proxyless")
SPACE_NAMES = tuple(space.name for space in list_spaces())

COMPOFA_LARGEST_224 = "compofa-r224-k3333e6666_k5555e6666_k3333e6666_k3333e6666_k5555e6666"
COMPOFA_SMALLEST_160 = "compofa-r160-k33e33_k55e33_k33e33_k33e33_k55e33"

# An ofa-mbv3 spec with a different depth, kernel and expand per block, so that
# every position of the text and OFA forms is distinguishable.
MIXED_OFA = SubnetSpec(
    space="ofa-mbv3",
    resolution=192,
    depths=(2, 3, 4, 2, 3),
    kernel_sizes=(3, 5, 7, 5, 3, 3, 5, 7, 7, 7, 7, 7, 3, 5),
    expand_ratios=(4, 6, 6, 4, 3, 3, 4, 6, 6, 6, 6, 4, 3, 6),
)
MIXED_OFA_TEXT = "ofa-mbv3-r192-k35e46_k753e643_k3577e3466_k77e66_k735e436"
MIXED_OFA_DICT = {
    "ks": [3, 5, 5, 5, 7, 5, 3, 3, 3, 5, 7, 7, 7, 7, 7, 7, 7, 3, 5, 5],
    "e": [4, 6, 6, 6, 6, 4, 3, 3, 3, 4, 6, 6, 6, 6, 6, 6, 4, 3, 6, 6],
    "d": [2, 3, 4, 2, 3],
    "r": [192],
}


def compofa_spec(**changes: Any) -> SubnetSpec:
    """The CompOFA largest subnet at 224, with `changes` applied to its fields."""
    fields: dict[str, Any] = {
        "space": "compofa",
        "resolution": 224,
        "depths": (4, 4, 4, 4, 4),
        "kernel_sizes": (3,) * 4 + (5,) * 4 + (3,) * 8 + (5,) * 4,
        "expand_ratios": (6,) * 20,
    }
    fields.update(changes)
    return SubnetSpec(**fields)


def assert_one_line(error: BaseException) -> None:
    message = str(error)
    assert message, "error message is empty"
    assert "\n" not in message and "\r" not in message, f"message spans lines: {message!r}"


# -- construction ---------------------------------------------------------------


def test_registry_holds_the_builtin_spaces() -> None:
    """The property tests below run over every registered space; the five built-ins must be among them."""
    assert set(BUILTIN_SPACES) <= set(SPACE_NAMES)


def test_construction_normalises_lists_to_tuples() -> None:
    """Lists are accepted and stored as tuples, so a spec built from lists equals (and hashes as) one from tuples."""
    from_lists = SubnetSpec("compofa", 224, [2, 2, 2, 2, 2], [3, 3, 5, 5, 3, 3, 3, 3, 5, 5], [3] * 10)
    from_tuples = SubnetSpec("compofa", 224, (2,) * 5, (3, 3, 5, 5, 3, 3, 3, 3, 5, 5), (3,) * 10)
    assert from_lists == from_tuples
    assert hash(from_lists) == hash(from_tuples)
    assert isinstance(from_lists.depths, tuple)
    assert isinstance(from_lists.kernel_sizes, tuple)
    assert isinstance(from_lists.expand_ratios, tuple)


def test_spec_is_frozen() -> None:
    """A spec is a value: its fields cannot be reassigned."""
    spec = compofa_spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.resolution = 160  # type: ignore[misc]


def test_replace_revalidates() -> None:
    """`dataclasses.replace` builds a new, checked spec; an out-of-space value is refused."""
    spec = compofa_spec()
    smaller = dataclasses.replace(spec, resolution=160)
    assert smaller.resolution == 160 and smaller.depths == spec.depths
    with pytest.raises(SpecError, match=r"space 'compofa' has no resolution 225"):
        dataclasses.replace(spec, resolution=225)


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"space": ""}, "SubnetSpec.space"),
        ({"space": None}, "SubnetSpec.space"),
        ({"resolution": "224"}, "SubnetSpec.resolution"),
        ({"resolution": 224.0}, "SubnetSpec.resolution"),
        ({"resolution": True}, "SubnetSpec.resolution"),
        ({"resolution": 225}, "resolution 225"),
        ({"resolution": 124}, "resolution 124"),
        ({"resolution": 228}, "resolution 228"),
        ({"depths": "44444"}, "SubnetSpec.depths"),
        ({"depths": (4, 4, 0, 4, 4)}, "SubnetSpec.depths[2]"),
        ({"depths": (4, 4, 4, True, 4)}, "SubnetSpec.depths[3]"),
        ({"depths": (4, 4, 4, 4, 4.0)}, "SubnetSpec.depths[4]"),
        ({"kernel_sizes": 3}, "SubnetSpec.kernel_sizes"),
        ({"kernel_sizes": (3, 3, 3, -3) + (5,) * 4 + (3,) * 8 + (5,) * 4}, "SubnetSpec.kernel_sizes[3]"),
        ({"expand_ratios": (6,) * 7 + ("6",) + (6,) * 12}, "SubnetSpec.expand_ratios[7]"),
        ({"kernel_sizes": (3,) * 19}, "SubnetSpec.kernel_sizes"),
        ({"expand_ratios": (6,) * 21}, "SubnetSpec.expand_ratios"),
        # Membership in the space: the first value the space does not allow is named.
        ({"kernel_sizes": (3, 3, 3, 5) + (5,) * 4 + (3,) * 8 + (5,) * 4}, "kernel_sizes[3]"),
        ({"kernel_sizes": (3,) * 4 + (5, 5, 3, 5) + (3,) * 8 + (5,) * 4}, "kernel_sizes[6]"),
        ({"expand_ratios": (6,) * 10 + (4,) + (6,) * 9}, "expand_ratios[10]"),
        (
            {"depths": (4, 4, 4, 4, 5), "kernel_sizes": (3,) * 4 + (5,) * 4 + (3,) * 8 + (5,) * 5,
             "expand_ratios": (6,) * 21},
            "depths[4]",
        ),
        (
            {"depths": (4, 4, 4, 4), "kernel_sizes": (3,) * 16, "expand_ratios": (6,) * 16},
            "depths name 4 stages",
        ),
    ],
)
def test_bad_field_raises_spec_error_naming_it(changes: dict[str, Any], field_name: str) -> None:
    """Each malformed or out-of-space field gives a one-line SpecError naming that field."""
    with pytest.raises(SpecError) as caught:
        compofa_spec(**changes)
    assert field_name in str(caught.value), str(caught.value)
    assert_one_line(caught.value)


def test_spec_error_is_a_value_error() -> None:
    """Spec validation raises a ValueError (SpecError subclasses it)."""
    with pytest.raises(ValueError):
        compofa_spec(resolution=225)


def test_coupling_error_explains_the_coupled_ratio() -> None:
    """In CompOFA, depth 2 couples to expand ratio 3; a depth-2 stage with e4 is refused with the reason."""
    with pytest.raises(SpecError) as caught:
        SubnetSpec("compofa", 224, (2,) * 5, (3, 3, 5, 5, 3, 3, 3, 3, 5, 5), (3, 4) + (3,) * 8)
    message = str(caught.value)
    assert "block 1 of stage 0 has expand ratio 4 (expand_ratios[1])" in message
    assert "depth 2 couples to expand ratio 3" in message


def test_unknown_space_is_refused() -> None:
    """A spec naming an unregistered space is refused with an error that lists the known spaces."""
    with pytest.raises(CompofaError) as caught:
        compofa_spec(space="compofa-nope")
    assert "compofa-nope" in str(caught.value)
    assert "compofa-ek" in str(caught.value)
    assert_one_line(caught.value)


def test_unknown_space_raises_spec_error() -> None:
    """parse_spec's and SubnetSpec's docstrings promise SpecError for any bad spec, the space included."""
    with pytest.raises(SpecError):
        parse_spec("compofa-nope-r224-k33e33_k55e33_k33e33_k33e33_k55e33")


def test_per_stage_accessors_and_blocks() -> None:
    """stage_kernel_sizes/stage_expand_ratios slice by depth, and blocks() lists the active blocks in order."""
    assert MIXED_OFA.num_stages == 5
    assert MIXED_OFA.stage_kernel_sizes(0) == (3, 5)
    assert MIXED_OFA.stage_kernel_sizes(1) == (7, 5, 3)
    assert MIXED_OFA.stage_expand_ratios(2) == (3, 4, 6, 6)
    assert MIXED_OFA.stage_kernel_sizes(4) == (7, 3, 5)
    assert MIXED_OFA.stage_expand_ratios(4) == (4, 3, 6)
    blocks = list(MIXED_OFA.blocks())
    assert len(blocks) == 14
    assert blocks[0] == BlockSetting(stage=0, index_in_stage=0, kernel_size=3, expand_ratio=4)
    assert blocks[2] == BlockSetting(stage=1, index_in_stage=0, kernel_size=7, expand_ratio=6)
    assert blocks[-1] == BlockSetting(stage=4, index_in_stage=2, kernel_size=5, expand_ratio=6)
    assert [b.stage for b in blocks] == [0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 4]


# -- canonical text form --------------------------------------------------------


@pytest.mark.parametrize("space_name", SPACE_NAMES)
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**63 - 1))
def test_text_form_round_trips(space_name: str, seed: int) -> None:
    """parse_spec(format_spec(s)) == s and parse_spec(str(s)) == s for random specs of every space."""
    spec = get_space(space_name).sample(np.random.default_rng(seed))
    text = format_spec(spec)
    assert str(spec) == text
    assert text.startswith(f"{space_name}-r{spec.resolution}-")
    parsed = parse_spec(text)
    assert parsed == spec
    assert hash(parsed) == hash(spec)
    assert parse_spec(str(spec)) == spec
    assert format_spec(parsed) == text


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        (compofa_spec(), COMPOFA_LARGEST_224),
        (
            SubnetSpec("compofa", 160, (2,) * 5, (3, 3, 5, 5, 3, 3, 3, 3, 5, 5), (3,) * 10),
            COMPOFA_SMALLEST_160,
        ),
        (MIXED_OFA, MIXED_OFA_TEXT),
        (
            SubnetSpec(
                "compofa-proxyless",
                176,
                (2, 3, 4, 2, 3, 1),
                (3,) * 15,
                (3, 3, 4, 4, 4, 6, 6, 6, 6, 3, 3, 4, 4, 4, 4),
            ),
            "compofa-proxyless-r176-k33e33_k333e444_k3333e6666_k33e33_k333e444_k3e4",
        ),
        (
            SubnetSpec("compofa-ek", 208, (3, 2, 2, 2, 4), (7, 3, 5, 5, 7, 3, 3, 7, 5, 3, 5, 7, 3),
                       (4, 4, 4, 3, 3, 3, 3, 3, 3, 6, 6, 6, 6)),
            "compofa-ek-r208-k735e444_k57e33_k33e33_k75e33_k3573e6666",
        ),
    ],
)
def test_canonical_text_golden(spec: SubnetSpec, text: str) -> None:
    """Pins the exact canonical text (the latency-table key) of a few specs, both ways."""
    assert format_spec(spec) == text
    assert str(spec) == text
    assert parse_spec(text) == spec


def test_largest_compofa_text_matches_space() -> None:
    """The CompOFA space's largest subnet at 224 has the canonical text given in the design notes."""
    assert str(get_space("compofa").largest(224)) == COMPOFA_LARGEST_224
    assert str(get_space("compofa").smallest(160)) == COMPOFA_SMALLEST_160


def test_parse_strips_surrounding_whitespace() -> None:
    """A spec pasted with surrounding whitespace or a trailing newline still reads."""
    assert parse_spec(f"  {COMPOFA_LARGEST_224}\n") == compofa_spec()


def test_parse_error_example_is_a_valid_spec() -> None:
    """The example shown in parse_spec's error message is itself a valid CompOFA spec."""
    with pytest.raises(SpecError) as caught:
        parse_spec("garbage")
    example = str(caught.value).rsplit("e.g. ", 1)[1]
    spec = parse_spec(example)
    assert spec.space == "compofa" and spec.depths == (3, 2, 4, 3, 2)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "compofa",
        "compofa-r224",
        "compofa-r224-",
        "compofa-224-k3333e6666_k5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "compofa-rabc-k3333e6666_k5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "compofa-r-224-k3333e6666_k5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "COMPOFA-r224-k3333e6666_k5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "compofa-r224-K3333E6666_k5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "compofa-r224-k3333e6666_k5555e6666_k3333e6666_k3333e6666_k5555e6666_",
        "compofa-r224-k3333e6666__k5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "compofa-r224-k3333e666_k5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "compofa-r224-e6666k3333_k5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "compofa-r224-k3333_k5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "compofa-r224-ke_k5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "compofa-r224-k3333e6666 k5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "compofa-r224-k3333e6666\nk5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "compofa-r224-k3333e6666_k5555e6666_k3333e6666_k3333e6666",
        "compofa-r224-k3333e6666_k5555e6666_k3333e6666_k3333e6666_k5555e6666_k5555e6666",
        "compofa-r224-k0000e6666_k5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "compofa-r224-k7777e6666_k5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "compofa-r224-k3333e4444_k5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "compofa-r225-k3333e6666_k5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "compofa-r99999999999999999999-k3333e6666_k5555e6666_k3333e6666_k3333e6666_k5555e6666",
        "{'ks': [3]}",
    ],
)
def test_malformed_text_raises_one_line_spec_error(text: str) -> None:
    """Malformed or out-of-space text gives a SpecError whose message is a single line."""
    with pytest.raises(SpecError) as caught:
        parse_spec(text)
    assert_one_line(caught.value)


def test_stage_count_mismatch_names_the_stage() -> None:
    """A stage with unequal numbers of kernel and expand digits is named by position."""
    with pytest.raises(SpecError, match=r"stage 1 'k555e66' .* 3 kernels but 2 expand ratios"):
        parse_spec("compofa-r224-k3333e6666_k555e66_k3333e6666_k3333e6666_k5555e6666")


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet="compfayxlesk-r0123456789_ \n", max_size=60))
def test_parse_never_fails_untyped(text: str) -> None:
    """Arbitrary text either parses to a spec that formats back canonically, or raises a one-line CompofaError."""
    try:
        spec = parse_spec(text)
    except CompofaError as error:
        assert_one_line(error)
    else:
        assert parse_spec(format_spec(spec)) == spec


# -- dict form ------------------------------------------------------------------


@pytest.mark.parametrize("space_name", SPACE_NAMES)
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**63 - 1))
def test_to_dict_round_trips_through_json(space_name: str, seed: int) -> None:
    """to_dict is plain JSON (Python ints) and from_dict(to_dict(s)) == s."""
    spec = get_space(space_name).sample(np.random.default_rng(seed))
    data = json.loads(json.dumps(spec.to_dict()))
    assert SubnetSpec.from_dict(data) == spec


def test_to_dict_golden() -> None:
    """Pins the field names and values of the dict form."""
    assert MIXED_OFA.to_dict() == {
        "space": "ofa-mbv3",
        "resolution": 192,
        "depths": [2, 3, 4, 2, 3],
        "kernel_sizes": [3, 5, 7, 5, 3, 3, 5, 7, 7, 7, 7, 7, 3, 5],
        "expand_ratios": [4, 6, 6, 4, 3, 3, 4, 6, 6, 6, 6, 4, 3, 6],
    }


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda d: d.pop("depths"), ["missing", "depths"]),
        (lambda d: d.update(width=1.2), ["unknown", "width"]),
    ],
)
def test_from_dict_refuses_wrong_keys(mutate: Any, words: list[str]) -> None:
    """from_dict needs exactly the five fields, and says which are missing or unknown."""
    data = MIXED_OFA.to_dict()
    mutate(data)
    with pytest.raises(SpecError) as caught:
        SubnetSpec.from_dict(data)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize("value", [None, 4])
def test_from_dict_non_sequence_field_raises_spec_error(value: Any) -> None:
    """A dict whose 'depths' is not a list is a SpecError naming SubnetSpec.depths (as the constructor gives)."""
    data = dict(MIXED_OFA.to_dict(), depths=value)
    with pytest.raises(SpecError, match=r"SubnetSpec\.depths"):
        SubnetSpec.from_dict(data)


# -- OFA dict form --------------------------------------------------------------


@pytest.mark.parametrize("space_name", SPACE_NAMES)
@settings(max_examples=50, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**63 - 1))
def test_ofa_dict_round_trips(space_name: str, seed: int) -> None:
    """from_ofa_dict(to_ofa_dict(s)) == s for random specs of every space, with one entry per supernet block."""
    space = get_space(space_name)
    spec = space.sample(np.random.default_rng(seed))
    ofa = json.loads(json.dumps(spec.to_ofa_dict()))
    assert set(ofa) == {"ks", "e", "d", "r"}
    assert len(ofa["ks"]) == len(ofa["e"]) == space.family.num_blocks
    assert ofa["d"] == list(spec.depths)
    assert ofa["r"] == [spec.resolution]
    assert SubnetSpec.from_ofa_dict(ofa, space_name) == spec


@pytest.mark.parametrize(
    ("space_name", "blocks", "stages"),
    [("ofa-mbv3", 20, 5), ("compofa", 20, 5), ("compofa-ek", 20, 5), ("ofa-proxyless", 21, 6), ("compofa-proxyless", 21, 6)],
)
def test_ofa_dict_sizes(space_name: str, blocks: int, stages: int) -> None:
    """MobileNetV3 dicts have 20 blocks / 5 depths; ProxylessNAS dicts 21 blocks / 6 depths."""
    ofa = get_space(space_name).largest().to_ofa_dict()
    assert len(ofa["ks"]) == blocks
    assert len(ofa["e"]) == blocks
    assert len(ofa["d"]) == stages


def test_ofa_dict_golden() -> None:
    """Pins the exact OFA dict of a mixed spec: left-out blocks repeat the stage's last active block."""
    assert MIXED_OFA.to_ofa_dict() == MIXED_OFA_DICT
    assert SubnetSpec.from_ofa_dict(MIXED_OFA_DICT, "ofa-mbv3") == MIXED_OFA


def test_ofa_dict_golden_proxyless() -> None:
    """Pins the OFA dict of a CompOFA ProxylessNAS spec: 21 blocks, the 6th depth is the single last block."""
    spec = parse_spec("compofa-proxyless-r160-k33e33_k333e444_k3333e6666_k33e33_k333e444_k3e6")
    assert spec.to_ofa_dict() == {
        "ks": [3] * 21,
        "e": [3] * 4 + [4] * 4 + [6] * 4 + [3] * 4 + [4] * 4 + [6],
        "d": [2, 3, 4, 2, 3, 1],
        "r": [160],
    }


def test_ofa_dict_inactive_blocks_are_ignored() -> None:
    """Blocks beyond a stage's depth do not exist in the subnet: any values there read as the same spec."""
    ofa = dict(MIXED_OFA_DICT)
    ofa["ks"] = list(ofa["ks"])
    ofa["e"] = list(ofa["e"])
    ofa["ks"][2], ofa["ks"][3] = 7, 3  # stage 0 has depth 2: blocks 2, 3 are inactive
    ofa["e"][19] = 3  # stage 4 has depth 3: block 19 is inactive
    assert SubnetSpec.from_ofa_dict(ofa, "ofa-mbv3") == MIXED_OFA


def test_ofa_dict_proxyless_five_depth_form() -> None:
    """A ProxylessNAS dict may leave out the depth of the single-block last stage (5 depths)."""
    spec = get_space("ofa-proxyless").sample(np.random.default_rng(7))
    ofa = spec.to_ofa_dict()
    assert len(ofa["d"]) == 6 and ofa["d"][-1] == 1
    five = dict(ofa, d=ofa["d"][:5])
    assert SubnetSpec.from_ofa_dict(five, "ofa-proxyless") == spec
    assert SubnetSpec.from_ofa_dict(five, "ofa-proxyless").depths[-1] == 1


def test_ofa_dict_proxyless_last_depth_is_capped() -> None:
    """OFA's ProxylessNAS sampler draws a depth for the last stage too; as in OFA it is capped to its 1 block."""
    spec = get_space("compofa-proxyless").largest(224)
    ofa = dict(spec.to_ofa_dict(), d=[4, 4, 4, 4, 4, 3])
    assert SubnetSpec.from_ofa_dict(ofa, "compofa-proxyless") == spec


def test_ofa_dict_resolution_sources() -> None:
    """'r' may be a one-element list or an int; without it the resolution argument is used, else it is an error."""
    ofa = dict(MIXED_OFA_DICT)
    assert SubnetSpec.from_ofa_dict(dict(ofa, r=192), "ofa-mbv3") == MIXED_OFA
    without_r = {key: value for key, value in ofa.items() if key != "r"}
    assert SubnetSpec.from_ofa_dict(without_r, "ofa-mbv3", resolution=160).resolution == 160
    with pytest.raises(SpecError, match="'r'"):
        SubnetSpec.from_ofa_dict(without_r, "ofa-mbv3")
    with pytest.raises(SpecError, match="'r'"):
        SubnetSpec.from_ofa_dict(dict(ofa, r=[160, 224]), "ofa-mbv3")
    with pytest.raises(SpecError):
        SubnetSpec.from_ofa_dict(dict(ofa, r=["224"]), "ofa-mbv3")


def test_ofa_dict_accepts_null_wid() -> None:
    """OFA's dicts may carry an unused 'wid' slot; null is accepted."""
    assert SubnetSpec.from_ofa_dict(dict(MIXED_OFA_DICT, wid=None), "ofa-mbv3") == MIXED_OFA


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"wid": [1, 1, 1, 1, 1]}, ["wid"]),
        ({"wid": 0}, ["wid"]),
        ({"width": 1.2}, ["unknown", "width"]),
        ({"ks": [3] * 19}, ["'ks'", "19", "20"]),
        ({"ks": [3] * 21}, ["'ks'", "21", "20"]),
        ({"e": [6] * 19}, ["'e'", "19", "20"]),
        ({"d": [2, 3, 4, 2]}, ["'d'", "4", "5"]),
        ({"d": [2, 3, 4, 2, 3, 4]}, ["'d'", "6", "5"]),
        ({"d": [2, 3, 0, 2, 3]}, ["'d'"]),
        ({"d": [2, 3, 4.0, 2, 3]}, ["'d'"]),
        ({"ks": "3" * 20}, ["'ks'", "list"]),
        ({"ks": None}, ["'ks'"]),
    ],
)
def test_ofa_dict_rejections(changes: dict[str, Any], words: list[str]) -> None:
    """Unknown keys, non-null 'wid', wrong lengths and bad depths are SpecErrors that say what is wrong."""
    with pytest.raises(SpecError) as caught:
        SubnetSpec.from_ofa_dict(dict(MIXED_OFA_DICT, **changes), "ofa-mbv3")
    for word in words:
        assert word in str(caught.value), str(caught.value)
    assert_one_line(caught.value)


_JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 8),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=3),
    st.lists(st.integers(-2, 8), max_size=22),
    st.lists(st.one_of(st.integers(-2, 8), st.none(), st.text(max_size=1), st.lists(st.integers(0, 7), max_size=2)), max_size=22),
)


@settings(max_examples=100, deadline=None)
@given(
    data=st.dictionaries(st.sampled_from(["ks", "e", "d", "r", "wid", "x"]), _JSON_VALUES),
    space_name=st.sampled_from(["compofa", "ofa-mbv3", "ofa-proxyless"]),
)
def test_ofa_dict_fuzz_raises_only_spec_errors(data: dict[str, Any], space_name: str) -> None:
    """Any JSON-like OFA dict either reads as a member of the space or raises a one-line SpecError."""
    try:
        spec = SubnetSpec.from_ofa_dict(data, space_name, resolution=224)
    except SpecError as error:
        assert_one_line(error)
    else:
        assert get_space(space_name).contains(spec)


@pytest.mark.parametrize("key", ["ks", "e", "d"])
def test_ofa_dict_missing_key(key: str) -> None:
    """Each of ks, e and d is required."""
    data = {k: v for k, v in MIXED_OFA_DICT.items() if k != key}
    with pytest.raises(SpecError, match=repr(key)):
        SubnetSpec.from_ofa_dict(data, "ofa-mbv3")


def test_ofa_dict_values_are_checked_against_the_space() -> None:
    """An OFA dict read into a space it does not fit (k7 in CompOFA) is refused naming the field."""
    ofa = compofa_spec().to_ofa_dict()
    ofa["ks"][5] = 7
    with pytest.raises(SpecError, match=r"kernel size 7 \(kernel_sizes\[5\]\)"):
        SubnetSpec.from_ofa_dict(ofa, "compofa")
    with pytest.raises(SpecError, match=r"expand ratio 4 \(expand_ratios\[0\]\)"):
        SubnetSpec.from_ofa_dict(MIXED_OFA_DICT, "compofa")


def test_ofa_dict_proxyless_wrong_block_count() -> None:
    """A 20-block MobileNetV3 dict is refused by a ProxylessNAS space (21 blocks)."""
    with pytest.raises(SpecError, match="21 blocks"):
        SubnetSpec.from_ofa_dict(MIXED_OFA_DICT, "ofa-proxyless")


# -- read_spec --------------------------------------------------------------------


def test_read_spec_canonical_text() -> None:
    """read_spec reads the canonical text form, with or without a matching space."""
    assert read_spec(COMPOFA_LARGEST_224) == compofa_spec()
    assert read_spec(COMPOFA_LARGEST_224, space="compofa") == compofa_spec()
    assert read_spec(f" {MIXED_OFA_TEXT} ") == MIXED_OFA


def test_read_spec_resolution_override() -> None:
    """A given resolution replaces the spec's own, and must be one the space allows."""
    assert read_spec(COMPOFA_LARGEST_224, resolution=160) == compofa_spec(resolution=160)
    with pytest.raises(SpecError, match=r"has no resolution 230"):
        read_spec(COMPOFA_LARGEST_224, resolution=230)


def test_read_spec_ofa_json_text() -> None:
    """read_spec reads an OFA dict given as JSON text, in the named space (default compofa)."""
    assert read_spec(json.dumps(MIXED_OFA_DICT), space="ofa-mbv3") == MIXED_OFA
    compofa = compofa_spec()
    assert read_spec(json.dumps(compofa.to_ofa_dict())) == compofa
    without_r = {k: v for k, v in compofa.to_ofa_dict().items() if k != "r"}
    assert read_spec(json.dumps(without_r)).resolution == 224
    assert read_spec(json.dumps(without_r), resolution=176).resolution == 176


def test_read_spec_dict_form_json() -> None:
    """read_spec also reads the to_dict form as JSON."""
    assert read_spec(json.dumps(MIXED_OFA.to_dict())) == MIXED_OFA


def test_read_spec_files(tmp_path: Path) -> None:
    """`@file` may hold an OFA dict, a JSON string or the bare canonical text."""
    ofa_file = tmp_path / "subnet.json"
    ofa_file.write_text(json.dumps(MIXED_OFA_DICT, indent=2) + "\n", encoding="utf-8")
    assert read_spec(f"@{ofa_file}", space="ofa-mbv3") == MIXED_OFA

    string_file = tmp_path / "string.json"
    string_file.write_text(json.dumps(COMPOFA_LARGEST_224), encoding="utf-8")
    assert read_spec(f"@{string_file}") == compofa_spec()

    text_file = tmp_path / "spec.txt"
    text_file.write_text(COMPOFA_SMALLEST_160 + "\n", encoding="utf-8")
    assert read_spec(f"@{text_file}") == parse_spec(COMPOFA_SMALLEST_160)


def test_read_spec_refuses_other_space() -> None:
    """A spec of one space is refused when another is asked for, naming both."""
    with pytest.raises(SpecError) as caught:
        read_spec(COMPOFA_LARGEST_224, space="compofa-ek")
    assert "'compofa'" in str(caught.value) and "'compofa-ek'" in str(caught.value)
    with pytest.raises(SpecError):
        read_spec(MIXED_OFA_TEXT, space="ofa-proxyless")


def test_read_spec_file_errors(tmp_path: Path) -> None:
    """A missing, empty or malformed spec file is a one-line SpecError naming the file."""
    missing = tmp_path / "missing.json"
    with pytest.raises(SpecError) as caught:
        read_spec(f"@{missing}")
    assert "missing.json" in str(caught.value)
    assert_one_line(caught.value)

    empty = tmp_path / "empty.json"
    empty.write_text("  \n", encoding="utf-8")
    with pytest.raises(SpecError, match="empty"):
        read_spec(f"@{empty}")

    broken = tmp_path / "broken.json"
    broken.write_text('{"ks": [3, 3', encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        read_spec(f"@{broken}")
    assert_one_line(caught.value)

    with pytest.raises(SpecError):
        read_spec(f"@{tmp_path}")  # a directory, not a file


def test_read_spec_binary_file(tmp_path: Path) -> None:
    """`@file` naming a binary file (e.g. an .onnx given by mistake) is a SpecError naming the file."""
    binary = tmp_path / "model.onnx"
    binary.write_bytes(b"\xff\xfe\x00\x08onnx")
    with pytest.raises(SpecError, match="model.onnx"):
        read_spec(f"@{binary}")


@pytest.mark.parametrize("text", ["[3, 5, 7]", '{"ks": [3], "e": [3]', "{not json}"])
def test_read_spec_bad_json(text: str) -> None:
    """Text that is not a usable JSON dict is a one-line SpecError."""
    with pytest.raises(SpecError) as caught:
        read_spec(text)
    assert_one_line(caught.value)


def test_unknown_space_error_lists_known_spaces() -> None:
    """read_spec of an OFA dict for an unknown space names the known spaces."""
    with pytest.raises(UnknownSpaceError) as caught:
        read_spec(json.dumps(MIXED_OFA_DICT), space="mbv3")
    for name in BUILTIN_SPACES:
        assert name in str(caught.value)


def test_ofa_dict_depth_beyond_a_stage_is_refused() -> None:
    """Only a single-block stage has its OFA depth capped; elsewhere too deep a stage is an error."""
    data = get_space("compofa").largest(224).to_ofa_dict()
    data["d"][2] = 5
    with pytest.raises(SpecError, match="exceeds the 4 blocks"):
        SubnetSpec.from_ofa_dict(data, "compofa")
