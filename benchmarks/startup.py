"""Start-up of the quick commands, and the size of the torch-free install.

Goals (issue "One house for what comes next"):
- `compofa --help`, `--version`, `spaces`, `table show`, `search --latency
  lut:note10` and `devices` each start and finish in <= 0.5 s wall on a quiet
  machine, and import no torch;
- `pip install compofa` (no extras) fills <= 400 MB of site-packages.

Each command runs in 5 fresh processes (the `compofa` program of this Python's
environment); the table shows the median and the fastest wall time, the peak
memory of the median run, and which heavy libraries the command imported (from
one more run that reports `sys.modules`). The install size comes from a fresh
virtual environment in a temporary folder into which this checkout is
installed with pip, without extras, from the registries pip is set up to use.

Run: ``python benchmarks/startup.py`` (``--runs 3``, ``--no-install`` to skip
the install, which takes a minute or two). Prints tables; asserts nothing.
Don't run other work meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 0.5
GOAL_INSTALL_MB = 400.0
HEAVY = ("torch", "onnx", "onnxruntime", "yaml", "matplotlib", "numpy")

#: What is timed: a label and the arguments after `compofa` ({table} is a small table made first).
COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("compofa --help", ("--help",)),
    ("compofa --version", ("--version",)),
    ("compofa spaces", ("spaces",)),
    ("compofa table show T", ("table", "show", "{table}")),
    ("compofa search --latency lut:note10", ("search", "--space", "compofa", "--latency", "lut:note10",
                                             "--target", "25%")),
    ("compofa devices", ("devices",)),
)

# Runs one command in-process and reports which heavy libraries it left imported.
_MODULES_PROBE = """
import json, sys
from compofa.cli import main
try:
    main(sys.argv[1:], prog_name="compofa")
except SystemExit:
    pass
sys.stderr.write("\\nMODULES " + json.dumps([name for name in {heavy} if name in sys.modules]) + "\\n")
"""


@dataclass
class Timing:
    label: str
    median_s: float
    fastest_s: float
    peak_mb: float
    imported: list[str]
    ok: bool


# What a user's machine does: Python writes each module's bytecode on first import and reads it after.
# An environment that turns that off (PYTHONDONTWRITEBYTECODE) would time compiling compofa's sources
# on every start instead, so the commands run without it.
_ENVIRONMENT = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def _program() -> list[str]:
    script = Path(sys.executable).parent / "compofa"
    return [str(script)] if script.exists() else [sys.executable, "-m", "compofa"]


def _run_once(command: list[str], cwd: Path) -> tuple[float, float, int]:
    """Wall seconds, peak resident memory (MB) and exit status of one fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=_ENVIRONMENT)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting again
    return seconds, usage.ru_maxrss / 1024, process.returncode


def _imported(arguments: list[str], cwd: Path) -> list[str]:
    probe = _MODULES_PROBE.replace("{heavy}", repr(HEAVY))
    done = subprocess.run([sys.executable, "-c", probe, *arguments], cwd=cwd, capture_output=True, text=True,
                          env=_ENVIRONMENT)
    marker = [line for line in done.stderr.splitlines() if line.startswith("MODULES ")]
    return json.loads(marker[-1][len("MODULES "):]) if marker else ["?"]


def time_commands(runs: int, work: Path) -> list[Timing]:
    table = work / "lut.db"
    subprocess.run([*_program(), "profile", "--space", "compofa", "--device", "lut:note10", "--limit", "20",
                    "--table", str(table), "--quiet"], cwd=work, check=True, stdout=subprocess.DEVNULL)
    timings = []
    for label, template in COMMANDS:
        arguments = [part.replace("{table}", str(table)) for part in template]
        _run_once([*_program(), *arguments], work)  # warm the file cache and the bytecode
        samples = [_run_once([*_program(), *arguments], work) for _ in range(runs)]
        ordered = sorted(samples)
        median = ordered[len(ordered) // 2]
        timings.append(Timing(label, statistics.median(s[0] for s in samples), ordered[0][0], median[1],
                              _imported(arguments, work), all(s[2] == 0 for s in samples)))
    return timings


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(entry.lstat().st_size for entry in path.rglob("*") if entry.is_file() or entry.is_symlink())


def install_size(work: Path) -> tuple[float, float, list[tuple[str, float]]]:
    """Seconds to install, MB of site-packages, and the five largest packages in it (MB)."""
    environment = work / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = environment / "bin" / "python"
    start = time.perf_counter()
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(REPO)], cwd=work,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"pip install {REPO} failed:\n{done.stderr[-3000:]}")
    (site,) = (environment / "lib").glob("python*/site-packages")
    # pip and setuptools come with every venv; what `pip install compofa` adds is the rest
    baseline = {"pip", "setuptools", "_distutils_hack", "pkg_resources"}
    sizes: dict[str, int] = {}
    for entry in site.iterdir():
        name = entry.name.split("-")[0] if entry.name.endswith((".dist-info", ".data")) else entry.name
        name = name.removesuffix(".libs").removesuffix(".py").removesuffix(".pth").lower()
        if name.replace("_", "-") in baseline or name in baseline or name == "__pycache__":
            continue
        sizes[name] = sizes.get(name, 0) + _size(entry)
    total = sum(sizes.values()) / 1e6
    largest = sorted(((name, size / 1e6) for name, size in sizes.items()), key=lambda item: -item[1])[:5]
    return seconds, total, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command (default 5)")
    parser.add_argument("--no-install", action="store_true", help="skip measuring the install")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="compofa-startup-"))
    try:
        timings = time_commands(args.runs, work)
        print(f"start-up, {args.runs} fresh processes each ({' '.join(_program())}); goal <= {GOAL_SECONDS} s")
        print(f"{'command':<38} {'median s':>9} {'fastest s':>10} {'peak MB':>8}  {'goal':<5} imported")
        for t in timings:
            verdict = "ok" if t.median_s <= GOAL_SECONDS and t.ok and "torch" not in t.imported else "OVER"
            if not t.ok:
                verdict = "FAIL"
            print(f"{t.label:<38} {t.median_s:>9.3f} {t.fastest_s:>10.3f} {t.peak_mb:>8.0f}  {verdict:<5} "
                  f"{', '.join(t.imported) or '-'}")
        if not args.no_install:
            seconds, total, largest = install_size(work)
            verdict = "ok" if total <= GOAL_INSTALL_MB else "OVER"
            print(f"\n`pip install compofa` (no extras): {total:.0f} MB of site-packages, "
                  f"goal <= {GOAL_INSTALL_MB:.0f} MB ({verdict}); installed in {seconds:.0f} s")
            print("largest: " + ", ".join(f"{name} {size:.0f} MB" for name, size in largest))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
