"""The CPU runtimes and precisions people deploy with, on all 243 subnets: speed and whether they rank alike.

Goal (issue "The runtimes and precisions people deploy with"): every CPU
runtime compofa can drive here profiles the 243 CompOFA subnets at one
resolution (ONNX Runtime, OpenVINO, LiteRT with XNNPACK, ExecuTorch with
XNNPACK; 1 thread, batch 1), in fp32 and, where the runtime has one, in int8
(ONNX Runtime's static QDQ model, OpenVINO's NNCF model, both calibrated on
the digits `compofa digits` writes), and the table says for each against FP32
ONNX Runtime on the same machine: the median latency over the subnets, how
often exhaustive search picks the same subnet at 20 targets (the same shares
of each table's own range, the shipped predictor), and Kendall's tau of the
latencies; an int8 setup also says how often it picks what its own runtime's
fp32 picks. The median p99 and peak memory over the subnets come with them.

Each setup is `compofa profile --uniform` into its own table under `--keep`
(or a temporary folder; a table already there is resumed, its seconds then
only what was missing), with its models written, quantized or lowered
beforehand so no run pays for exports; a setup whose library is missing is
left out with the reason. `--limit N` profiles a spread sample of N subnets;
`--cache DIR` reuses an export cache (ExecuTorch's programs take tens of
seconds each to lower: see the README). Prints tables; asserts nothing. Don't
run other work meanwhile.

Run: ``python benchmarks/runtimes.py`` (a profile of 16-22 minutes a setup here with the default
settings; ``--target-ci 0.02 --max-rounds 4`` about halves it); ``--quick`` is 20 subnets at 160 px;
``--setups onnxruntime,onnxruntime-int8`` picks setups.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from compofa.tables.compare import kendall_tau

TARGETS = 20
SHARES = ",".join(f"{100 * (i + 0.5) / TARGETS:g}%" for i in range(TARGETS))
#: Setups as `compofa profile` arguments: the device, then its precision.
SETUPS = {
    "onnxruntime": ("onnxruntime", "fp32"),
    "onnxruntime-int8": ("onnxruntime", "int8"),
    "openvino": ("openvino", "fp32"),
    "openvino-int8": ("openvino", "int8"),
    "litert": ("litert", "fp32"),
    "executorch": ("executorch", "fp32"),
}
BASELINE = "onnxruntime"
#: Calibration images an int8 setup is quantized with.
CALIBRATION_IMAGES = 256


def compofa(*args: str, environment: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "compofa", *args], env=environment, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise SystemExit(f"compofa {' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}")
    return done


def unavailable(environment: dict[str, str]) -> dict[str, str]:
    """Why each backend that cannot run here cannot (`compofa devices --json`); the others map to ''."""
    listed = json.loads(compofa("devices", "--json", environment=environment).stdout)
    return {str(row["name"]): "" if row["available"] else str(row["reason"]) for row in listed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", default="224")
    parser.add_argument("--limit", type=int, help="a spread sample of this many subnets")
    parser.add_argument("--quick", action="store_true", help="20 subnets at 160 px")
    parser.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, of {', '.join(SETUPS)}")
    parser.add_argument("--keep", help="a folder to keep the tables in (default: a temporary one); tables already "
                                       "there are resumed, so a second run adds setups to the same subnets")
    parser.add_argument("--cache", help="the export cache to use (default: one in the tables' folder)")
    parser.add_argument("--calibration", help="images int8 setups calibrate on (default: the digits, written at the "
                                              "resolution into the tables' folder)")
    parser.add_argument("--calibration-images", default=str(CALIBRATION_IMAGES),
                        help="images an int8 setup is calibrated on (latency hardly depends on them; quantizing "
                             "costs about 10-40 s a subnet with 256)")
    parser.add_argument("--target-ci", default="0.01")
    parser.add_argument("--min-rounds", default="3")
    parser.add_argument("--max-rounds", default="8")
    parser.add_argument("--round-seconds", default="0.4")
    args = parser.parse_args()
    resolution = "160" if args.quick else args.resolution
    count = 20 if args.quick else args.limit
    limit = ["--limit", str(count)] if count else []
    names = [name.strip() for name in args.setups.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SETUPS))
    if unknown:
        raise SystemExit(f"--setups: unknown {', '.join(unknown)}; known: {', '.join(SETUPS)}")
    if BASELINE not in names:
        names.insert(0, BASELINE)
    with tempfile.TemporaryDirectory(prefix="compofa-runtimes-bench-") as scratch:
        folder = Path(args.keep) if args.keep else Path(scratch)
        if args.keep and not folder.is_dir():
            raise SystemExit(f"--keep {folder}: give a folder that exists")
        environment = {**os.environ, "COMPOFA_CACHE_DIR": str(Path(args.cache or folder / "cache").resolve())}
        walls: dict[str, float] = {}
        prepared: dict[str, float] = {}
        reasons = unavailable(environment)
        calibration = args.calibration
        measuring = ["--target-ci", args.target_ci, "--min-rounds", args.min_rounds, "--max-rounds", args.max_rounds,
                     "--round-seconds", args.round_seconds]
        for name in names:
            device, precision = SETUPS[name]
            reason = reasons.get(device, f"no backend {device!r}")
            if reason:
                print(f"  {name}: left out ({reason})", flush=True)
                continue
            int8 = []
            if precision == "int8":
                if calibration is None:
                    calibration = str(folder / "digits")
                    compofa("digits", "-o", calibration, "--size", resolution, environment=environment)
                int8 = ["--calibration", calibration, "--calibration-images", args.calibration_images]
            common = ["--device", device, "--precision", precision, *int8, "--resolution", resolution, *limit,
                      "--quiet"]
            start = time.perf_counter()  # every model written or lowered once, outside the timed run
            compofa("profile", *common, "--table", str(folder / f"{name}-warm.db"), "--uniform", "--max-rounds",
                    "1", "--min-rounds", "1", "--round-seconds", "0.01", "--time-budget", "1s",
                    environment=environment)
            prepared[name] = time.perf_counter() - start
            start = time.perf_counter()
            compofa("profile", *common, "--table", str(folder / f"{name}.db"), "--uniform", *measuring,
                    environment=environment)
            walls[name] = time.perf_counter() - start
            print(f"  {name}: models {prepared[name]:.0f} s, profile {walls[name]:.0f} s", flush=True)
        rows = {}
        for name in walls:
            table = folder / f"{name}.db"
            exported = table.with_suffix(".json")
            compofa("table", "export", str(table), "--format", "json", "-o", str(exported), environment=environment)
            entries = json.loads(exported.read_text())
            found = json.loads(compofa("search", "--latency", f"table:{table}", "--precision", SETUPS[name][1],
                                       "--resolution", resolution,
                                       "--strategy", "exhaustive", "--target", SHARES, "--json",
                                       environment=environment).stdout)["results"]
            rows[name] = {"median": middle(row["median_ms"] for row in entries),
                          "p99": middle(row["p99_ms"] for row in entries if row.get("p99_ms") is not None),
                          "memory": middle(row["peak_memory_mb"] for row in entries
                                           if row.get("peak_memory_mb") is not None),
                          "picks": [row.get("spec") for row in found], "count": len(entries),
                          "medians": {row["spec"]: row["median_ms"] for row in entries}}
        print(f"\n{rows[BASELINE]['count']} subnets at {resolution} px, 1 thread, batch 1")
        print("| setup | models s | profile s | median of medians ms | x ONNX Runtime | median p99 ms | median peak "
              "MB | same pick as ONNX Runtime fp32 | same pick as its fp32 | Kendall tau |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, row in rows.items():
            same = sum(a == b for a, b in zip(row["picks"], rows[BASELINE]["picks"]))
            own = name.removesuffix("-int8")
            as_own = (f"{sum(a == b for a, b in zip(row['picks'], rows[own]['picks']))}/{TARGETS}"
                      if name != own and own in rows else "")
            # matched by subnet: a table of another precision keys its entries apart (`table diff` compares one setup)
            common = sorted(set(row["medians"]) & set(rows[BASELINE]["medians"]))
            tau = kendall_tau(np.array([rows[BASELINE]["medians"][spec] for spec in common]),
                              np.array([row["medians"][spec] for spec in common]))
            print(f"| {name} | {prepared[name]:.0f} | {walls[name]:.0f} | {row['median']:.2f} | "
                  f"{row['median'] / rows[BASELINE]['median']:.2f} | {row['p99']:.2f} | {row['memory']:.1f} | "
                  f"{same}/{TARGETS} | {as_own} | {tau:.3f} |")


def middle(values: Iterable[float]) -> float:
    """The median of `values` (nan for none)."""
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else float("nan")


if __name__ == "__main__":
    main()
