#!/usr/bin/env python3
"""A stand-in for ``adb`` and the phones behind it, for tests on a machine with no phone attached.

Run as ``adb`` (the tests put a wrapper named ``adb`` first on PATH), it
answers as Debian's adb 29 does, from the phones under ``$FAKE_ADB_HOME``:

- ``devices [-l]`` lists them in adb's own format and states (``device``,
  ``unauthorized``, ``offline``, ...).
- ``-s SERIAL`` (or ``$ANDROID_SERIAL``, or the only phone) picks one, with
  adb's messages and exit status 1 when none, several, or no such phone.
- ``push LOCAL REMOTE`` copies the file into the phone's file system, making
  the folders on the way as adbd does.
- ``shell COMMAND...`` joins its words with spaces, as adb does, and runs the
  line on this machine with ``mksh`` (Android's shell) where it is installed,
  else ``/bin/sh``. The phone's file system is a folder:
  absolute paths under ``/data``, ``/sys``, ``/system`` and ``/sdcard`` in the
  line are moved into it, and moved back in what the command prints, so a
  script reads the phone's sysfs (cores, governors, frequencies, thermal zones)
  and its ``/data/local/tmp``. ``getprop`` prints the phone's properties as
  Android's does; ``taskset MASK COMMAND`` checks the mask against the phone's
  cores as the kernel does (it must name at least one of them), logs it, and
  runs the command (this machine has other cores: the affinity is not applied).

``benchmark_model`` on a phone made with one is this script's other role: it
takes LiteRT's benchmark tool's flags, really runs the ``.tflite`` model with
``ai_edge_litert``'s interpreter (loading, warm-up phase, timed phase, with
the tool's run loop and clock in whole microseconds) and prints what the tool
prints, in its format.

Every adb call is logged, one JSON line each, to ``$FAKE_ADB_HOME/calls.jsonl``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MAPPED = ("data", "sys", "system", "sdcard")
_ABSOLUTE = re.compile(r"(?<![\w./-])/(" + "|".join(MAPPED) + r")(?=/|\b)")
#: Big and small cores, as on most phones: cpu0-3 slow, cpu4-7 fast.
LITTLE_KHZ, BIG_KHZ = 1_804_800, 2_419_200


# -- making phones (for the tests) -----------------------------------------------------------------------------------


@dataclass
class FakePhones:
    """The phones of one test, under `home`; `bin` holds the ``adb`` to put first on PATH."""

    home: Path

    def __post_init__(self) -> None:
        (self.home / "phones").mkdir(parents=True, exist_ok=True)
        self.bin.mkdir(parents=True, exist_ok=True)
        _wrapper(self.bin / "adb", f'exec {shlex.quote(sys.executable)} {shlex.quote(__file__)} "$@"')

    @property
    def bin(self) -> Path:
        return self.home / "bin"

    def phone(self, serial: str) -> Path:
        return self.home / "phones" / serial

    def root(self, serial: str) -> Path:
        """The folder that stands for the phone's ``/``."""
        return self.phone(serial) / "root"

    def add(self, serial: str, state: str = "device", cores: int = 8, benchmark: bool = True,
            model: str = "Pixel 7", properties: dict[str, str] | None = None) -> Path:
        """A phone with `cores` cores (the upper half fast), thermal zones, and LiteRT's benchmark tool if asked."""
        phone = self.phone(serial)
        root = self.root(serial)
        (root / "data/local/tmp").mkdir(parents=True, exist_ok=True)
        props = {
            "ro.product.manufacturer": "Google", "ro.product.model": model, "ro.product.board": "panther",
            "ro.board.platform": "gs201", "ro.soc.model": "GS201", "ro.product.cpu.abi": "arm64-v8a",
            "ro.build.version.release": "14", "ro.build.version.sdk": "34", "ro.build.id": "UQ1A.240205.004",
            **(properties or {}),
        }
        (phone / "getprop.txt").write_text("".join(f"[{key}]: [{value}]\n" for key, value in sorted(props.items())))
        cpu = root / "sys/devices/system/cpu"
        cpu.mkdir(parents=True, exist_ok=True)
        (cpu / "possible").write_text(f"0-{cores - 1}\n")
        for core in range(cores):
            freq = cpu / f"cpu{core}/cpufreq"
            freq.mkdir(parents=True, exist_ok=True)
            fast = core >= cores // 2
            (freq / "scaling_governor").write_text("schedutil\n")
            (freq / "scaling_cur_freq").write_text(f"{(BIG_KHZ if fast else LITTLE_KHZ) - 100_000 * (core % 2)}\n")
            (freq / "cpuinfo_max_freq").write_text(f"{BIG_KHZ if fast else LITTLE_KHZ}\n")
        zones = [("cpu-0-0-usr", "38000"), ("cpu-1-0-usr", "41500"), ("battery", "30100"), ("modem-0-usr", None)]
        for index, (kind, temp) in enumerate(zones):
            zone = root / f"sys/class/thermal/thermal_zone{index}"
            zone.mkdir(parents=True, exist_ok=True)
            (zone / "type").write_text(kind + "\n")
            if temp is not None:  # a zone whose temperature cannot be read, as phones have
                (zone / "temp").write_text(temp + "\n")
        system_bin = root / "system/bin"
        system_bin.mkdir(parents=True, exist_ok=True)
        _wrapper(system_bin / "getprop", f'if [ $# -eq 0 ]; then cat {shlex.quote(str(phone / "getprop.txt"))}; '
                 f'else sed -n "s/^\\[$1\\]: \\[\\(.*\\)\\]$/\\1/p" {shlex.quote(str(phone / "getprop.txt"))}; fi')
        # the kernel refuses a mask that names none of the cores; toybox then fails with the kernel's reason
        _wrapper(system_bin / "taskset", "\n".join([
            'mask=$(( 0x$1 )) 2>/dev/null || { echo "taskset: bad mask $1" >&2; exit 1; }',
            f'if [ $(( mask & {(1 << cores) - 1} )) -eq 0 ]; then',
            '  echo "taskset: failed to set pid $$ to mask $1: Invalid argument" >&2; exit 1; fi',
            f'echo "$1" >> {shlex.quote(str(phone / "taskset.log"))}',
            'shift; exec "$@"',
        ]))
        if benchmark:
            self.install_benchmark(serial)
        self.set_state(serial, state)
        return phone

    def install_benchmark(self, serial: str, path: str = "/data/local/tmp/benchmark_model") -> None:
        target = self.root(serial) / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        _wrapper(target, f'exec {shlex.quote(sys.executable)} {shlex.quote(__file__)} benchmark_model "$@"')

    def set_state(self, serial: str, state: str) -> None:
        (self.phone(serial) / "state").write_text(state)

    def calls(self) -> list[list[str]]:
        """The arguments of every adb call so far."""
        log = self.home / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def masks(self, serial: str) -> list[str]:
        log = self.phone(serial) / "taskset.log"
        return log.read_text().split() if log.exists() else []


def _wrapper(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


# -- adb -------------------------------------------------------------------------------------------------------------


def _home() -> Path:
    return Path(os.environ["FAKE_ADB_HOME"])


def _phones() -> dict[str, str]:
    """serial -> state."""
    folder = _home() / "phones"
    return {p.name: (p / "state").read_text().strip() for p in sorted(folder.iterdir()) if (p / "state").exists()}


def _fail(message: str) -> int:
    sys.stderr.write(message + "\n")
    return 1


def _select(serial: str | None, command: str) -> tuple[str | None, int]:
    """The phone a command goes to, or adb's complaint (printed) and status."""
    phones = _phones()
    serial = serial or os.environ.get("ANDROID_SERIAL")
    prefix = "adb: error: failed to get feature set: " if command == "push" else "error: "
    if serial is None:
        if not phones:
            return None, _fail(prefix + "no devices/emulators found")
        if len(phones) > 1:
            return None, _fail(prefix + "more than one device/emulator")
        serial = next(iter(phones))
    if serial not in phones:
        return None, _fail(f"{prefix}device '{serial}' not found")
    state = phones[serial]
    if state == "offline":
        return None, _fail(prefix + "device offline")
    if state == "unauthorized":
        return None, _fail(prefix + "device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
                           "Try 'adb kill-server' if that seems wrong.\nOtherwise check for a confirmation dialog on "
                           "your device.")
    return serial, 0


def _devices(long: bool) -> int:
    print("List of devices attached")
    for index, (serial, state) in enumerate(_phones().items(), 1):
        if long:
            extra = f" usb:1-{index} product:panther model:Pixel_7 device:panther" if state == "device" else ""
            print(f"{serial:<22} {state}{extra} transport_id:{index}")
        else:
            print(f"{serial}\t{state}")
    print()
    return 0


def _to_phone(root: Path, text: str) -> str:
    return _ABSOLUTE.sub(lambda m: f"{root}/{m.group(1)}", text)


def _from_phone(root: Path, text: str) -> str:
    return text.replace(f"{root}/", "/")


def _shell(serial: str, words: list[str]) -> int:
    root = _home() / "phones" / serial / "root"
    line = " ".join(words)
    env = {"PATH": f"{root}/system/bin:/usr/bin:/bin", "HOME": f"{root}/data/local/tmp", "LC_ALL": "C",
           "FAKE_ADB_HOME": str(_home()), "FAKE_ADB_ROOT": str(root)}
    # Android's shell is mksh: run the line with it where it is installed, else with this machine's sh
    shell = shutil.which("mksh") or "/bin/sh"
    done = subprocess.run([shell, "-c", _to_phone(root, line)], cwd=root, env=env, capture_output=True)
    sys.stdout.write(_from_phone(root, done.stdout.decode(errors="replace")))
    sys.stderr.write(_from_phone(root, done.stderr.decode(errors="replace")))
    return done.returncode


def _push(serial: str, local: str, remote: str) -> int:
    source = Path(local)
    if not source.is_file():
        return _fail(f"adb: error: cannot stat '{local}': No such file or directory")
    root = _home() / "phones" / serial / "root"
    target = root / remote.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    shutil.copyfile(source, target)
    seconds = max(time.perf_counter() - start, 1e-3)
    size = source.stat().st_size
    print(f"{local}: 1 file pushed, 0 skipped. {size / seconds / 1e6:.1f} MB/s ({size} bytes in {seconds:.3f}s)")
    return 0


def adb(argv: list[str]) -> int:
    with open(_home() / "calls.jsonl", "a") as log:
        log.write(json.dumps(argv) + "\n")
    serial = None
    while argv and argv[0] in ("-s", "-d", "-e", "-t"):
        if argv[0] == "-s":
            serial = argv[1]
        argv = argv[2:] if argv[0] in ("-s", "-t") else argv[1:]
    if not argv:
        return _fail("adb: usage: no command specified")
    command, args = argv[0], argv[1:]
    if command == "devices":
        return _devices("-l" in args)
    if command in ("start-server", "kill-server"):
        return 0
    if command == "version":
        print("Android Debug Bridge version 1.0.41\nVersion 29.0.6-debian (stand-in for tests)")
        return 0
    if command not in ("shell", "push", "get-state"):
        return _fail(f"adb: unknown command {command}")
    chosen, status = _select(serial, command)
    if chosen is None:
        return status
    if command == "get-state":
        print("device")
        return 0
    if command == "push":
        if len(args) != 2:
            return _fail("adb: usage: push requires an argument")
        return _push(chosen, *args)
    return _shell(chosen, args)


# -- benchmark_model -------------------------------------------------------------------------------------------------


def _stat_line(values: list[int]) -> str:
    """What the tool's StatWithPercentiles prints for `values` (microseconds)."""
    if not values:
        return "count=0"
    count = len(values)
    ordered = sorted(values)

    def percentile(p: int) -> int:
        return ordered[count * p // 100]

    if min(values) == max(values):
        line = f"count={count} curr={values[-1]}" + ("(all same)" if count > 1 else "")
    else:
        mean = sum(values) / count
        std = int(math.sqrt(sum(v * v for v in values) / count - mean * mean))
        line = (f"count={count} first={values[0]} curr={values[-1]} min={min(values)} max={max(values)} "
                f"avg={mean:.6g} std={std}")
    return line + f" p5={percentile(5)} median={percentile(50)} p95={percentile(95)}"


def _now_us() -> int:
    return time.perf_counter_ns() // 1000


def benchmark_model(argv: list[str]) -> int:
    """LiteRT's benchmark_model for one model: its flags, its two phases, its output."""
    defaults: dict[str, str] = {"graph": "", "num_threads": "-1", "num_runs": "50", "min_secs": "1",
                                "max_secs": "150", "warmup_runs": "1", "warmup_min_secs": "0.5",
                                "use_xnnpack": "false", "run_delay": "-1"}
    params = dict(defaults)
    unconsumed = []
    for arg in argv:
        name, sep, value = arg.removeprefix("--").partition("=")
        if arg.startswith("--") and sep and name in defaults:
            params[name] = value
        else:
            unconsumed.append(arg)
    print("INFO: STARTING!")
    if unconsumed:
        print(f"WARN: Unconsumed cmdline flags: {' '.join(unconsumed)}")
    print("INFO: Log parameter values verbosely: [0]")
    for name, label in (("num_runs", "Min num runs"), ("min_secs", "Min runs duration (seconds)"),
                        ("max_secs", "Max runs duration (seconds)"), ("num_threads", "Num threads"),
                        ("warmup_runs", "Min warmup runs"), ("warmup_min_secs", "Min warmup runs duration (seconds)")):
        if params[name] != defaults[name]:
            print(f"INFO: {label}: [{params[name]}]")
    print(f"INFO: Graph: [{params['graph']}]")
    print(f"INFO: Use xnnpack: [{1 if params['use_xnnpack'] == 'true' else 0}]")
    sys.stdout.flush()
    if not params["graph"]:
        sys.stderr.write("ERROR: Please specify the name of your TF Lite input file with --graph\n"
                         "ERROR: Benchmarking failed.\n")
        return 1
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType  # type: ignore[import-untyped, unused-ignore]

    graph = params["graph"]
    start = _now_us()
    start_kb = _resident_kb("VmRSS")
    try:
        resolver = OpResolverType.AUTO if params["use_xnnpack"] == "true" else \
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        threads = int(params["num_threads"])
        interpreter = Interpreter(model_path=graph, num_threads=threads if threads > 0 else None,
                                  experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError):
        sys.stdout.flush()
        sys.stderr.write(f"ERROR: Failed to mmap model {graph}\nERROR: Benchmarking failed.\n")
        return 1
    print(f"INFO: Loaded model {graph}")
    if params["use_xnnpack"] == "true":
        print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    rng = np.random.default_rng()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], rng.uniform(-1, 1, detail["shape"]).astype(detail["dtype"]))
    init_us = _now_us() - start
    init_kb = _resident_kb("VmRSS") - start_kb
    print(f"INFO: The input model file size (MB): {os.path.getsize(graph) / 1e6:g}")
    print(f"INFO: Initialized session in {init_us / 1e3:g}ms.")

    def phase(runs: int, min_secs: float, max_secs: float) -> list[int]:
        # the tool's loop: at least `runs` runs and `min_secs`, no run started after `max_secs`
        print(f"INFO: Running benchmark for at least {runs} iterations and at least {min_secs:g} seconds but "
              f"terminate if exceeding {max_secs:g} seconds.")
        now = _now_us()
        min_finish, max_finish = now + int(min_secs * 1e6), now + int(max_secs * 1e6)
        durations: list[int] = []
        while (len(durations) < runs or now < min_finish) and now <= max_finish:
            begin = _now_us()
            interpreter.invoke()
            durations.append(_now_us() - begin)
            now = _now_us()
        print("INFO: " + _stat_line(durations) + "\n")
        return durations

    max_secs = float(params["max_secs"])
    warmup = phase(int(params["warmup_runs"]), float(params["warmup_min_secs"]), max_secs)
    timed = phase(int(params["num_runs"]), float(params["min_secs"]), max_secs)

    def average(values: list[int]) -> str:
        return f"{sum(values) / len(values):.6g}" if values else "0"

    print(f"INFO: Inference timings in us: Init: {init_us}, First inference: {warmup[0] if warmup else 0}, "
          f"Warmup (avg): {average(warmup)}, Inference (avg): {average(timed)}")
    # the tool's memory line: this process's resident high-water mark over its start, in MiB as the tool prints
    print(f"INFO: Memory footprint delta from the start of the tool (MB): init={init_kb / 1024:g} "
          f"overall={(_resident_kb('VmHWM') - start_kb) / 1024:g}")
    return 0


def _resident_kb(name: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(name + ":"))


def main() -> int:
    if sys.argv[1:2] == ["benchmark_model"]:
        return benchmark_model(sys.argv[2:])
    return adb(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
