"""LiteRT's ``benchmark_model``: the command line compofa runs on a phone, and what its output says.

One invocation of ``benchmark_model`` is one process: it loads the model,
builds the interpreter ("Init"), runs a warm-up phase, then a timed phase,
and prints one statistics line per phase, e.g.::

    INFO: Running benchmark for at least 2 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
    INFO: count=2 first=29460 curr=29371 min=29371 max=29460 avg=29415.5 std=44 p5=29371 median=29460 p95=29460
    INFO: Inference timings in us: Init: 40521, First inference: 33112, Warmup (avg): 29761.8, Inference (avg): 29415.5

(older builds print no ``INFO:`` prefix and no percentiles; a phase whose runs
all took the same time prints ``count=N curr=T(all same)``). Times are whole
microseconds, the average is printed to six significant digits.

The tool has no flag that prints every run's time (its result proto, op
profiling and CSV output are aggregates too). What a statistics line does give
exactly, run by run, is ``first`` and ``curr`` (the first and the last run of
the phase): with at most two runs in a phase, that is every run. So compofa
times two runs per invocation and reads them off one by one (`Phase.runs_us`);
nothing is ever reconstructed from an average. With ``runs_per_sample`` K > 1,
each invocation times K runs and its one sample is their mean (``avg``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from compofa.errors import CompofaError

#: What starts every line compofa's scripts on the phone print around the tool's output.
MARK = "@@compofa"

#: What benchmark_model is asked for beyond the runs: no time-based minimum (so a phase makes exactly the runs asked
#: for), and a ceiling on one phase so a model that is far too slow still ends.
DEFAULT_MAX_SECS = 150.0

_PREFIX = r"^(?:[A-Z]+:\s+)?"  # the tool's own severity prefix ("INFO: "), absent in older builds
_STAT_LINE = re.compile(_PREFIX + r"count=\d+")
_FIELD = re.compile(r"(\w+)=([-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf))")
# "Inference timings in us: Init: 40521, First inference: ..." (older builds: "Average inference timings in us:
# Warmup: 83235, Init: 38467, Inference: 79760.9")
_INIT = re.compile(r"inference timings in us:.*\bInit: ([-+0-9.eE]+)", re.IGNORECASE)
_ERROR = re.compile(r"^(?:ERROR|FATAL):\s*(.+)$")
# "Memory footprint delta from the start of the tool (MB): init=7.54297 overall=8.14062" (MiB: kB / 1024)
_MEMORY = re.compile(r"memory footprint delta from the start of the tool \(MB\):.*\boverall=([-+0-9.eE]+)",
                     re.IGNORECASE)
#: Bytes in the tool's "MB" (it divides kilobytes by 1024).
TOOL_MB = 1024 * 1024


class BenchmarkOutputError(CompofaError):
    """benchmark_model failed, or printed something compofa cannot read."""


@dataclass(frozen=True)
class Phase:
    """One statistics line of benchmark_model (its warm-up or its timed runs), in microseconds.

    `first`, `min`, `max` and `std` are absent when all runs took the same
    time (the tool then prints only ``curr``).
    """

    count: int
    curr: float | None = None
    first: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    all_same: bool = False

    @classmethod
    def parse(cls, line: str) -> Phase:
        fields = {key: float(value) for key, value in _FIELD.findall(line)}
        if "count" not in fields:
            raise BenchmarkOutputError(f"benchmark_model printed a statistics line without a count: {line.strip()!r}")
        count = int(fields["count"])
        same = count > 0 and "first" not in fields
        if count > 0 and "curr" not in fields:
            raise BenchmarkOutputError(f"benchmark_model printed a statistics line without its last run: "
                                       f"{line.strip()!r}")
        return cls(count, fields.get("curr"), fields.get("first"), fields.get("min"), fields.get("max"),
                   fields.get("avg", fields.get("curr") if same else None), same)

    def runs_us(self) -> tuple[float, ...] | None:
        """Every run of the phase, in order, when the line names each one (at most two runs, or all the same)."""
        if self.count == 0:
            return ()
        assert self.curr is not None
        if self.all_same:
            return (self.curr,) * self.count
        if self.count == 1:
            return (self.curr,)
        if self.count == 2:
            assert self.first is not None
            return (self.first, self.curr)
        return None

    def known_runs_us(self) -> tuple[float, ...]:
        """The runs the line names one by one: all of them (`runs_us`), or else the first and the last."""
        runs = self.runs_us()
        if runs is not None:
            return runs
        assert self.first is not None and self.curr is not None
        return (self.first, self.curr)

    @property
    def total_us(self) -> float:
        """The phase's time in all (count times the average)."""
        return self.count * self.avg if self.count and self.avg is not None else 0.0


@dataclass(frozen=True)
class BenchmarkRun:
    """What one invocation of benchmark_model reported."""

    warmup: Phase
    timed: Phase
    init_us: float | None
    #: The tool's resident memory above what it held at its start, over loading and every run (MiB as it
    #: prints them); None where it printed no memory line.
    memory_mib: float | None = None

    def samples_ms(self, runs_per_sample: int) -> list[float]:
        """The invocation's samples: each timed run (``runs_per_sample`` 1), or one mean of all its runs."""
        if self.timed.count == 0:
            raise BenchmarkOutputError("benchmark_model made no timed run (its max_secs ended the phase first)")
        if runs_per_sample == 1:
            runs = self.timed.runs_us()
            if runs is None:
                raise BenchmarkOutputError(f"benchmark_model made {self.timed.count} timed runs where at most 2 were "
                                           "asked for, so they cannot be read one by one")
            return [run / 1000 for run in runs]
        assert self.timed.avg is not None
        return [self.timed.avg / 1000]


def parse_benchmark_output(text: str) -> BenchmarkRun:
    """Read one invocation's output (stdout and stderr together): its warm-up, its timed runs and its Init time."""
    lines = text.splitlines()
    stats = [Phase.parse(line) for line in lines if _STAT_LINE.match(line.strip())]
    init = memory = None
    for line in lines:
        match = _INIT.search(line)
        if match:
            init = float(match.group(1))
        found = _MEMORY.search(line)
        if found:
            memory = float(found.group(1))
    if len(stats) != 2:
        raise BenchmarkOutputError(failure_line(text) if not stats else
                                   f"benchmark_model printed {len(stats)} statistics lines, not 2 (warm-up, timed)")
    return BenchmarkRun(stats[0], stats[1], init, memory)


def failure_line(text: str) -> str:
    """Why an invocation failed, in one line: benchmark_model's own error, or its last line."""
    errors = [m.group(1).strip() for line in text.splitlines() if (m := _ERROR.match(line.strip()))]
    errors = [error for error in errors if error != "Benchmarking failed."] or errors
    if errors:
        return f"benchmark_model failed: {errors[0]}"
    last = [line.strip() for line in text.splitlines() if line.strip()]
    return f"benchmark_model failed: {last[-1]}" if last else "benchmark_model printed nothing"


@dataclass(frozen=True)
class BenchmarkCommand:
    """How benchmark_model is run: the binary on the phone, its threads and delegate, its runs per invocation."""

    binary: str
    threads: int = 1
    xnnpack: bool = True
    warmup_runs: int = 2
    max_secs: float = DEFAULT_MAX_SECS

    def flags(self) -> list[str]:
        """Every flag but the model and the number of timed runs."""
        return [
            f"--num_threads={self.threads}",
            f"--use_xnnpack={'true' if self.xnnpack else 'false'}",
            f"--warmup_runs={self.warmup_runs}",
            "--warmup_min_secs=0",  # else the tool warms up for half a second whatever warmup_runs says
            "--min_secs=0",  # else it runs for a second at least, however many runs that makes
            f"--max_secs={self.max_secs:g}",
        ]

    def argv(self, graph: str, runs: int) -> list[str]:
        """The command line that times `graph` (a path on the phone) `runs` times after the warm-up."""
        return [self.binary, f"--graph={graph}", *self.flags(), f"--num_runs={runs}"]

    def shell_function(self, name: str, pin: Sequence[str] = ()) -> str:
        """A shell function `name` ROLE GRAPH RUNS that runs the tool on GRAPH between markers naming ROLE.

        Pinned by `pin` (``taskset MASK``); its output and errors go to stdout, then its exit status. A failed
        run ends the script: the runs after it would fail alike.
        """
        command = shlex.join([*pin, self.binary])
        return (f'{name}() {{ echo "{MARK} run $1"; {command} --graph="$2" {shlex.join(self.flags())} '
                f'--num_runs="$3" 2>&1; s=$?; echo "{MARK} status $s"; [ "$s" = 0 ] || exit 0; }}')
