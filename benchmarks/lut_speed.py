"""Layer lookup tables on this machine: build time against whole-table profiling, and accuracy.

Goal (issue "Layer lookup tables for any device"): a LUT built with ONNX Runtime
here predicts all 243 CompOFA subnets at 224 within +-10% and >= 95% of them
within +-5% (plain layer sum and calibrated figures both reported).

For each thread count: profile the 243 subnets (the whole-network truth), then
build the LUT of their 36 distinct layers right after, then validate. Both use
the default profiler settings of their command.

Run: ``python benchmarks/lut_speed.py`` (``--quick`` for a smoke run at 160 px
with short rounds). Prints a table; asserts nothing. Don't run other work meanwhile.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from compofa.devices import Settings
from compofa.lut import LookupTable
from compofa.profiler import ProfileConfig
from compofa.sources.subnet import SubnetSource
from compofa.tables import LatencyTable
from compofa.jobs.profile import ProfileRequest, profile_space
from compofa.jobs.lutbuild import LutBuildRequest, build_lut, layer_config
from compofa.jobs.lutcheck import Agreement, validate_lut


def figures(agreement: Agreement | None) -> list[str]:
    if agreement is None:
        return ["-"] * 6
    return [f"{agreement.rmspe:.2%}", f"{agreement.within_5:.1%}", f"{agreement.within_10:.1%}",
            f"{agreement.median_error:+.2%}", f"{agreement.spread:.2%}", f"{agreement.kendall_tau:.4f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts (default 1,2)")
    parser.add_argument("--quick", action="store_true", help="160 px and short rounds: a smoke run")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep each thread count's table and LUT under DIR/t{threads} (a new folder)")
    args = parser.parse_args()
    if args.keep is not None and args.keep.exists():
        parser.error(f"{args.keep} already exists: a resumed table would not time a whole profile; give a new folder")
    resolution = 160 if args.quick else 224
    # Short rounds are at the mercy of drift: the smoke run tolerates it rather than discard rounds.
    table_config = ProfileConfig(round_seconds=0.05, max_rounds=3, drift_threshold=0.2) if args.quick \
        else ProfileConfig()
    lut_config = dataclasses.replace(layer_config(max_rounds=3, round_seconds=0.02), drift_threshold=0.2) \
        if args.quick else layer_config()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        work = args.keep or Path(scratch)
        for threads in (int(t) for t in args.threads.split(",")):
            settings = Settings(threads=threads)
            folder = work / f"t{threads}"
            table = folder / "latency.db"
            folder.mkdir(parents=True)
            start = time.perf_counter()
            profile_space(ProfileRequest(table, "onnxruntime", SubnetSource("compofa", 1.2, cache_dir=work / "cache"),
                                         (resolution,), settings, table_config))
            profiled = time.perf_counter() - start
            start = time.perf_counter()
            build_lut(LutBuildRequest(folder / "lut", "onnxruntime", "compofa", 1.2, (resolution,), settings,
                                      lut_config, work / "cache"))
            built = time.perf_counter() - start
            with LatencyTable.open(table) as store:
                entries = store.entries()
            result = validate_lut(LookupTable.read(folder / "lut"), entries)
            fit = result.calibration
            rows.append([str(threads), f"{profiled:.0f}", f"{built:.0f}", f"{profiled / built:.1f}x", "layer sum",
                         *figures(result.raw)])
            rows.append(["", "", "", "", f"calibrated ({fit.scale:.3f} x sum {fit.offset_ms:+.2f} ms)" if fit else "-",
                         *figures(result.calibrated)])
            print(dataclasses.asdict(result)["worst"][:3])
    header = ["threads", "table s", "LUT s", "ratio", "estimate", "RMSPE", "within 5%", "within 10%",
              "median error", "spread", "Kendall tau"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print(f"\nONNX Runtime, compofa w1.2 at {resolution} px: 243 subnets profiled vs 36 layers built")
    for index, row in enumerate([header, *rows]):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


if __name__ == "__main__":
    main()
