"""Android phones over adb (`compofa.remote.adb`): URLs, benchmark_model's output, rounds on a phone, refusals.

No phone is attached to the machines these tests run on: `fake_adb.py` stands in for adb and the phones behind
it (their sysfs, getprop, taskset, and LiteRT's benchmark_model, which really runs each model with
ai_edge_litert's interpreter and prints the tool's output). The last test runs against a real phone when
`adb devices` lists one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_adb import FakePhones

from compofa.devices.base import Located, Settings
from compofa.graphs.seeded import SeededWeights
from compofa.graphs.tflite_cache import TfliteExporter
from compofa.profiler import ProfileConfig, ProfileListener, Profiler, RoundRecord
from compofa.remote import adb as adb_module
from compofa.remote.adb import (
    AdbError,
    AdbTarget,
    LiteRtPhone,
    PhoneOptions,
    block_sizes,
    format_cores,
    invocation_runs,
    open_adb_device,
    parse_cores,
)
from compofa.remote.adb_cli import ScriptOutput, parse_devices, read_conditions
from compofa.remote.benchmark_output import BenchmarkCommand, BenchmarkOutputError, Phase, parse_benchmark_output
from compofa.space import SubnetSpec, get_space

REAL_ADB = shutil.which("adb")  # before any test puts the stand-in first on PATH
SERIAL = "R5CT1234"

pytest.importorskip("ai_edge_litert", reason="the stand-in benchmark_model runs models with ai-edge-litert")


# -- benchmark_model's output, as recorded from the tool ------------------------------------------------------------

#: Desktop build, no severity prefix, no percentiles (a published run of mobilenet_v1 with op profiling).
RECORDED_PLAIN = """STARTING!
Log parameter values verbosely: [0]
Num threads: [4]
Graph: [./mobilenet_v1_1.0_224.tflite]
Enable op profiling: [1]
#threads used for CPU inference: [4]
Loaded model ./mobilenet_v1_1.0_224.tflite
The input model file size (MB): 16.9008
Initialized session in 17.187ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=3512391

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798

Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory \
footprint of the model at runtime. Take the information at your discretion.
Memory footprint delta from the start of the tool (MB): init=4.21094 overall=46.0859
"""

#: Newer build, "INFO:" prefix and percentiles (a published run of ssd_mobilenet_v2 on an embedded board).
RECORDED_INFO = """INFO: Use xnnpack: [0]
INFO: Loaded model /usr/share/oob-demo-assets/models/ssd_mobilenet_v2_coco.tflite
INFO: The input model file size (MB): 67.3128
INFO: Initialized session in 5.579ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=1 curr=1357602 p5=1357602 median=1357602 p95=1357602

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=1249964 curr=1240143 min=1238588 max=1252566 avg=1.24027e+06 std=2565 p5=1238753 \
median=1239807 p95=1247415

INFO: Inference timings in us: Init: 5579, First inference: 1357602, Warmup (avg): 1.3576e+06, Inference (avg): \
1.24027e+06
"""

#: The tool's README, with --enable_op_profiling: its per-node summary has statistics lines of its own.
RECORDED_OP_PROFILING_TAIL = """
Timings (microseconds): count=50 first=79449 curr=81350 min=77385 max=88213 avg=79732 std=1929
Memory (bytes): count=0
31 nodes observed
"""

RECORDED_FAILURE = """INFO: STARTING!
ERROR: Please specify the name of your TF Lite input file with --graph
ERROR: Benchmarking failed.
"""


def test_recorded_outputs_are_read_phase_by_phase() -> None:
    plain = parse_benchmark_output(RECORDED_PLAIN.replace("\\\n", ""))
    assert plain.warmup == Phase(1, curr=3512391, avg=3512391, all_same=True)
    assert plain.warmup.runs_us() == (3512391,)
    assert (plain.timed.count, plain.timed.first, plain.timed.curr) == (50, 2990275, 2913402)
    assert plain.timed.avg == pytest.approx(2.95034e6) and plain.init_us == 17187
    # 50 runs printed as statistics: only the first and the last are known one by one, never the others
    assert plain.timed.runs_us() is None and plain.timed.known_runs_us() == (2990275, 2913402)
    with pytest.raises(BenchmarkOutputError, match="cannot be read one by one"):
        plain.samples_ms(1)
    assert plain.samples_ms(50) == [pytest.approx(2950.34)]

    info = parse_benchmark_output(RECORDED_INFO.replace("\\\n", "") + RECORDED_OP_PROFILING_TAIL)
    assert info.warmup.runs_us() == (1357602,) and info.init_us == 5579
    assert (info.timed.count, info.timed.min, info.timed.max) == (50, 1238588, 1252566)
    # the tool's README, an older build: its summary line puts Init second
    older = [line if not line.startswith("Inference timings") else
             "Average inference timings in us: Warmup: 83235, Init: 38467, Inference: 79760.9"
             for line in RECORDED_PLAIN.replace("\\\n", "").splitlines()]
    assert parse_benchmark_output("\n".join(older)).init_us == 38467


def test_two_runs_and_equal_runs_are_read_exactly() -> None:
    """The lines compofa's invocations print (the tool's format, two timed runs): both runs, exactly."""
    two = Phase.parse("INFO: count=2 first=29460 curr=29371 min=29371 max=29460 avg=29415.5 std=44 p5=29371 "
                      "median=29460 p95=29460")
    assert two.runs_us() == (29460, 29371)
    assert Phase.parse("count=2 curr=812(all same) p5=812 median=812 p95=812").runs_us() == (812, 812)
    assert Phase.parse("count=0").runs_us() == ()


def test_a_failed_run_says_the_tools_own_error() -> None:
    with pytest.raises(BenchmarkOutputError, match="Please specify the name of your TF Lite input file"):
        parse_benchmark_output(RECORDED_FAILURE)


def test_the_command_line_times_exact_runs_on_pinned_cores() -> None:
    command = BenchmarkCommand("/data/local/tmp/benchmark_model", threads=2, xnnpack=True, warmup_runs=3)
    assert command.argv("/data/local/tmp/compofa/ab.tflite", 2) == [
        "/data/local/tmp/benchmark_model", "--graph=/data/local/tmp/compofa/ab.tflite", "--num_threads=2",
        "--use_xnnpack=true", "--warmup_runs=3", "--warmup_min_secs=0", "--min_secs=0", "--max_secs=150",
        "--num_runs=2",
    ]
    function = command.shell_function("bm", ["taskset", "f0"])
    assert function.startswith('bm() { echo "@@compofa run $1"; taskset f0 /data/local/tmp/benchmark_model '
                               '--graph="$2"')
    assert '--num_runs="$3" 2>&1; s=$?;' in function
    assert invocation_runs(5, 1) == [2, 2, 1] and invocation_runs(3, 4) == [4, 4, 4]
    assert block_sizes(10, 4) == [3, 3, 2, 2] and block_sizes(2, 4) == [1, 1]


def test_script_functions_are_no_alias_of_androids_shell() -> None:
    """Android's mksh predefines aliases (``r`` repeats the last command): a function of that name never runs."""
    mksh = shutil.which("mksh")
    if mksh is None:
        pytest.skip("mksh (Android's shell) is not installed here (Debian: apt-get install mksh)")
    aliases = {line.split("=", 1)[0] for line in subprocess.run([mksh, "-c", "alias"], capture_output=True,
                                                                 text=True, check=True).stdout.splitlines()}
    assert "r" in aliases and not aliases & {"bm", "item", "reference", "readings"}


# -- URLs, settings, adb's listing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "serial", "options"), [
    ("adb://", None, {}),
    ("adb://litert", None, {}),
    ("adb:///litert?cores=4-7", None, {"cores": "4-7"}),
    ("adb://R5CT1234/litert?benchmark=/data/local/tmp/bm&cores=0xf0", "R5CT1234",
     {"benchmark": "/data/local/tmp/bm", "cores": "0xf0"}),
    ("adb://192.168.1.20:5555", "192.168.1.20:5555", {}),
    ("adb://emulator-5554/litert", "emulator-5554", {}),
])
def test_phone_urls(url: str, serial: str | None, options: dict[str, str]) -> None:
    target = AdbTarget.parse(url)
    assert (target.serial, target.backend, dict(target.options)) == (serial, "litert", options)
    assert AdbTarget.parse(str(target)) == target


@pytest.mark.parametrize(("url", "fragment"), [
    ("ssh://host/litert", "a phone looks like adb://"),
    ("adb://R5CT1234/onnxruntime", "measured with litert, not 'onnxruntime'"),
    ("adb://R5CT1234?threads=4", "takes the settings benchmark, cores"),
])
def test_bad_urls_are_refused_in_one_line(url: str, fragment: str) -> None:
    with pytest.raises(AdbError, match=fragment) as refused:
        AdbTarget.parse(url)
    assert refused.value.option == ("device",) and "\n" not in str(refused.value)


def test_cores_as_lists_or_masks() -> None:
    assert parse_cores("4-7") == 0xF0 and parse_cores("0,6-7") == 0xC1 and parse_cores("0xf0") == 0xF0
    assert format_cores(0xC1) == "0,6-7" and format_cores(0xF0) == "4-7"
    for bad in ("7-4", "big", "0x0", "-1"):
        with pytest.raises(AdbError, match="cores"):
            parse_cores(bad)


@pytest.mark.parametrize(("options", "fragment"), [
    ({"warmup": "-1"}, "warmup must be a whole number >= 0"),
    ({"runs": "0"}, "runs must be a whole number >= 1"),
    ({"xnnpack": "maybe"}, "xnnpack must be true or false"),
    ({"benchmark": "benchmark_model"}, "benchmark must be an absolute path"),
    ({"max_secs": "0"}, "max_secs must be a positive number"),
])
def test_bad_settings_are_refused(options: dict[str, str], fragment: str) -> None:
    with pytest.raises(AdbError, match=fragment):
        PhoneOptions.parse(options)


def test_adb_devices_listing() -> None:
    listed = parse_devices(
        "* daemon not running; starting now at tcp:5037\n* daemon started successfully\nList of devices attached\n"
        "0123456789ABCDEF       device usb:1-1 product:walleye model:Pixel_2 device:walleye transport_id:1\n"
        "emulator-5554\tunauthorized\n"
        "R58M123               no permissions (user in plugdev group; are your udev rules wrong?); see "
        "[http://developer.android.com/tools/device.html] usb:1-2 transport_id:3\n\n")
    assert [(p.serial, p.state) for p in listed] == [
        ("0123456789ABCDEF", "device"), ("emulator-5554", "unauthorized"), ("R58M123", "no permissions")]
    assert listed[0].attributes["model"] == "Pixel_2" and listed[2].attributes == {"usb": "1-2", "transport_id": "3"}


def test_sysfs_readings() -> None:
    output = ScriptOutput.read("\n".join([
        "@@compofa start", "@@compofa conditions before",
        "/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor:schedutil",
        "/sys/devices/system/cpu/cpu4/cpufreq/scaling_governor:performance",
        "/sys/devices/system/cpu/cpu4/cpufreq/scaling_cur_freq:2419200",
        "/sys/class/thermal/thermal_zone0/type:cpu-1-0-usr", "/sys/class/thermal/thermal_zone0/temp:41500",
        "/sys/class/thermal/thermal_zone1/type:battery", "/sys/class/thermal/thermal_zone1/temp:30100",
        "/sys/class/thermal/thermal_zone2/type:battery", "/sys/class/thermal/thermal_zone2/temp:29900",
        "@@compofa end"]))
    readings = read_conditions(output.sections["conditions before"], cores=[4, 5])
    assert readings == {"governor": {"cpu4": "performance"}, "freq_khz": {"cpu4": 2419200},
                        "temperature_mc": {"cpu-1-0-usr": 41500, "battery": 30100, "battery (thermal_zone2)": 29900}}
    assert read_conditions(output.sections["conditions before"], None, ["battery"])["temperature_mc"] == {
        "battery": 30100, "battery (thermal_zone2)": 29900}


# -- a phone behind the stand-in adb ---------------------------------------------------------------------------------


class TfliteFiles:
    """Subnets' LiteRT models written by compofa's own writer, as the subnet source hands them out."""

    def __init__(self, folder: Path) -> None:
        space = get_space("compofa")
        self.exporter = TfliteExporter(SeededWeights(space.family, space.family.default_width), 1, folder)
        self.corrupt: dict[SubnetSpec, Path] = {}

    def tflite(self, item: SubnetSpec, batch: int) -> Path:
        assert batch == 1
        return self.corrupt.get(item) or self.exporter.path(item)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[TfliteFiles, list[SubnetSpec]]:
    space = get_space("compofa")
    specs = [space.smallest(128), *space.sample_many(np.random.default_rng(3), 2, [128])]
    files = TfliteFiles(tmp_path_factory.mktemp("tflite"))
    for spec in specs:
        files.tflite(spec, 1)
    return files, specs


@pytest.fixture()
def phones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePhones]:
    fake = FakePhones(tmp_path / "adb")
    monkeypatch.setenv("FAKE_ADB_HOME", str(fake.home))
    monkeypatch.setenv("PATH", f"{fake.bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    yield fake


def shells(phones: FakePhones, containing: str) -> list[str]:
    return [call[-1] for call in phones.calls() if "shell" in call and containing in call[-1]]


class Committed(ProfileListener[SubnetSpec]):
    """Keeps every round as a table would; stops the run (as an interruption would) after `stop_after` rounds."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.rounds: dict[SubnetSpec, list[RoundRecord]] = {}
        self.readings: list[tuple[float, tuple[float, ...]]] = []
        self.stop_after = stop_after

    def on_round(self, item: SubnetSpec, record: RoundRecord) -> None:
        self.rounds.setdefault(item, []).append(record)
        if self.stop_after is not None and sum(map(len, self.rounds.values())) >= self.stop_after:
            raise KeyboardInterrupt

    def on_reference(self, at: float, median_ms: float, samples_ms: Any) -> None:
        self.readings.append((median_ms, tuple(samples_ms)))


CONFIG = ProfileConfig(min_rounds=2, max_rounds=2, min_samples=2, max_samples=4, round_seconds=1.0, blocks=2,
                       reference_samples=1, drift_threshold=10.0, disturbed_noise=10.0, target_ci=0.5)


def test_profile_on_a_phone_then_resume(phones: FakePhones, models: tuple[TfliteFiles, list[SubnetSpec]]) -> None:
    """Rounds through the real Profiler, one adb shell each; interrupted, then resumed without pushing again."""
    files, (reference, *items) = models
    phones.add(SERIAL)
    phone = open_adb_device("adb:///litert?cores=4-7", files)
    first = Committed(stop_after=3)
    with pytest.raises(KeyboardInterrupt):
        Profiler(phone, CONFIG).run(items, reference, listener=first)
    assert len(phone.pushed) == 3  # every model once, while staging
    baseline, baseline_samples = first.readings[0]
    assert len(baseline_samples) == 10 and baseline == pytest.approx(float(np.median(baseline_samples)))

    records = sorted((r for rs in first.rounds.values() for r in rs), key=lambda r: r.started_at)
    for record in records:
        assert all(s > 0 for s in record.samples_ms) and record.prepare_s > 0
        for moment in ("before", "after"):
            readings = record.conditions[moment]
            assert set(readings["governor"]) == {"cpu4", "cpu5", "cpu6", "cpu7"} == set(readings["freq_khz"])
            assert readings["temperature_mc"] == {"cpu-0-0-usr": 38000, "cpu-1-0-usr": 41500, "battery": 30100}
    # an item's first round here takes min_samples; its next, with its latency known, the profiler's count
    assert [(r.round_index, len(r.samples_ms)) for r in records] == [(0, 2), (0, 2), (1, 4)]
    assert [len(r.warmup_ms) for r in records] == [2 * 2, 2 * 2, 2 * 2]  # two warm-up runs per invocation
    # each round's reference samples sit around and between its blocks, and set its drift
    round_readings = first.readings[1:]
    assert [len(samples) for _, samples in round_readings] == [3, 3, 3]
    for record, (_, samples) in zip(records, round_readings):
        assert record.drift == pytest.approx(float(np.median(samples)) / baseline)
    round_scripts = shells(phones, "readings before")
    assert len(round_scripts) == 3  # one adb shell per round
    assert round_scripts[0].splitlines()[-8:] == ["readings before", "reference 1", "item 1", "reference 1",
                                                  "item 1", "reference 1", "readings after", 'echo "@@compofa end"']
    assert round_scripts[2].splitlines()[-7:-2] == ["reference 1", "item 2", "reference 1", "item 2", "reference 1"]
    # the baseline (10 samples, two a run), then per round 3 reference runs and the item's
    assert phones.masks(SERIAL) == ["f0"] * (5 + 5 + 5 + 5)

    # a new session on the same phone resumes from the committed rounds: nothing pushed, the round left measured
    again = open_adb_device(f"adb://{SERIAL}/litert?cores=4-7", files)
    second = Committed()
    result = Profiler(again, CONFIG).run(items, reference, baseline_ms=baseline, prior=first.rounds, listener=second)
    # one round left, in one adb shell; a round a busy machine's drift discarded is measured again, in one more
    resumed = [record for records in second.rounds.values() for record in records]
    assert again.pushed == [] and len(shells(phones, "readings before")) == 3 + len(resumed)
    assert set(result.estimates) == set(items) and sum(not record.discarded for record in resumed) == 1
    for item in items:
        rounds = result.measurements[item].rounds
        assert [r.round_index for r in rounds] == [0, 1] and result.estimates[item].median_ms > 0
    assert again.fingerprint() == phone.fingerprint()
    assert isinstance(phone, Located) and phone.details() == {
        "host": "Google Pixel 7", "system": "Android 14 (UQ1A.240205.004)",
        "benchmark": "/data/local/tmp/benchmark_model", "connection": {"scheme": "adb", "serial": SERIAL}}


def test_plain_device_calls(phones: FakePhones, models: tuple[TfliteFiles, list[SubnetSpec]]) -> None:
    """The Device protocol alone: conditions now, n samples of a prepared model, the fingerprint."""
    files, specs = models
    phones.add(SERIAL, cores=4)
    phone: LiteRtPhone[SubnetSpec] = open_adb_device("adb://", files, Settings(threads=2, options={"runs": "3"}))
    readings = phone.conditions()
    assert set(readings["governor"]) == {"cpu0", "cpu1", "cpu2", "cpu3"}
    samples = phone.time(phone.prepare(specs[0]), 2)  # runs=3: each sample is one invocation's mean of 3 runs
    assert len(samples) == 2 and all(s > 0 for s in samples) and phones.masks(SERIAL) == []
    assert len(phone.pushed) == 1 and phone.prepare(specs[0]).path.endswith(f"{phone.pushed[0]}.tflite")
    fingerprint = phone.fingerprint()
    assert fingerprint["phone"]["model"] == "Pixel 7" and fingerprint["phone"]["abi"] == "arm64-v8a"
    assert fingerprint["max_freq_khz"] == {"cpu0": 1804800, "cpu1": 1804800, "cpu2": 2419200, "cpu3": 2419200}
    assert (fingerprint["threads"], fingerprint["runs_per_sample"], fingerprint["pinned"]) == (2, 3, "all")
    assert SERIAL not in str(fingerprint) and len(fingerprint["benchmark_sha256"]) == 64


def test_a_phone_judges_drift_by_the_profilers_rule(phones: FakePhones,
                                                    models: tuple[TfliteFiles, list[SubnetSpec]]) -> None:
    """The reference's samples of a round on a phone give the drift and the discard any device's round would."""
    phones.add(SERIAL)
    phone = open_adb_device("adb://", models[0])
    config = ProfileConfig(drift_threshold=0.03)
    profiler = Profiler(phone, config)
    rng = np.random.default_rng(0)
    for _ in range(50):
        reference = list(rng.uniform(1.0, 1.1, int(rng.integers(2, 12))))
        assert adb_module._drift(reference, 1.02, config.drift_threshold) == profiler._drift(reference, 1.02)


# -- bad input: one line each, naming what is wrong and what to do ---------------------------------------------------


def refused(url: str, source: Any = None, settings: Settings | None = None) -> str:
    with pytest.raises(AdbError) as error:
        open_adb_device(url, source, settings)
    message = str(error.value)
    assert "\n" not in message and "device" in error.value.option, message
    return message


def test_no_phone_or_the_wrong_phone(phones: FakePhones, models: tuple[TfliteFiles, list[SubnetSpec]],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert "no Android phone is attached" in refused("adb://")
    phones.add("AAA111")
    phones.add("BBB222")
    assert "2 phones are attached (AAA111, BBB222): name one, as in adb://AAA111/litert" in refused("adb://")
    assert "no phone with serial CCC333 is attached (attached: AAA111, BBB222)" in refused("adb://CCC333")
    monkeypatch.setenv("ANDROID_SERIAL", "BBB222")  # as adb itself, the serial from the environment
    assert open_adb_device("adb://", models[0]).serial == "BBB222"
    phones.set_state("AAA111", "unauthorized")
    assert "AAA111 has not authorized this computer: unlock it and accept" in refused("adb://AAA111")
    phones.set_state("AAA111", "offline")
    assert "AAA111 is offline: reconnect its cable" in refused("adb://AAA111")


def test_what_the_phone_lacks(phones: FakePhones, models: tuple[TfliteFiles, list[SubnetSpec]]) -> None:
    phones.add(SERIAL, benchmark=False)
    message = refused("adb://")
    assert "has no benchmark binary at /data/local/tmp/benchmark_model: push LiteRT's benchmark_model" in message
    (phones.root(SERIAL) / "data/local/tmp/benchmark_model").write_text("not a program")
    assert "is not an executable file: adb shell chmod +x /data/local/tmp/benchmark_model" in refused("adb://")
    phones.install_benchmark(SERIAL, "/data/local/tmp/bin/benchmark_model")
    assert open_adb_device("adb://?benchmark=/data/local/tmp/bin/benchmark_model", models[0]).serial == SERIAL
    assert "has cores 0-7, not 8, 9: pin to cores it has" in refused(
        "adb://?benchmark=/data/local/tmp/bin/benchmark_model&cores=8-9")
    assert "3 threads cannot run on 2 pinned cores (cores=6-7)" in refused(
        "adb://?benchmark=/data/local/tmp/bin/benchmark_model&cores=6-7", settings=Settings(threads=3))


def test_settings_a_phone_cannot_take(phones: FakePhones, models: tuple[TfliteFiles, list[SubnetSpec]]) -> None:
    phones.add(SERIAL)
    assert "cores is set both in the phone's URL and as an option, differently" in refused(
        "adb://?cores=4-7", models[0], Settings(options={"cores": "0-3"}))
    with pytest.raises(AdbError, match="a phone profiles fp32 LiteRT models; got precision 'fp16'") as error:
        open_adb_device("adb://", models[0], Settings(precision="fp16"))
    assert error.value.option == ("precision",)


def test_adb_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "adb is not installed here: install Android's platform tools (Debian: apt-get install adb)" in refused(
        "adb://")


def test_a_model_the_tool_cannot_load(phones: FakePhones, models: tuple[TfliteFiles, list[SubnetSpec]],
                                      tmp_path: Path) -> None:
    files, specs = models
    phones.add(SERIAL)
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\0" * 64)
    files.corrupt[specs[1]] = broken
    try:
        phone = open_adb_device("adb://", files)
        with pytest.raises(AdbError, match=r"phone R5CT1234: benchmark_model failed: Failed to mmap model "
                                           r"/data/local/tmp/compofa/[0-9a-f]{64}\.tflite$"):
            phone.time(phone.prepare(specs[1]), 2)
    finally:
        files.corrupt.clear()


def test_a_phone_lost_mid_run_keeps_the_rounds_taken(phones: FakePhones,
                                                     models: tuple[TfliteFiles, list[SubnetSpec]]) -> None:
    files, (_, *items) = models
    phones.add(SERIAL)
    phone = LiteRtPhone(AdbTarget.parse("adb://"), files, Settings(), retry_delays=(0.0, 0.0))

    class Unplugged(Committed):
        def on_round(self, item: SubnetSpec, record: RoundRecord) -> None:
            super().on_round(item, record)
            phones.set_state(SERIAL, "offline")

    listener = Unplugged()
    with pytest.raises(AdbError, match=r"^lost phone R5CT1234 \(error: device offline\): reconnect it") as lost:
        Profiler(phone, CONFIG).run(items, listener=listener)
    assert "run the same command again to resume" in str(lost.value)
    assert sum(map(len, listener.rounds.values())) == 1  # the round taken before is kept
    assert len(shells(phones, "readings before")) == 1 + 3  # the lost round tried three times in all


# -- a real phone, when one is attached ------------------------------------------------------------------------------


def _attached_phone() -> tuple[str | None, str]:
    """A usable phone's serial from the real adb, or why there is none."""
    if REAL_ADB is None:
        return None, "no Android phone attached (adb is not installed)"
    listing = subprocess.run([REAL_ADB, "devices", "-l"], capture_output=True, text=True, timeout=60)
    if "daemon started successfully" in listing.stdout + listing.stderr:  # leave no adb server behind us
        subprocess.run([REAL_ADB, "kill-server"], capture_output=True, timeout=60)
    usable = [p.serial for p in parse_devices(listing.stdout) if p.state == "device"]
    return (usable[0], "") if usable else (None, "no Android phone attached")


def test_a_real_phone(models: tuple[TfliteFiles, list[SubnetSpec]]) -> None:
    serial, reason = _attached_phone()
    if serial is None:
        pytest.skip(reason)
    files, (reference, item, _) = models
    benchmark = os.environ.get("COMPOFA_BENCHMARK_MODEL", "/data/local/tmp/benchmark_model")
    try:
        phone = open_adb_device(f"adb://{serial}/litert?benchmark={benchmark}", files)
    except AdbError as error:
        if "no benchmark binary" in str(error):
            pytest.skip(f"the phone attached has no benchmark_model at {benchmark} (COMPOFA_BENCHMARK_MODEL names it)")
        raise
    result = Profiler(phone, CONFIG).run([item], reference)
    assert result.estimates[item].median_ms > 0
    record = result.measurements[item].rounds[0]
    assert record.conditions["before"] and len(record.samples_ms) >= CONFIG.min_samples


def test_compofa_profile_on_a_phone_fills_a_table(phones: FakePhones) -> None:
    """The command line end to end: `compofa profile --device adb://...` through the stand-in adb, then the
    table holds the phone's entry, its fingerprint and the serial (with the run, not the fingerprint)."""
    import json
    import sqlite3

    from cli_helpers import run

    from compofa.tables.store import LatencyTable

    phones.add(SERIAL)
    table = phones.home / "phone.db"
    result = run("profile", "--device", f"adb://{SERIAL}/litert?cores=4-7", "--table", str(table), "--limit", "1",
                 "--resolution", "128", "--min-rounds", "1", "--max-rounds", "1", "--round-seconds", "0.01", "--quiet")
    assert result.exit_code == 0, result.output
    with LatencyTable.open(table) as store:
        (entry,) = store.entries()
        (device,) = store.devices()
    assert entry.median_ms > 0 and device.name == "litert" and device.fingerprint["pinned"] == "4-7"
    assert SERIAL not in json.dumps(device.fingerprint)
    # the memory benchmark_model printed for the item (the interpreter holds the model's weights at least);
    # energy absent, saying why
    assert entry.peak_memory_mb is not None and entry.peak_memory_mb > 0.5
    assert entry.energy_mj is None and "charges the battery" in entry.absent["energy"]
    with sqlite3.connect(f"file:{table}?mode=ro", uri=True) as connection:
        (settings,) = connection.execute("SELECT settings FROM runs").fetchone()
    assert json.loads(settings)["connection"] == {"scheme": "adb", "serial": SERIAL}


def test_layers_of_a_lookup_table_run_on_a_phone(phones: FakePhones, tmp_path: Path) -> None:
    """What `lut build --device adb://...` times: single layers' LiteRT models, written by `LayerSource`, through
    the real Profiler (a stem, a block and the classifier, each run by LiteRT's interpreter behind the stand-in)."""
    from compofa.lut.layers import distinct_layers
    from compofa.sources.layers import LayerSource
    from compofa.space.plan import plan_subnet

    phones.add(SERIAL)
    kinds = {}
    for layer in distinct_layers("compofa", 1.2, [128]):
        kinds.setdefault(plan_subnet(layer.spec, 1.2).layers[layer.index].kind, layer)
    chosen = [kinds["stem"], kinds["block"], kinds["classifier"]]
    source = LayerSource(get_space("compofa").family, 1.2, tmp_path / "cache")
    phone = open_adb_device(f"adb://{SERIAL}/litert", source)
    result = Profiler(phone, CONFIG).run(chosen[1:], reference=chosen[0])
    assert set(result.estimates) == set(chosen[1:]) and all(e.median_ms > 0 for e in result.estimates.values())
    assert len(phone.pushed) == 3 and all(path.suffix == ".tflite" for path in (source.tflite(x, 1) for x in chosen))
