"""Front-aware against uniform profiling: wall time, and whether search picks the same subnets.

Goal (issue "Profiling that measures the whole space in a fraction of the
time"): on the paper's five search resolutions (160, 176, 192, 208, 224: 1215
CompOFA configurations), a front-aware profile (`--front-aware`: every
configuration one short round, then only those that could be on the
accuracy-latency front to the target) takes <= 1/4 of the wall time of a
uniform ±1% profile of the same configurations, measured in the same run of
this benchmark; exhaustive search on both tables (20 targets evenly over the
feasible range, the shipped predictor) picks the same subnet for >= 95% of the
targets, and where it does not, the two picks' latencies lie within each
other's intervals. With `--repeat`, a second front-aware run checks that two
independent runs agree as well.

Each profile is `compofa profile` (ONNX Runtime, 1 thread) into a fresh
table, with every graph exported beforehand into a shared cache so neither
run pays for exports. `--resolutions 160` (243 configurations) is a shorter
run of the same comparison. Prints tables; asserts nothing. Don't run other
work meanwhile.

Run: ``python benchmarks/front_aware.py`` (about two hours here; ``--quick``
is 40 subnets at 160 px; ``--limit 200`` a spread sample of 200 of the
configurations).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_RATIO = 0.25
GOAL_AGREEMENT = 0.95
TARGETS = 20


def compofa(*args: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "compofa", *args], env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"compofa {' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}")
    return done


def profile(table: Path, resolutions: str, limit: list[str], mode: str, environment: dict[str, str]) -> float:
    start = time.perf_counter()
    compofa("profile", "--resolution", resolutions, *limit, "--table", str(table), mode, "--quiet",
            environment=environment)
    return time.perf_counter() - start


def entries(table: Path, environment: dict[str, str]) -> dict[str, dict[str, float]]:
    """The table's entries by spec (`compofa table export` as JSON)."""
    exported = table.with_suffix(".json")
    compofa("table", "export", str(table), "--format", "json", "-o", str(exported), environment=environment)
    return {row["spec"]: row for row in json.loads(exported.read_text())}


def search(table: Path, resolutions: str, targets: str, environment: dict[str, str]) -> list[dict[str, object]]:
    found = compofa("search", "--latency", f"table:{table}", "--resolution", resolutions, "--strategy",
                    "exhaustive", "--target", targets, "--json", environment=environment)
    results: list[dict[str, object]] = json.loads(found.stdout)["results"]
    return results


#: `TARGETS` targets evenly over the feasible range search finds in each table, from its fastest subnet to
#: its slowest, as percentages of that way: each table is on its own reference's baseline, which on a machine
#: whose speed changes between regimes scales a whole table by a few percent, and the same share of each
#: table's range names the same place on the front.
SHARES = ",".join(f"{100 * (i + 0.5) / TARGETS:g}%" for i in range(TARGETS))


def picks(table: Path, resolutions: str, environment: dict[str, str]) -> tuple[list[str | None], list[float]]:
    """The subnet exhaustive search picks at each share of `table`'s range, and those targets in ms."""
    rows = search(table, resolutions, SHARES, environment)
    return ([str(row["spec"]) if row.get("spec") else None for row in rows],
            [float(str(row["target_ms"])) for row in rows])


def scale(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> float:
    """How much slower table b reads than table a: the median ratio over their common entries (their
    baselines may have been measured at different speeds of the machine)."""
    common = sorted(set(a) & set(b))
    ratios = sorted(b[spec]["median_ms"] / a[spec]["median_ms"] for spec in common)
    return ratios[len(ratios) // 2] if ratios else 1.0


def agreement(first: list[str | None], second: list[str | None], a: dict[str, dict[str, float]],
              b: dict[str, dict[str, float]]) -> tuple[int, int]:
    """(same picks, differing picks whose latencies lie within each other's intervals, b put on a's scale)."""
    same, overlapping = 0, 0
    factor = scale(a, b)
    for x, y in zip(first, second):
        if x == y:
            same += 1
        elif x is not None and y is not None and x in b and y in a:
            # the two picks' intervals overlap, b's divided by how much slower b reads
            if a[x]["ci_low_ms"] <= b[y]["ci_high_ms"] / factor and b[y]["ci_low_ms"] / factor <= a[x]["ci_high_ms"]:
                overlapping += 1
    return same, overlapping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", default="160,176,192,208,224")
    parser.add_argument("--repeat", action="store_true", help="a second front-aware run, compared with the first")
    parser.add_argument("--quick", action="store_true", help="40 subnets at 160 px")
    parser.add_argument("--limit", type=int, help="a spread sample of this many configurations of them all")
    parser.add_argument("--keep", help="an empty folder to keep the tables in (default: a temporary one)")
    args = parser.parse_args()
    count = 40 if args.quick else args.limit
    limit = ["--limit", str(count)] if count else []
    resolutions = "160" if args.quick else args.resolutions
    with tempfile.TemporaryDirectory(prefix="compofa-front-bench-") as scratch:
        folder = Path(args.keep) if args.keep else Path(scratch)
        if args.keep and (not folder.is_dir() or any(folder.iterdir())):
            raise SystemExit(f"--keep {folder}: give an empty folder that exists")
        environment = {**os.environ, "COMPOFA_CACHE_DIR": str(folder / "cache")}
        environment.pop("PYTHONDONTWRITEBYTECODE", None)
        # export every graph once, outside the timed runs (a uniform run prepares every configuration before its
        # first round; the budget then ends it)
        compofa("profile", "--resolution", resolutions, *limit, "--table", str(folder / "warm.db"), "--uniform",
                "--max-rounds", "1", "--min-rounds", "1", "--round-seconds", "0.01", "--time-budget", "1s",
                "--quiet", environment=environment)
        walls: dict[str, float] = {}
        for name, mode in (("uniform", "--uniform"), ("front", "--front-aware"),
                           *((("front2", "--front-aware"),) if args.repeat else ())):
            walls[name] = profile(folder / f"{name}.db", resolutions, limit, mode, environment)
            print(f"  {name}: {walls[name]:.0f} s", flush=True)
        tables = {name: entries(folder / f"{name}.db", environment) for name in walls}
        found = {name: picks(folder / f"{name}.db", resolutions, environment) for name in walls}
        chosen = {name: specs for name, (specs, _) in found.items()}
        low, high = min(found["uniform"][1]), max(found["uniform"][1])
        configurations = len(tables["uniform"])
        print(f"\n{configurations} configurations at {resolutions} px, ONNX Runtime 1 thread")
        print("| profile | wall s | of uniform | coarse entries |")
        print("|---|---:|---:|---:|")
        for name, wall in walls.items():
            coarse = sum(row.get("reason") == "coarse" for row in tables[name].values())
            print(f"| {name} | {wall:.0f} | {wall / walls['uniform']:.3f} | {coarse} |")
        ratio = walls["front"] / walls["uniform"]
        verdict = "met" if ratio <= GOAL_RATIO else "missed"
        print(f"front-aware / uniform: {ratio:.3f} (goal <= {GOAL_RATIO}): {verdict}")
        print(f"\n| exhaustive search, {TARGETS} targets over each table's range (uniform: {low:.2f}..{high:.2f} ms) "
              "| same pick | other picks within each other's intervals | b reads slower by |")
        print("|---|---:|---:|---:|")
        pairs = [("uniform", "front")] + ([("front", "front2")] if args.repeat else [])
        for first, second in pairs:
            same, overlapping = agreement(chosen[first], chosen[second], tables[first], tables[second])
            share = same / TARGETS
            factor = scale(tables[first], tables[second])
            print(f"| {first} vs {second} | {same}/{TARGETS} ({share:.0%}, goal >= {GOAL_AGREEMENT:.0%}) | "
                  f"{overlapping}/{TARGETS - same} | {factor - 1:+.1%} |")


if __name__ == "__main__":
    main()
