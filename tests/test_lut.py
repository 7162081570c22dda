"""Tests of the `lut` backend: the OFA LUT format, layer keys, sums and the device.

Known values are those of docs/architecture.md ("Lookup tables (OFA's format)"),
computed from the shipped Samsung Note10 tables; the key grammar is
checked against the reference `ofa` package's MBv3LatencyTable and
ProxylessNASLatencyTable.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path
import numpy as np
import pytest

from compofa.devices import DeviceOptionError, Settings, open_device
from compofa.lut import (
    LayerTable,
    LookupTable,
    LutEntry,
    LutError,
    MissingLayerError,
    dump_layer_table,
    layer_keys,
    parse_layer_table,
    read_layer_table,
    write_lut,
)
from compofa.errors import CompofaError
from compofa.space import get_space
from compofa.space.plan import plan_subnet
from compofa.sources.subnet import SubnetSource
from conftest import sample_specs

NOTE10_RESOLUTIONS = tuple(range(160, 225, 4))

#: The sha256 list of /work/shared/data/PROVENANCE.md (gatech-sysml/CompOFA at
#: 6b53946157b8ee16118187872ed19e45dd9692c4); the shipped files are unmodified copies.
PROVENANCE_SHA256 = {
    "note10_lut/160_lookup_table.yaml": "a2671a45e9400542679ed03de946b45d6a35010f9ab21834af3e7ba8341d36d1",
    "note10_lut/164_lookup_table.yaml": "146c34f116ea2dd6b0a421e3b9b3b1a106ba2817c928e7c66a0b58703946f7ea",
    "note10_lut/168_lookup_table.yaml": "08c833755d446cb65a6224e0fed7ef71be29709bfd2aa12009d4b645e37b4ce4",
    "note10_lut/172_lookup_table.yaml": "dead1205668fec983c8d7d8445d2dc3afe30a617917218becc90a8b3b8e72a57",
    "note10_lut/176_lookup_table.yaml": "34223ae037d5719a5f33261bdfd9341f590a2999edf520f174309605dc06307c",
    "note10_lut/180_lookup_table.yaml": "a4c43390a41c6affec5c0d2f927cd671a7d99341dbcb0178876794d9683d8ef6",
    "note10_lut/184_lookup_table.yaml": "94e0b62a291cc8d77a980478edc96d4ab4b6fe9b0209bc87d296bd2812ccd3d3",
    "note10_lut/188_lookup_table.yaml": "2f33a119bf5d4218fd390b785d3d03fd52b3522c77f58b751ff38f01a249fbd0",
    "note10_lut/192_lookup_table.yaml": "0ff5ca0649e56ad34a42d6a8a6f20adb5121c8d12d135299397b310472db79e2",
    "note10_lut/196_lookup_table.yaml": "80217a43dc40c8ce45b54c4cd60d58a79ee091015035f0d4388a09c192074bab",
    "note10_lut/200_lookup_table.yaml": "4bb6703197777ac01483cbe6340979dc8090ed6471c3f47d4e08749e523d4c53",
    "note10_lut/204_lookup_table.yaml": "129a4ee3f46f2b732f93c43dc04540c864adcc68e5f495ab0b183dc748fead43",
    "note10_lut/208_lookup_table.yaml": "41aa63af766a8298354e6aa5ae69d512ac68656a6e7d0a4fa5dc725c8d438633",
    "note10_lut/212_lookup_table.yaml": "cacb0d9f262e1e029c39a639acb856b16d16cbd7db365056ee7bc55bbb41d417",
    "note10_lut/216_lookup_table.yaml": "bbb64c0be7b420139d92a79757923e7b4c5d8d61730a90995d1ab51f6f718939",
    "note10_lut/220_lookup_table.yaml": "75b0954b2fa678b5b2422b3edbc51983609a9a441d77fe4bb68888da8bb8984e",
    "note10_lut/224_lookup_table.yaml": "c13a9bcb3f4becae844bce4897129c4e42975984c1029cbd5acb48c970136530",
    "ofa_acc_predictor/acc_predictor.pth": "48685122a3540636b06699af66cd816456b25f29b69563e2fda9bed4018eeba0",
}


@pytest.fixture(scope="module")
def note10() -> LookupTable:
    return LookupTable.shipped("note10")


def entry(mean: float, count: int = 10, std: float = 0.0) -> LutEntry:
    return LutEntry(count, mean, std)


def without_key(table: LookupTable, resolution: int, key: str) -> LookupTable:
    """`table` with one entry removed from the table of `resolution`."""
    tables = [
        LayerTable(t.resolution, {k: v for k, v in t.entries.items() if k != key}) if t.resolution == resolution else t
        for t in table.tables()
    ]
    return LookupTable(tables, "trimmed")


def assert_one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


# -- the shipped data ------------------------------------------------------------------


def test_shipped_files_are_the_provenance_files() -> None:
    data = resources.files("compofa.data")
    for name, digest in PROVENANCE_SHA256.items():
        assert hashlib.sha256(data.joinpath(name).read_bytes()).hexdigest() == digest, name


def test_notice_lists_the_provenance_digests_and_license_ships() -> None:
    data = resources.files("compofa.data")
    notice = data.joinpath("NOTICE").read_text(encoding="utf-8")
    listed = dict(
        (path, digest) for digest, path in re.findall(r"^([0-9a-f]{64})  (\S+)$", notice, flags=re.MULTILINE)
    )
    assert listed == PROVENANCE_SHA256
    assert "gatech-sysml/CompOFA" in notice and "6b53946157b8ee16118187872ed19e45dd9692c4" in notice
    assert "Apache License" in data.joinpath("LICENSE-CompOFA-Apache-2.0.txt").read_text(encoding="utf-8")


def test_note10_has_the_17_resolutions_of_w12(note10: LookupTable) -> None:
    assert note10.resolutions == NOTE10_RESOLUTIONS
    assert note10.stem_channels == (24,)
    assert note10.layout == "mobilenetv3"


# -- known values (docs/architecture.md) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "extreme", "resolution", "expected_ms"),
    [
        ("compofa", "smallest", 160, 10.269),
        ("compofa", "largest", 224, 60.496),
        ("ofa-mbv3", "largest", 224, 92.398),  # k7, e6, d4
    ],
)
def test_known_note10_latencies(
    note10: LookupTable, space: str, extreme: str, resolution: int, expected_ms: float
) -> None:
    spec = getattr(get_space(space), extreme)(resolution)
    assert note10.predict(spec) == pytest.approx(expected_ms, abs=1e-3)
    assert note10.predict(spec, width=1.2) == note10.predict(spec)


def test_layer_keys_of_the_smallest_compofa_subnet(note10: LookupTable) -> None:
    """The documented key examples, and idskip 0 exactly at each stage's first block."""
    keys = note10.layer_keys(get_space("compofa").smallest(224))
    assert keys[0] == "Conv-input:224x224x3-output:112x112x24"
    assert keys[1] == "expanded_conv-input:112x112x24-output:112x112x24-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0"
    assert keys[2] == "expanded_conv-input:112x112x24-output:56x56x32-expand:72-kernel:3-stride:2-idskip:0-se:0-hs:0"
    assert keys[-4:] == (
        "Conv_1-input:7x7x192-output:7x7x1152",
        "AvgPool2D-input:7x7x1152-output:1x1x1152",
        "Conv_2-input:1x1x1152-output:1x1x1536",
        "Logits-input:1x1x1536-output:1000",
    )
    assert [key.split("-idskip:")[1][0] for key in keys[2:-4]] == list("0101010101")
    assert len(keys) == 1 + 1 + 10 + 4


def test_every_compofa_subnet_at_every_note10_resolution_is_covered(note10: LookupTable) -> None:
    specs = list(get_space("compofa").enumerate(NOTE10_RESOLUTIONS))
    assert len(specs) == 243 * 17
    sums = []
    for spec in specs:
        table = note10.layer_table(spec.resolution)
        keys = note10.layer_keys(spec)
        missing = [key for key in keys if key not in table]
        assert not missing, f"{spec}: {missing}"
        sums.append(sum(table.entries[key].mean for key in keys))
    # The cached per-stage sums (batch path) agree with summing every layer.
    np.testing.assert_allclose(note10.predict_many(specs), sums, rtol=0, atol=1e-9)
    assert [note10.predict(spec) for spec in specs[:50]] == list(note10.predict_many(specs[:50]))


def test_predict_many_on_random_ofa_subnets(note10: LookupTable) -> None:
    rng = np.random.default_rng(0)
    specs = get_space("ofa-mbv3").sample_many(rng, 200, NOTE10_RESOLUTIONS)
    expected = [sum(note10.layer_table(s.resolution).entries[k].mean for k in note10.layer_keys(s)) for s in specs]
    np.testing.assert_allclose(note10.predict_many(specs), expected, rtol=0, atol=1e-9)
    assert note10.predict_many([]).shape == (0,)


# -- parity with the reference `ofa` LUT code ------------------------------------------------


class RecordingLut(dict):  # type: ignore[type-arg]
    """Stands for a reference table's `lut` dict: records the keys it is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def __getitem__(self, key: str) -> dict[str, float]:
        self.asked.append(key)
        return {"mean": 0.0}


@pytest.mark.parametrize(
    ("space", "width"), [("ofa-mbv3", 1.2), ("ofa-mbv3", 1.0), ("ofa-proxyless", 1.3), ("ofa-proxyless", 1.0)]
)
def test_layer_keys_match_the_reference_tables(space: str, width: float) -> None:
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3, OFAProxylessNASNets
    from ofa.nas.efficiency_predictor.latency_lookup_table import MBv3LatencyTable, ProxylessNASLatencyTable

    family = get_space(space).family.name
    network_cls, table_cls = {
        "mobilenetv3": (OFAMobileNetV3, MBv3LatencyTable),
        "proxylessnas": (OFAProxylessNASNets, ProxylessNASLatencyTable),
    }[family]
    network = network_cls(width_mult=width, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    reference = table_cls.__new__(table_cls)  # its __init__ downloads a table
    for spec in sample_specs(space, 6, seed=1):
        ofa = spec.to_ofa_dict()
        network.set_active_subnet(ks=ofa["ks"], e=ofa["e"], d=ofa["d"])
        reference.lut = RecordingLut()
        reference.predict_network_latency_given_config(network.get_active_net_config(), spec.resolution)
        assert tuple(reference.lut.asked) == layer_keys(plan_subnet(spec, width)), str(spec)


def test_proxylessnas_keys_use_the_expand_ratio() -> None:
    keys = layer_keys(plan_subnet(get_space("compofa-proxyless").smallest(224), 1.3))
    assert keys[0] == "Conv-input:224x224x3-output:112x112x40"
    assert keys[1] == "expanded_conv-input:112x112x40-output:112x112x24-expand:1-kernel:3-stride:1-idskip:0"
    assert keys[2] == "expanded_conv-input:112x112x24-output:56x56x32-expand:3-kernel:3-stride:2-idskip:0"
    assert keys[-2:] == ("Conv_1-input:7x7x416-output:7x7x1664", "Logits-input:7x7x1664-output:1000")


# -- refusals ---------------------------------------------------------------------------


def test_missing_key_is_named_with_its_resolution(note10: LookupTable) -> None:
    spec = get_space("compofa").largest(192)
    key = note10.layer_keys(spec)[5]
    with pytest.raises(LutError) as error:
        without_key(note10, 192, key).predict(spec)
    message = assert_one_line(error)
    assert key in message and "resolution 192" in message and str(spec) in message


def test_lut_of_another_width_is_refused_up_front(note10: LookupTable) -> None:
    with pytest.raises(LutError) as error:
        note10.predictor("compofa", 1.0)
    message = assert_one_line(error)
    assert "width 1.2" in message and "width 1.0" in message and "24" in message and "16" in message
    with pytest.raises(LutError, match="width 1.0"):
        note10.predict(get_space("compofa").smallest(160), width=1.0)


def test_lut_of_another_family_is_refused(note10: LookupTable) -> None:
    with pytest.raises(LutError, match="cannot estimate proxylessnas"):
        note10.predictor("compofa-proxyless", 1.3)
    predictor = note10.predictor("compofa")
    with pytest.raises(LutError, match="proxylessnas network"):
        predictor.predict(get_space("compofa-proxyless").smallest(160))


def test_unknown_resolution_lists_the_available_ones(note10: LookupTable) -> None:
    with pytest.raises(LutError) as error:
        note10.predict(get_space("ofa-mbv3").smallest(128))
    message = assert_one_line(error)
    assert "resolution 128" in message and "it has 160, 164, 168" in message and "220, 224" in message


# -- reading and writing ----------------------------------------------------------------


def test_write_read_round_trip_is_byte_identical(note10: LookupTable, tmp_path: Path) -> None:
    paths = write_lut(note10, tmp_path / "copy")
    assert [path.name for path in paths] == [f"{r}_lookup_table.yaml" for r in NOTE10_RESOLUTIONS]
    data = resources.files("compofa.data")
    for path in paths:
        assert path.read_bytes() == data.joinpath(f"note10_lut/{path.name}").read_bytes()
    again = LookupTable.read(tmp_path / "copy")
    assert again.sha256 == note10.sha256
    assert again.tables() == note10.tables()
    assert again.name == str((tmp_path / "copy").resolve())


def test_in_memory_table_round_trip(tmp_path: Path) -> None:
    table = LayerTable(
        8,
        {"Conv-input:8x8x3-output:4x4x24": entry(0.125, 3, 0.5), "Logits-input:1x1x16-output:10": entry(1e-7, 1, 0)},
    )
    (path,) = write_lut([table], tmp_path)
    read = read_layer_table(path)
    assert read == table and read.sha256 == table.sha256
    assert read.entries["Logits-input:1x1x16-output:10"] == LutEntry(1, 1e-7, 0.0)
    assert LookupTable.read(path).sha256 == LookupTable([table], "memory").sha256


def test_single_file_takes_its_resolution_from_the_name_or_the_stem(note10: LookupTable, tmp_path: Path) -> None:
    text = dump_layer_table(note10.layer_table(176))
    (tmp_path / "176_lookup_table.yaml").write_bytes(text)
    (tmp_path / "phone.yaml").write_bytes(text)
    assert LookupTable.read(tmp_path / "176_lookup_table.yaml").resolutions == (176,)
    assert LookupTable.read(tmp_path / "phone.yaml").resolutions == (176,)
    (tmp_path / "180_lookup_table.yaml").write_bytes(text)
    with pytest.raises(LutError, match="176x176 input, not 180"):
        read_layer_table(tmp_path / "180_lookup_table.yaml")


STEM = "Conv-input:8x8x3-output:4x4x24"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Conv-input:8x8x3: [1, 2", "not valid YAML at line"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("", "got nothing"),
        ("{}", "no entries"),
        (f"{STEM}: 3\n", "must be a mapping"),
        (f"{STEM}: {{count: 1, mean: 0.5}}\n", "lacks std"),
        (f"{STEM}: {{count: 1, mean: 0.5, std: 0, median: 1}}\n", "unknown fields median"),
        (f"{STEM}: {{count: 0, mean: 0.5, std: 0}}\n", "count must be a positive integer"),
        (f"{STEM}: {{count: 1.5, mean: 0.5, std: 0}}\n", "count must be a positive integer"),
        (f"{STEM}: {{count: 1, mean: fast, std: 0}}\n", "mean must be a finite number"),
        (f"{STEM}: {{count: 1, mean: -1.0, std: 0}}\n", "mean must be a finite number"),
        (f"{STEM}: {{count: 1, mean: .nan, std: 0}}\n", "mean must be a finite number"),
        (f"{STEM}: {{count: 1, mean: 1.0, std: true}}\n", "std must be a finite number"),
        ("conv 3x3: {count: 1, mean: 1.0, std: 0}\n", "is not an OFA layer key"),
        ("1: {count: 1, mean: 1.0, std: 0}\n", "is not an OFA layer key"),
        ("!!python/object/apply:os.getcwd []\n", "not valid YAML"),
    ],
)
def test_malformed_files_are_one_line_errors_naming_the_file(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "8_lookup_table.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LutError) as error:
        LookupTable.read(path)
    message = assert_one_line(error)
    assert str(path) in message and problem in message
    assert isinstance(error.value, CompofaError)


def test_unreadable_inputs(tmp_path: Path) -> None:
    with pytest.raises(LutError, match="holds no"):
        LookupTable.read(tmp_path)
    with pytest.raises(LutError, match="does not exist"):
        LookupTable.read(tmp_path / "nope.yaml")
    (tmp_path / "phone.yaml").write_text("Logits-input:1x1x16-output:10: {count: 1, mean: 1.0, std: 0}\n")
    with pytest.raises(LutError, match="cannot tell the resolution"):
        LookupTable.read(tmp_path / "phone.yaml")
    with pytest.raises(LutError, match="neither a shipped table"):
        LookupTable.open("note11")
    with pytest.raises(LutError, match="two tables for resolution 8"):
        table = LayerTable(8, {STEM: entry(1.0)})
        LookupTable([table, table], "twice")


def test_entries_built_in_memory_are_checked() -> None:
    with pytest.raises(LutError, match="mean must be a finite number >= 0"):
        LutEntry(1, -0.5, 0.0)
    with pytest.raises(LutError, match="count must be a positive integer"):
        LutEntry(0, 0.5, 0.0)
    with pytest.raises(LutError, match="not an OFA layer key"):
        LayerTable(8, {"stem": entry(1.0)})
    with pytest.raises(LutError, match="8x8 input, not 16"):
        LayerTable(16, {STEM: entry(1.0)})


# -- the device -------------------------------------------------------------------------


def test_device_estimates_what_predict_does(note10: LookupTable) -> None:
    device = open_device("lut:note10", SubnetSource("compofa"))
    assert device.name == "lut" and device.deterministic
    spec = get_space("compofa").largest(224)
    handle = device.prepare(spec)
    assert handle.item == spec
    assert device.time(handle, 3) == [note10.predict(spec)] * 3
    assert device.time(handle, 3)[0] == pytest.approx(60.496, abs=1e-3)
    handle.close()
    assert device.conditions() == {}
    fingerprint = device.fingerprint()
    assert fingerprint["backend"] == "lut" and fingerprint["table"] == "note10"
    assert fingerprint["sha256"] == note10.sha256
    assert fingerprint["width"] == 1.2 and fingerprint["batch"] == 1


def test_device_from_a_path(note10: LookupTable, tmp_path: Path) -> None:
    write_lut([note10.layer_table(192)], tmp_path)
    device = open_device(f"lut:{tmp_path}", SubnetSource("compofa-ek"))
    spec = get_space("compofa-ek").smallest(192)
    assert device.time(device.prepare(spec), 1) == [note10.predict(spec)]
    assert device.fingerprint()["table"] == str(tmp_path.resolve())
    with pytest.raises(LutError, match="it has 192"):
        device.prepare(get_space("compofa-ek").smallest(224))


@pytest.mark.parametrize(
    ("name", "settings", "problem"),
    [
        ("lut", Settings(), "use lut:note10 (the shipped Samsung Note10 tables) or lut:PATH"),
        ("lut:note10", Settings(batch=8), "measured at batch 1, fp32; got batch 8"),
        ("lut:note10", Settings(precision="fp16"), "got batch 1, fp16"),
        ("lut:note10", Settings(options={"provider": "x"}), "only the option source"),
    ],
)
def test_device_option_errors(name: str, settings: Settings, problem: str) -> None:
    with pytest.raises(DeviceOptionError) as error:
        open_device(name, SubnetSource("compofa"), settings)
    assert problem in assert_one_line(error)


def test_device_estimates_subnets_only() -> None:
    """A single layer (`lut build --device lut:...`) is no subnet of a space: refused in one line."""
    from compofa.sources.layers import LayerSource

    with pytest.raises(DeviceOptionError) as error:
        open_device("lut:note10", LayerSource(get_space("compofa").family, 1.2))
    assert "estimates subnets of a design space" in assert_one_line(error)


def test_one_estimate_for_one_subnet_and_for_arrays(note10: LookupTable) -> None:
    """`predict`, `predict_many` and the per-slot arrays search hands in give the very same floats."""
    from compofa.search.arrays import ArchBatch

    specs = get_space("ofa-mbv3").sample_many(np.random.default_rng(3), 300, list(NOTE10_RESOLUTIONS))
    predictor = note10.predictor("ofa-mbv3")
    batch = ArchBatch.from_specs(specs)
    arrays = predictor.predict_arrays(batch.resolution, batch.kernel, batch.expand)
    assert list(arrays) == list(predictor.predict_many(specs)) == [predictor.predict(spec) for spec in specs]


def test_a_missing_layer_is_named_with_the_subnet_that_needs_it(note10: LookupTable) -> None:
    spec = get_space("compofa").smallest(192)
    key = note10.layer_keys(spec)[3]
    table = note10.layer_table(192)
    partial = LookupTable([LayerTable(192, {k: v for k, v in table.entries.items() if k != key})], "partial")
    with pytest.raises(MissingLayerError) as error:
        partial.predict_many([get_space("compofa").largest(192), spec])
    assert (error.value.key, error.value.resolution, error.value.row) == (key, 192, 1)
    assert f"needed by {spec}" in assert_one_line(error)


def test_device_refuses_a_supernet_the_table_does_not_describe() -> None:
    with pytest.raises(LutError, match=r"width 1\.2 .* width 1\.0"):
        open_device("lut:note10", SubnetSource("compofa", width=1.0))
    with pytest.raises(LutError, match="neither a shipped table"):
        open_device("lut:/no/such/table", SubnetSource("compofa"))


def test_the_fast_reader_agrees_with_pyyaml_and_leaves_other_layouts_to_it() -> None:
    """Tables in `yaml.safe_dump`'s layout are read without PyYAML; the same mapping, value for value and type
    for type. Any other layout (a comment, flow style, an integer mean, quoted keys) is not recognised and
    goes to PyYAML."""
    import yaml

    from compofa.lut.format import _load_yaml, _read_entry_blocks

    import compofa

    shipped = sorted((Path(compofa.__file__).parent / "data" / "note10_lut").glob("*_lookup_table.yaml"))
    assert len(shipped) == 17
    for path in shipped:
        text = path.read_text()
        fast = _read_entry_blocks(text)
        assert fast is not None and fast == yaml.safe_load(text)
        assert {type(v) for entry in fast.values() for v in entry.values()} == {int, float}
    plain = "Conv-input:160x160x3-output:80x80x24:\n  count: 3\n  mean: 0.5\n  std: 0.01\n"
    assert _read_entry_blocks(plain) == {"Conv-input:160x160x3-output:80x80x24": {"count": 3, "mean": 0.5,
                                                                                    "std": 0.01}}
    others = [
        "# measured on a phone\n" + plain,
        "Conv-input:160x160x3-output:80x80x24: {count: 3, mean: 0.5, std: 0.01}\n",
        plain.replace("mean: 0.5", "mean: 1"),
        plain.replace("count: 3", "count: 012"),  # octal to PyYAML
        plain.replace("std: 0.01", "std: 1e-05"),  # a string to PyYAML: refused as a value later
        "'" + plain.replace(":\n", "':\n", 1),
    ]
    for text in others:
        assert _read_entry_blocks(text) is None
        assert _load_yaml(text, "t") == yaml.safe_load(text)
