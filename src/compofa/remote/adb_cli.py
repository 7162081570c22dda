"""The user's ``adb``: the phones it lists, one script run on a phone, a file pushed, and what the script printed.

Written against Debian's adb (29) and Android's shells: ``adb devices -l``
lists each phone with its state (``device`` when usable); ``adb -s SERIAL
shell LINE`` hands the phone's shell one command line; adb's own complaints
(``error: device 'X' not found``, ``error: device offline``) come on stderr
with exit status 1. A phone's own exit status is relayed only by newer
phones, so compofa's scripts say how far they got with marker lines
(`compofa.remote.benchmark_output.MARK`) and are read from those
(`ScriptOutput`), never from adb's status.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compofa.errors import CompofaError
from compofa.remote.benchmark_output import MARK

CPU = "/sys/devices/system/cpu"
THERMAL = "/sys/class/thermal"
#: A shell function ``readings MOMENT`` that prints every reading of a moment with one ``grep`` (a file that cannot
#: be read, as some thermal zones on every phone, is left out rather than shifting the others). The names of the
#: scripts' functions are no alias of Android's mksh (which has ``r``, ``history``, ``type``, ...).
READINGS_FUNCTION = (f'readings() {{ echo "{MARK} conditions $1"; grep -H . {CPU}/cpu[0-9]*/cpufreq/scaling_governor '
                     f'{CPU}/cpu[0-9]*/cpufreq/scaling_cur_freq {THERMAL}/thermal_zone*/type '
                     f'{THERMAL}/thermal_zone*/temp 2>/dev/null; }}')
#: adb's exit status when the link drops under a command, and what it says when it cannot reach the phone.
LINK_LOST = 255
NOT_ANSWERING = ("not found", "offline", "no devices", "closed", "unauthorized", "authorizing", "protocol fault",
                 "connection reset")


class AdbError(CompofaError):
    """A phone that is not attached, not reachable, or lacks what profiling on it needs."""

    def __init__(self, *args: object, option: str | tuple[str, ...] | None = "device") -> None:
        super().__init__(*args, option=option)


# -- adb devices -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttachedPhone:
    """One line of ``adb devices -l``: a serial, its state (``device`` when usable) and its attributes."""

    serial: str
    state: str
    attributes: Mapping[str, str] = field(default_factory=dict)


def parse_devices(text: str) -> list[AttachedPhone]:
    """The phones in the output of ``adb devices -l``."""
    phones = []
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) < 2 or line.startswith(("*", "List of devices")):
            continue
        state = "no permissions" if tokens[1:3] == ["no", "permissions"] else tokens[1]
        attributes = dict(token.split(":", 1) for token in tokens[2:]
                          if re.fullmatch(r"(usb|product|model|device|transport_id):\S+", token))
        phones.append(AttachedPhone(tokens[0], state, attributes))
    return phones


def resolve_serial(cli: AdbCli, serial: str | None) -> str:
    """The serial of the phone meant (`serial`, ``$ANDROID_SERIAL``, or the only one attached), checked usable."""
    phones = cli.devices()
    serial = serial or os.environ.get("ANDROID_SERIAL") or None
    if serial is None:
        usable = [phone for phone in phones if phone.state == "device"]
        if len(usable) > 1:
            raise AdbError(f"{len(usable)} phones are attached ({', '.join(p.serial for p in usable)}): name one, "
                           f"as in adb://{usable[0].serial}/litert")
        if not usable:
            if phones:
                _refuse_state(phones[0])
            raise AdbError("no Android phone is attached: connect one with USB debugging on until `adb devices` "
                           "lists it as 'device'")
        return usable[0].serial
    matching = [phone for phone in phones if phone.serial == serial]
    if not matching:
        listed = ", ".join(phone.serial for phone in phones) or "none"
        raise AdbError(f"no phone with serial {serial} is attached (attached: {listed}): check the serial with "
                       "`adb devices`")
    _refuse_state(matching[0])
    return serial


def _refuse_state(phone: AttachedPhone) -> None:
    """Refuse a phone adb lists but cannot use, saying what to do."""
    what = {
        "device": None,
        "unauthorized": "has not authorized this computer: unlock it and accept the USB debugging prompt",
        "offline": "is offline: reconnect its cable (or run `adb reconnect`)",
        "no permissions": "cannot be opened (no permissions): add a udev rule for it or run adb as a user in the "
                          "plugdev group",
        "authorizing": "is still authorizing: wait a moment",
    }.get(phone.state, f"is in {phone.state} mode: boot it into Android")
    if what is not None:
        raise AdbError(f"phone {phone.serial} {what}, then run again")


# -- running adb -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShellResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def said(self) -> str:
        """adb's complaint in one line (its first ``error`` line), or its last line."""
        lines = [line.strip() for line in (self.stderr or self.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]
        return (errors or lines or [f"adb exited with status {self.returncode}"])[0 if errors else -1]


class AdbCli:
    """The user's ``adb`` (the first on PATH, or `executable`)."""

    def __init__(self, executable: str | None = None) -> None:
        found = executable or shutil.which("adb")
        if found is None:
            raise AdbError("adb is not installed here: install Android's platform tools (Debian: apt-get install "
                           "adb) and check that `adb devices` lists the phone")
        self.executable = found

    def run(self, args: Sequence[str], timeout: float | None = 60.0) -> ShellResult:
        try:
            done = subprocess.run([self.executable, *args], stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=timeout)
        except FileNotFoundError:
            raise AdbError(f"cannot run adb at {self.executable}: install Android's platform tools "
                           "(Debian: apt-get install adb)") from None
        except subprocess.TimeoutExpired:
            raise AdbError(f"adb {' '.join(args[:3])} did not answer within {timeout:g} s: check the phone's "
                           "connection (`adb devices`) and run again") from None
        # a phone's shell answers in bytes, with CR LF through a terminal on old phones; a stray byte ends nothing
        return ShellResult(done.returncode, done.stdout.decode(errors="replace").replace("\r\n", "\n"),
                           done.stderr.decode(errors="replace").replace("\r\n", "\n"))

    def devices(self) -> list[AttachedPhone]:
        result = self.run(["devices", "-l"])
        if result.returncode != 0:
            raise AdbError(f"adb cannot list the phones: {result.said}")
        return parse_devices(result.stdout)

    def shell(self, serial: str, line: str, timeout: float | None = None) -> ShellResult:
        # adb hands the phone's shell one command line: the whole script travels as that line
        return self.run(["-s", serial, "shell", line], timeout)

    def push(self, serial: str, local: Path, remote: str) -> ShellResult:
        # a megabyte a second is far below any USB link: past that the phone has stopped answering
        return self.run(["-s", serial, "push", str(local), remote], timeout=60 + local.stat().st_size / 1e6)

    def script(self, serial: str, script: str, timeout: float, retry_delays: Sequence[float] = ()) -> ScriptOutput:
        """Run `script` (which prints ``MARK start`` first and ``MARK end`` last) in one ``adb shell``.

        While adb cannot reach the phone, the script runs again after each of
        `retry_delays` (seconds), then gives up with one line saying how to
        resume. A script that ran but failed (a run of benchmark_model) comes
        back as it is, for its reader to say why.
        """
        said = ""
        for delay in (*retry_delays, None):
            result = self.shell(serial, script, timeout)
            output = ScriptOutput.read(result.stdout)
            if output.ended or output.failed:
                return output
            said = result.said
            lost = not output.started or result.returncode == LINK_LOST or any(
                word in said.lower() for word in NOT_ANSWERING)
            if not lost:  # the phone's shell stopped the script itself: running it again would stop it again
                raise AdbError(f"the script on phone {serial} stopped: {said}")
            if delay is None:
                break
            time.sleep(delay)
        raise AdbError(f"lost phone {serial} ({said}): reconnect it until `adb devices` lists it as 'device', then "
                       "run the same command again to resume")


# -- what a script printed -------------------------------------------------------------------------------------------


@dataclass
class ScriptOutput:
    """A script's output cut at its markers: its sections, its runs of benchmark_model, whether it ran to the end."""

    started: bool = False
    ended: bool = False
    sections: dict[str, list[str]] = field(default_factory=dict)
    runs: list[tuple[str, list[str], int | None]] = field(default_factory=list)  # role, output, exit status

    @classmethod
    def read(cls, text: str) -> ScriptOutput:
        output = cls()
        lines: list[str] | None = None
        for line in text.splitlines():
            if not line.startswith(MARK + " "):
                if lines is not None:
                    lines.append(line)
                continue
            word, _, rest = line[len(MARK) + 1:].strip().partition(" ")
            if word == "start":
                output.started, lines = True, None
            elif word == "end":
                output.ended, lines = True, None
            elif word == "run":
                lines = []
                output.runs.append((rest, lines, None))
            elif word == "status" and output.runs:
                role, run_lines, _ = output.runs[-1]
                output.runs[-1] = (role, run_lines, int(rest) if rest.lstrip("-").isdigit() else -1)
                lines = None
            else:
                lines = output.sections.setdefault(f"{word} {rest}".strip(), [])
        return output

    @property
    def failed(self) -> bool:
        """Whether a run of benchmark_model failed (the script stops there)."""
        return bool(self.runs) and self.runs[-1][2] not in (None, 0)


def grep_lines(lines: Sequence[str]) -> dict[str, str]:
    """``grep -H`` output: path -> value."""
    values = {}
    for line in lines:
        path, sep, value = line.partition(":")
        if sep and path.startswith("/"):
            values[path] = value.strip()
    return values


def int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _by_core(values: Mapping[str, Any]) -> dict[str, Any]:
    return dict(sorted(values.items(), key=lambda kv: int(kv[0].removeprefix("cpu"))))


def read_max_frequencies(lines: Sequence[str]) -> dict[str, int | None]:
    """Each core's highest frequency (kHz), from ``grep -H`` of its ``cpuinfo_max_freq``."""
    pattern = re.compile(re.escape(CPU) + r"/cpu(\d+)/cpufreq/cpuinfo_max_freq")
    return _by_core({f"cpu{m.group(1)}": int_or_none(value) for path, value in grep_lines(lines).items()
                     if (m := pattern.fullmatch(path))})


def read_conditions(lines: Sequence[str], cores: Sequence[int] | None, thermal: Sequence[str] = ()
                    ) -> dict[str, Any]:
    """Governors and frequencies (kHz) of `cores` (None: every core) and temperatures (the kernel's
    millidegrees Celsius) of the thermal zones, named by type (only the types in `thermal`, if any)."""
    cpu = re.compile(re.escape(CPU) + r"/cpu(\d+)/cpufreq/(scaling_governor|scaling_cur_freq)")
    zone = re.compile(re.escape(THERMAL) + r"/(thermal_zone(\d+))/(type|temp)")
    governors: dict[str, str] = {}
    frequencies: dict[str, int | None] = {}
    types: dict[int, str] = {}
    temperatures: dict[int, int | None] = {}
    for path, value in grep_lines(lines).items():
        if (m := cpu.fullmatch(path)) and (cores is None or int(m.group(1)) in cores):
            if m.group(2) == "scaling_governor":
                governors[f"cpu{m.group(1)}"] = value
            else:
                frequencies[f"cpu{m.group(1)}"] = int_or_none(value)
        elif m := zone.fullmatch(path):
            if m.group(3) == "type":
                types[int(m.group(2))] = value
            else:
                temperatures[int(m.group(2))] = int_or_none(value)
    named: dict[str, int] = {}
    for index in sorted(temperatures):
        kind, degrees = types.get(index, f"thermal_zone{index}"), temperatures[index]
        if degrees is not None and (not thermal or kind in thermal):
            named[kind if kind not in named else f"{kind} (thermal_zone{index})"] = degrees
    readings: dict[str, Any] = {}
    if governors:
        readings["governor"] = _by_core(governors)
    if frequencies:
        readings["freq_khz"] = _by_core(frequencies)
    if named:
        readings["temperature_mc"] = named
    return readings
