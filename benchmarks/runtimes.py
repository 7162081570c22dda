"""The CPU runtimes (and precisions) people deploy with, on all 243 subnets: speed and whether they rank alike.

Goal (issue "The runtimes and precisions people deploy with"): every CPU
runtime compofa can drive here profiles the 243 CompOFA subnets at one
resolution (ONNX Runtime, OpenVINO, LiteRT with XNNPACK, ExecuTorch with
XNNPACK; 1 thread, batch 1), and the table says for each against FP32 ONNX
Runtime on the same machine: the median latency over the subnets, how often
exhaustive search picks the same subnet at 20 targets (the same shares of each
table's own range, the shipped predictor), and Kendall's tau of the latencies.

Each setup is `compofa profile --uniform` into its own table under `--keep`
(or a temporary folder), with its models written (or lowered) beforehand so no
run pays for exports; a setup whose library is missing is left out with the
reason. `--limit N` profiles a spread sample of N subnets. Prints tables;
asserts nothing. Don't run other work meanwhile.

Run: ``python benchmarks/runtimes.py`` (four profiles of 16-22 minutes each here, and the
ExecuTorch programs' lowering first: see the README); ``--quick`` is 20
subnets at 160 px; ``--setups onnxruntime,litert`` picks setups.
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

TARGETS = 20
SHARES = ",".join(f"{100 * (i + 0.5) / TARGETS:g}%" for i in range(TARGETS))
#: Setups as `compofa profile` arguments: the device, then its precision.
SETUPS = {
    "onnxruntime": ("onnxruntime", "fp32"),
    "openvino": ("openvino", "fp32"),
    "litert": ("litert", "fp32"),
    "executorch": ("executorch", "fp32"),
}
BASELINE = "onnxruntime"


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
    parser.add_argument("--keep", help="an empty folder to keep the tables in (default: a temporary one)")
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
        if args.keep and (not folder.is_dir() or any(folder.iterdir())):
            raise SystemExit(f"--keep {folder}: give an empty folder that exists")
        environment = {**os.environ, "COMPOFA_CACHE_DIR": str(folder / "cache")}
        walls: dict[str, float] = {}
        prepared: dict[str, float] = {}
        reasons = unavailable(environment)
        for name in names:
            device, precision = SETUPS[name]
            reason = reasons.get(device, f"no backend {device!r}")
            if reason:
                print(f"  {name}: left out ({reason})", flush=True)
                continue
            common = ["--device", device, "--precision", precision, "--resolution", resolution, *limit, "--quiet"]
            start = time.perf_counter()  # every model written or lowered once, outside the timed run
            compofa("profile", *common, "--table", str(folder / f"{name}-warm.db"), "--uniform", "--max-rounds",
                    "1", "--min-rounds", "1", "--round-seconds", "0.01", "--time-budget", "1s",
                    environment=environment)
            prepared[name] = time.perf_counter() - start
            start = time.perf_counter()
            compofa("profile", *common, "--table", str(folder / f"{name}.db"), "--uniform", environment=environment)
            walls[name] = time.perf_counter() - start
            print(f"  {name}: models {prepared[name]:.0f} s, profile {walls[name]:.0f} s", flush=True)
        rows = {}
        for name in walls:
            table = folder / f"{name}.db"
            exported = table.with_suffix(".json")
            compofa("table", "export", str(table), "--format", "json", "-o", str(exported), environment=environment)
            entries = json.loads(exported.read_text())
            found = json.loads(compofa("search", "--latency", f"table:{table}", "--resolution", resolution,
                                       "--strategy", "exhaustive", "--target", SHARES, "--json",
                                       environment=environment).stdout)["results"]
            medians = sorted(row["median_ms"] for row in entries)
            rows[name] = {"median": medians[len(medians) // 2], "picks": [row.get("spec") for row in found],
                          "count": len(entries)}
        base = folder / f"{BASELINE}.db"
        print(f"\n{rows[BASELINE]['count']} subnets at {resolution} px, 1 thread, batch 1")
        print("| setup | models s | profile s | median of medians ms | x ONNX Runtime | same pick as "
              "ONNX Runtime fp32 | Kendall tau |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, row in rows.items():
            same = sum(a == b for a, b in zip(row["picks"], rows[BASELINE]["picks"]))
            tau = 1.0
            if name != BASELINE:
                diff = json.loads(compofa("table", "diff", str(base), str(folder / f"{name}.db"), "--json",
                                          environment=environment).stdout)
                tau = float(diff["kendall_tau"])
            print(f"| {name} {SETUPS[name][1]} | {prepared[name]:.0f} | {walls[name]:.0f} | {row['median']:.2f} | "
                  f"{row['median'] / rows[BASELINE]['median']:.2f} | {same}/{TARGETS} | {tau:.3f} |")


if __name__ == "__main__":
    main()
