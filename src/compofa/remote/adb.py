"""Android phones over adb: LiteRT's own ``benchmark_model`` run on the phone, a whole round at a time.

``adb://[SERIAL][/litert][?benchmark=PATH&cores=4-7&...]`` names a phone.
Without a serial, the one phone adb lists is meant (or ``$ANDROID_SERIAL``,
as for adb itself); ``adb://litert`` is read as the backend, not a serial, and
a phone reached over the network is named as adb names it (``adb://192.168.1.20:5555``).
Settings after ``?`` (or as device options):

- ``benchmark``: where LiteRT's ``benchmark_model`` is on the phone (default
  ``/data/local/tmp/benchmark_model``). compofa cannot ship it: build it or
  take a release's ``android_aarch64_benchmark_model``, ``adb push`` it there
  and ``chmod +x`` it, once.
- ``cores``: the cores to pin the tool to with ``taskset``, a list such as
  ``4-7`` or ``0,6-7``, or a hexadecimal mask such as ``0xf0``. Phones mix
  fast and slow cores, and a run that lands on others changes speed.
- ``xnnpack`` (true/false, default true), ``warmup`` (warm-up runs per
  invocation, default 2), ``runs`` (runs per sample, default 1, see below),
  ``max_secs`` (a ceiling on one invocation's phase, default 150),
  ``store`` (the folder of the models on the phone, default
  ``/data/local/tmp/compofa``), ``thermal`` (comma-separated thermal zone
  types to record, default all).

How it measures. Each model (a subnet's or a layer's ``.tflite``) is pushed
once, named by its sha256, into the store; what is already there is listed
with one ``adb shell`` when the phone is opened, so a resumed run pushes
nothing. A round (`LiteRtPhone.run_round`) is one ``adb shell`` running one
script on the phone: the governors, core frequencies and temperatures from
sysfs, then the reference's block, the item's blocks with the reference's
between them and after the last, then the sysfs readings again. The link
enters neither the measurement (the tool times itself) nor much the wall time.

What a sample is. ``benchmark_model`` prints statistics, not every run; it
names the first and the last run of a phase one by one, so each invocation
times two runs and both are samples, read exactly
(`compofa.remote.benchmark_output`). Every invocation is a fresh process: it
loads the model and warms up (``warmup`` runs) before its two timed runs, so
where the profiler elsewhere warms an item once per round, here it warms it
for every pair of samples, and the reference's samples come from fresh
processes too. With ``runs=K`` (K > 1), each invocation times K runs and
gives one sample, the mean of those K (for layers so short that whole
microseconds are too coarse); the statistics are then over means of K runs,
and K is part of the fingerprint. The number of samples in a round follows
the profiler's rule (``round_seconds`` of timed inference, within
``min_samples`` and ``max_samples``) from the item's latency in its previous
round on this phone; an item's first round here takes ``min_samples``. A
round's record keeps, as its warm-up, the warm-up runs the tool names one by
one (all of them with ``warmup`` at most 2), and as its preparation the first
invocation's "Init" (loading the model and building the interpreter).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from compofa.devices.base import ItemT, Settings, TfliteSource
from compofa.devices.meters import BYTES_PER_MB, ENERGY, MEMORY
from compofa.profiler.measurement import ABSENT, PEAK_MEMORY, RoundRecord
from compofa.profiler.noise import reference_moved, reference_noise
from compofa.profiler.schedule import ProfileConfig, ReferenceReading, RoundOutcome, TimeAccount
from compofa.remote.adb_cli import (
    CPU,
    READINGS_FUNCTION,
    AdbCli,
    AdbError,
    ScriptOutput,
    read_conditions,
    read_max_frequencies,
    resolve_serial,
)
from compofa.remote.benchmark_output import (
    DEFAULT_MAX_SECS,
    MARK,
    TOOL_MB,
    BenchmarkCommand,
    BenchmarkOutputError,
    BenchmarkRun,
    failure_line,
    parse_benchmark_output,
)

SCHEME = "adb://"
#: The runtimes a phone is measured with (the path after the serial).
BACKENDS = ("litert",)
DEFAULT_BENCHMARK = "/data/local/tmp/benchmark_model"
DEFAULT_STORE = "/data/local/tmp/compofa"
#: The settings a phone takes, after ``?`` in its URL or as device options.
OPTIONS = ("benchmark", "cores", "xnnpack", "warmup", "runs", "max_secs", "store", "thermal")
#: The system properties that identify a phone's hardware and software (from ``getprop``).
PROPERTIES = {
    "manufacturer": "ro.product.manufacturer",
    "model": "ro.product.model",
    "board": "ro.product.board",
    "platform": "ro.board.platform",
    "soc": "ro.soc.model",
    "abi": "ro.product.cpu.abi",
    "android": "ro.build.version.release",
    "sdk": "ro.build.version.sdk",
    "build": "ro.build.id",
}

__all__ = ["AdbError", "AdbTarget", "LiteRtPhone", "PhoneOptions", "TfliteSource", "open_adb_device"]


# -- the URL ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdbTarget:
    """Which phone (None: the only one attached), which runtime on it, and its settings."""

    serial: str | None = None
    backend: str = "litert"
    options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> AdbTarget:
        if not url.startswith(SCHEME):
            raise AdbError(f"a phone looks like adb://[SERIAL][/litert][?benchmark=PATH], not {url!r}")
        parts = urlsplit(url)
        serial = unquote(parts.netloc) or None  # as written: serials are case-sensitive and may hold host:port
        backend = parts.path.strip("/")
        if not backend and serial in BACKENDS:
            serial, backend = None, str(serial)
        backend = backend or BACKENDS[0]
        if backend not in BACKENDS:
            raise AdbError(f"{url!r}: a phone is measured with {' or '.join(BACKENDS)}, not {backend!r}")
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - set(OPTIONS))
        if unknown:
            raise AdbError(f"{url!r}: a phone takes the settings {', '.join(OPTIONS)}, not {', '.join(unknown)}")
        return cls(serial, backend, {key: values[-1] for key, values in query.items()})

    def __str__(self) -> str:
        query = "&".join(f"{key}={value}" for key, value in self.options.items())
        return f"{SCHEME}{self.serial or ''}/{self.backend}" + (f"?{query}" if query else "")


def parse_cores(text: str) -> int:
    """A ``taskset`` mask from ``4-7``, ``0,6-7`` (core numbers) or ``0xf0`` (a hexadecimal mask)."""
    text = text.strip().lower()
    try:
        if text.startswith("0x"):
            mask = int(text, 16)
        else:
            mask = 0
            for part in text.split(","):
                low, _, high = part.partition("-")
                first, last = int(low), int(high or low)
                if first < 0 or last < first:
                    raise ValueError(part)
                for core in range(first, last + 1):
                    mask |= 1 << core
    except ValueError:
        raise AdbError(f"cores must be core numbers such as 4-7 or 0,6-7, or a mask such as 0xf0, not {text!r}"
                       ) from None
    if mask <= 0:
        raise AdbError(f"cores {text!r} names no core")
    return mask


def mask_cores(mask: int) -> list[int]:
    return [core for core in range(mask.bit_length()) if mask >> core & 1]


def format_cores(mask: int) -> str:
    """``4-7``, ``0,6-7``: the cores of `mask` as a list of ranges."""
    cores, ranges = mask_cores(mask), []
    start = previous = cores[0]
    for core in [*cores[1:], -2]:
        if core != previous + 1:
            ranges.append(f"{start}-{previous}" if previous > start else str(start))
            start = core
        previous = core
    return ",".join(ranges)


def _parse_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise AdbError(f"{name} must be true or false, not {text!r}")


def _phone_path(name: str, path: str) -> str:
    if not path.startswith("/"):
        raise AdbError(f"{name} must be an absolute path on the phone, not {path!r}")
    return path.rstrip("/") or "/"


def _parse_count(name: str, text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise AdbError(f"{name} must be a whole number >= {least}, not {text!r}")
    return value


@dataclass(frozen=True)
class PhoneOptions:
    """A phone's settings (see the module docstring)."""

    benchmark: str = DEFAULT_BENCHMARK
    cores: int | None = None
    xnnpack: bool = True
    warmup: int = 2
    runs_per_sample: int = 1
    max_secs: float = DEFAULT_MAX_SECS
    store: str = DEFAULT_STORE
    thermal: tuple[str, ...] = ()

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> PhoneOptions:
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise AdbError(f"a phone takes the settings {', '.join(OPTIONS)}, not {', '.join(unknown)}")
        chosen = cls(benchmark=_phone_path("benchmark", options.get("benchmark", DEFAULT_BENCHMARK)),
                     store=_phone_path("store", options.get("store", DEFAULT_STORE)))
        if "cores" in options:
            chosen = dataclasses.replace(chosen, cores=parse_cores(options["cores"]))
        if "xnnpack" in options:
            chosen = dataclasses.replace(chosen, xnnpack=_parse_bool("xnnpack", options["xnnpack"]))
        if "warmup" in options:
            chosen = dataclasses.replace(chosen, warmup=_parse_count("warmup", options["warmup"], 0))
        if "runs" in options:
            chosen = dataclasses.replace(chosen, runs_per_sample=_parse_count("runs", options["runs"], 1))
        if "max_secs" in options:
            try:
                seconds = float(options["max_secs"])
            except ValueError:
                seconds = -1.0
            if not (math.isfinite(seconds) and seconds > 0):
                raise AdbError(f"max_secs must be a positive number of seconds, not {options['max_secs']!r}")
            chosen = dataclasses.replace(chosen, max_secs=seconds)
        if options.get("thermal"):
            chosen = dataclasses.replace(chosen, thermal=tuple(t.strip() for t in options["thermal"].split(",")
                                                               if t.strip()))
        return chosen


def _median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def block_sizes(count: int, blocks: int) -> list[int]:
    """`count` samples in `blocks` blocks as even as can be (the profiler's split)."""
    blocks = max(1, min(blocks, count))
    return [count // blocks + (1 if b < count % blocks else 0) for b in range(blocks)]


def invocation_runs(samples: int, runs_per_sample: int) -> list[int]:
    """The timed runs of each invocation that gives `samples` samples (two exact runs each, or one mean of K)."""
    if runs_per_sample > 1:
        return [runs_per_sample] * samples
    return [2] * (samples // 2) + [1] * (samples % 2)


# -- the phone -------------------------------------------------------------------------------------------------------


@dataclass
class PhoneModel(Generic[ItemT]):
    """An item's model on the phone; closing it keeps the file there (the store is a cache)."""

    item: ItemT
    path: str
    sha256: str

    def close(self) -> None:
        pass


@dataclass
class _Rounds:
    """What `begin_rounds` set up: the profiler's settings, the reference's model and baseline."""

    config: ProfileConfig
    reference: PhoneModel[Any] | None
    baseline_ms: float | None


class LiteRtPhone(Generic[ItemT]):
    """Times items' LiteRT models on an Android phone with LiteRT's ``benchmark_model`` (module docstring).

    A `compofa.devices.base.Device` (each `time` call is one ``adb shell``)
    and a `compofa.profiler.RoundRunner` (each round is one).
    """

    name = "litert"
    deterministic = False

    def __init__(self, target: AdbTarget, source: TfliteSource[ItemT], settings: Settings,
                 cli: AdbCli | None = None, clock: Callable[[], float] = time.time,
                 retry_delays: Sequence[float] = (1.0, 2.0, 4.0)) -> None:
        if settings.precision != "fp32":
            raise AdbError(f"a phone profiles fp32 LiteRT models; got precision {settings.precision!r}",
                           option="precision")
        clash = sorted(key for key in set(target.options) & set(settings.options)
                       if target.options[key] != settings.options[key])
        if clash:
            raise AdbError(f"{', '.join(clash)} is set both in the phone's URL and as an option, differently")
        options = {**settings.options, **target.options}
        self.options = PhoneOptions.parse(options)
        self.settings = dataclasses.replace(settings, options=options)
        self.source = source
        self.clock = clock
        self.retry_delays = tuple(retry_delays)
        self.cli = cli or AdbCli()
        self.serial = resolve_serial(self.cli, target.serial)
        self.target = dataclasses.replace(target, serial=self.serial)
        self.command = BenchmarkCommand(self.options.benchmark, settings.threads, self.options.xnnpack,
                                        self.options.warmup, self.options.max_secs)
        self.pushed: list[str] = []  # sha256 of every file pushed by this device, in order (progress and tests)
        self.pushed_bytes = 0
        self._hashes: dict[tuple[str, int, int], str] = {}
        self._latency_ms: dict[ItemT, float] = {}  # each item's median in its last round here
        self._rounds: _Rounds | None = None
        self._probe()

    # -- opening ----------------------------------------------------------------------------------------------------

    def _probe(self) -> None:
        """One shell: the phone's properties, its cores, the benchmark binary, the models already in the store."""
        binary, store = shlex.quote(self.options.benchmark), shlex.quote(self.options.store)
        script = "\n".join([
            f'echo "{MARK} start"',
            f'echo "{MARK} props"; getprop',
            f'echo "{MARK} cpus"; cat {CPU}/possible; grep -H . {CPU}/cpu[0-9]*/cpufreq/cpuinfo_max_freq 2>/dev/null',
            f'echo "{MARK} benchmark"; if [ -x {binary} ] && [ -f {binary} ]; then echo executable; '
            f'elif [ -e {binary} ]; then echo present; else echo missing; fi; sha256sum {binary} 2>/dev/null',
            f'echo "{MARK} store"; mkdir -p {store} && rm -f {store}/*.part && ls {store}',
            f'echo "{MARK} end"',
        ])
        output = self._script(script, timeout=120)
        self.properties = {m.group(1): m.group(2) for line in output.sections.get("props", [])
                           if (m := re.fullmatch(r"\[([^\]]+)\]: \[(.*)\]", line.strip()))}
        cpus = output.sections.get("cpus", [])
        self.possible_cores = _parse_core_list(cpus[0]) if cpus else []
        self.max_freq_khz = read_max_frequencies(cpus[1:])
        state, *hashed = output.sections.get("benchmark", ["missing"]) or ["missing"]
        binary_path = self.options.benchmark
        if state == "missing":
            raise AdbError(f"phone {self.serial} has no benchmark binary at {binary_path}: push LiteRT's "
                           f"benchmark_model there (adb push benchmark_model {binary_path}; adb shell chmod +x "
                           f"{binary_path}) or name its path with benchmark=PATH")
        if state != "executable":
            raise AdbError(f"the benchmark binary {binary_path} on phone {self.serial} is not an executable file: "
                           f"adb shell chmod +x {binary_path}")
        self.benchmark_sha256 = hashed[0].split()[0] if hashed and hashed[0].split() else None
        self._stored = {name.removesuffix(".tflite") for name in output.sections.get("store", [])
                        if name.endswith(".tflite")}
        if self.options.cores is not None:
            outside = [core for core in mask_cores(self.options.cores) if core not in self.possible_cores]
            if self.possible_cores and outside:
                raise AdbError(f"phone {self.serial} has cores {format_cores(_mask(self.possible_cores))}, not "
                               f"{', '.join(map(str, outside))}: pin to cores it has")
            pinned = len(mask_cores(self.options.cores))
            if self.settings.threads > pinned:
                raise AdbError(f"{self.settings.threads} threads cannot run on {pinned} pinned cores "
                               f"(cores={format_cores(self.options.cores)}): pin more cores or use fewer threads",
                               option=("device", "threads"))

    # -- the Device protocol ----------------------------------------------------------------------------------------

    def details(self) -> dict[str, Any]:
        """Recorded with every run, not compared (`compofa.devices.base.Located`): the phone, its system, the
        tool's path, and how the phone was reached (its serial: a phone of the same model measures the same)."""
        properties = self.properties
        name = " ".join(p for p in (properties.get(PROPERTIES["manufacturer"]), properties.get(PROPERTIES["model"]))
                        if p)
        system = f"Android {properties.get(PROPERTIES['android'], '?')} ({properties.get(PROPERTIES['build'], '?')})"
        return {"host": name or self.serial, "system": system, "benchmark": self.options.benchmark,
                "connection": {"scheme": "adb", "serial": self.serial}}

    def fingerprint(self) -> dict[str, Any]:
        phone = {key: self.properties.get(prop, "") for key, prop in PROPERTIES.items()}
        return {
            "backend": self.name,
            "transport": "adb",
            "phone": phone,
            "cores": len(self.possible_cores),
            "max_freq_khz": self.max_freq_khz,
            "benchmark_sha256": self.benchmark_sha256,  # the tool has no version flag: its bytes name its build
            "threads": self.settings.threads,
            "pinned": format_cores(self.options.cores) if self.options.cores is not None else "all",
            "xnnpack": self.options.xnnpack,
            "warmup_runs": self.options.warmup,
            "runs_per_sample": self.options.runs_per_sample,
            "batch": self.settings.batch,
            "precision": self.settings.precision,
        }

    def conditions(self) -> dict[str, Any]:
        output = self._script("\n".join([f'echo "{MARK} start"', READINGS_FUNCTION, "readings now",
                                         f'echo "{MARK} end"']), timeout=60)
        return self._conditions(output, "now")

    def prepare(self, item: ItemT) -> PhoneModel[ItemT]:
        """Put `item`'s model on the phone unless it is there already (by sha256)."""
        local = self.source.tflite(item, self.settings.batch)
        digest = self._hash(local)
        remote = f"{self.options.store}/{digest}.tflite"
        if digest not in self._stored:
            # pushed under a temporary name and renamed, so an interrupted push never passes for the model
            result = self.cli.push(self.serial, local, remote + ".part")
            if result.returncode != 0:
                raise AdbError(f"cannot push {local.name} to phone {self.serial}: {result.said}")
            moved = self._script(f'echo "{MARK} start"; mv {shlex.quote(remote + ".part")} {shlex.quote(remote)} '
                                 f'&& echo "{MARK} end"', timeout=60)
            if not moved.ended:
                raise AdbError(f"cannot store {local.name} on phone {self.serial} at {remote}")
            self._stored.add(digest)
            self.pushed.append(digest)
            self.pushed_bytes += local.stat().st_size
        return PhoneModel(item, remote, digest)

    def time(self, handle: PhoneModel[ItemT], n: int) -> list[float]:
        """`n` samples of `handle` in one ``adb shell`` (two exact runs per invocation; see the module docstring)."""
        steps = [("item", runs) for runs in invocation_runs(n, self.options.runs_per_sample)]
        runs = self._benchmark_runs(self._run_steps(steps, handle, None, readings=False), steps)
        return [sample for _, run in runs for sample in run.samples_ms(self.options.runs_per_sample)]

    def close(self) -> None:
        """Nothing to undo: compofa changes no setting of the phone, and the stored models stay as a cache."""
        self._rounds = None

    # -- the RoundRunner protocol -----------------------------------------------------------------------------------

    def begin_rounds(self, config: ProfileConfig, reference: ItemT | None, baseline_ms: float | None
                     ) -> tuple[float, ReferenceReading | None] | None:
        ref = self.prepare(reference) if reference is not None else None
        self._rounds = _Rounds(config, ref, baseline_ms)
        if ref is None:
            return None
        if baseline_ms is not None:
            return baseline_ms, None
        samples = 10 * config.reference_samples  # as the profiler measures a baseline
        steps = [("reference", runs) for runs in invocation_runs(samples, self.options.runs_per_sample)]
        start = self.clock()
        runs = self._benchmark_runs(self._run_steps(steps, None, ref, readings=False), steps)
        values = [s for _, run in runs for s in run.samples_ms(self.options.runs_per_sample)]
        baseline = _median(values)
        self._rounds.baseline_ms = baseline
        return baseline, ReferenceReading((start + self.clock()) / 2, baseline, tuple(values))

    def run_round(self, item: ItemT, round_index: int) -> RoundOutcome:
        """One round of `item` in one ``adb shell``: readings, the reference's blocks around the item's, readings."""
        if self._rounds is None:
            raise RuntimeError("run_round before begin_rounds")
        config, ref = self._rounds.config, self._rounds.reference
        handle = self.prepare(item)
        per_sample = self.options.runs_per_sample
        latency = self._latency_ms.get(item)
        count = config.min_samples  # an item's first round here: its latency is not known yet
        if latency is not None:
            wanted = math.ceil(config.round_seconds * 1000 / (latency * per_sample))
            count = min(config.max_samples, max(config.min_samples, wanted))
        steps: list[tuple[str, int]] = []
        reference_block = [("reference", r) for r in invocation_runs(config.reference_samples, per_sample)]
        for size in block_sizes(count, config.blocks):
            if ref is not None and not steps:
                steps += reference_block
            steps += [("item", r) for r in invocation_runs(size, per_sample)]
            if ref is not None:
                steps += reference_block
        started = self.clock()
        output = self._run_steps(steps, handle, ref, readings=True)
        finished = self.clock()
        runs = self._benchmark_runs(output, steps)
        item_runs = [run for role, run in runs if role == "item"]
        samples = [s for run in item_runs for s in run.samples_ms(per_sample)]
        reference = [s for role, run in runs if role == "reference" for s in run.samples_ms(per_sample)]
        warmup = [r / 1000 for run in item_runs for r in run.warmup.known_runs_us()]
        drift, discarded = 1.0, False
        if ref is not None:
            assert self._rounds.baseline_ms is not None
            drift, discarded = _drift(reference, self._rounds.baseline_ms, config.drift_threshold)
        timed_at = (started + finished) / 2
        conditions: dict[str, Any] = {"before": self._conditions(output, "before"),
                                      "after": self._conditions(output, "after")}
        if ref is not None:
            conditions["reference_noise"] = round(reference_noise(reference), 6)
        conditions |= phone_readings(item_runs)
        first_init = item_runs[0].init_us if item_runs and item_runs[0].init_us is not None else 0.0
        record = RoundRecord(round_index, started, timed_at, tuple(warmup), tuple(samples), drift, first_init / 1e6,
                             conditions, discarded)
        self._latency_ms[item] = _median(samples)
        account = TimeAccount(
            prepare=sum(run.init_us or 0.0 for run in item_runs) / 1e6,
            warmup=sum(run.warmup.total_us for run in item_runs) / 1e6,
            timed=sum(samples) / 1000,
            reference=sum(reference) / 1000,
            rounds=1,
            samples=len(samples),
            discarded=int(discarded),
        )
        reading = ReferenceReading(timed_at, _median(reference), tuple(reference)) if ref is not None else None
        return RoundOutcome(record, reading, account)

    def end_rounds(self) -> None:
        self._rounds = None

    # -- scripts on the phone ---------------------------------------------------------------------------------------

    def _script_text(self, steps: Sequence[tuple[str, int]], item: PhoneModel[Any] | None,
                     reference: PhoneModel[Any] | None, readings: bool) -> str:
        """The script of `steps` (role, timed runs): each a run of benchmark_model; readings before and after."""
        pin = ["taskset", f"{self.options.cores:x}"] if self.options.cores is not None else []
        lines = [f'echo "{MARK} start"', self.command.shell_function("bm", pin)]
        if item is not None:
            lines.append(f"item() {{ bm item {shlex.quote(item.path)} \"$1\"; }}")
        if reference is not None:
            lines.append(f"reference() {{ bm reference {shlex.quote(reference.path)} \"$1\"; }}")
        if readings:
            lines += [READINGS_FUNCTION, "readings before"]
        lines += [f"{role} {runs}" for role, runs in steps]
        if readings:
            lines.append("readings after")
        lines.append(f'echo "{MARK} end"')
        return "\n".join(lines)

    def _run_steps(self, steps: Sequence[tuple[str, int]], item: PhoneModel[Any] | None,
                   reference: PhoneModel[Any] | None, readings: bool) -> ScriptOutput:
        timeout = 120 + len(steps) * (self.options.max_secs * 2 + 30)  # each phase may take max_secs, plus loading
        return self._script(self._script_text(steps, item, reference, readings), timeout)

    def _script(self, script: str, timeout: float) -> ScriptOutput:
        return self.cli.script(self.serial, script, timeout, self.retry_delays)

    def _benchmark_runs(self, output: ScriptOutput, steps: Sequence[tuple[str, int]]
                        ) -> list[tuple[str, BenchmarkRun]]:
        """Each run of benchmark_model the script made, read; `steps` is what it was to make."""
        runs = []
        for role, lines, status in output.runs:
            text = "\n".join(lines)
            if status != 0:
                raise AdbError(f"phone {self.serial}: {failure_line(text)}")
            try:
                runs.append((role, parse_benchmark_output(text)))
            except BenchmarkOutputError as error:
                raise AdbError(f"phone {self.serial}: {error}") from None
        if [role for role, _ in runs] != [role for role, _ in steps]:  # never a short round passed off as whole
            raise AdbError(f"the shell of phone {self.serial} made {len(runs)} of the {len(steps)} runs of "
                           "benchmark_model its script asked for: run again, and report it if it keeps happening")
        return runs

    def _conditions(self, output: ScriptOutput, moment: str) -> dict[str, Any]:
        cores = mask_cores(self.options.cores) if self.options.cores is not None else None
        return read_conditions(output.sections.get(f"conditions {moment}", []), cores, self.options.thermal)

    def _hash(self, file: Path) -> str:
        stat = file.stat()
        key = (str(file), stat.st_size, stat.st_mtime_ns)
        if key not in self._hashes:
            digest = hashlib.sha256()
            with open(file, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            self._hashes[key] = digest.hexdigest()
        return self._hashes[key]


def _drift(reference: Sequence[float], baseline_ms: float, threshold: float) -> tuple[float, bool]:
    """The phone's speed during a round, and whether it changed too much within it (the profiler's rule)."""
    return _median(reference) / baseline_ms, reference_moved(reference, threshold)


def _parse_core_list(text: str) -> list[int]:
    """``0-7`` or ``0-3,6`` (the kernel's cpu lists) as core numbers."""
    try:
        return mask_cores(parse_cores(text)) if text.strip() else []
    except AdbError:
        return []


def _mask(cores: Sequence[int]) -> int:
    return sum(1 << core for core in cores)


def open_adb_device(url: str, source: TfliteSource[ItemT], settings: Settings | None = None) -> LiteRtPhone[ItemT]:
    """The phone `url` names (``adb://[SERIAL][/litert][?...]``), ready to time `source`'s models."""
    return LiteRtPhone(AdbTarget.parse(url), source, settings or Settings())


#: Why a phone's rounds have no energy: its battery's current is not a measurement of the inference while USB
#: charges the battery (which adb over USB does), and compofa does not sample it.
PHONE_ENERGY_ABSENT = ("no energy counter read on phones: while adb's USB connection charges the battery, its "
                       "current is the charger's less the phone's draw, not the inference's energy")


def phone_readings(item_runs: Sequence[BenchmarkRun]) -> dict[str, Any]:
    """What a phone's round records beside its samples: the highest memory footprint benchmark_model printed for
    the item's invocations (each loads the model afresh, so each is one session's peak), and why energy is
    absent."""
    footprints = [run.memory_mib for run in item_runs if run.memory_mib is not None]
    absent = {ENERGY: PHONE_ENERGY_ABSENT}
    readings: dict[str, Any] = {}
    if footprints:
        readings[PEAK_MEMORY] = round(max(footprints) * TOOL_MB / BYTES_PER_MB, 3)
    else:
        absent[MEMORY] = "benchmark_model printed no memory footprint"
    readings[ABSENT] = absent
    return readings
