"""What int8 costs and gives on this machine, one subnet at a time: quantizing, and latency against fp32.

For the smallest and the largest CompOFA subnet at each resolution asked, this
quantizes the subnet's fp32 graph afresh (an empty cache) the way `compofa
profile --precision int8` does: ONNX Runtime's static QDQ quantizer, and
OpenVINO's NNCF where nncf is installed, both calibrated on `--images` digits
(`compofa digits`); then it times fp32 and int8 on each runtime (1 thread,
batch 1, the seeded input every backend times), interleaving the setups in
`--rounds` rounds of `--seconds` each and reporting each setup's median of
round medians. The machine should be otherwise idle; nothing is asserted.

Run: ``python benchmarks/int8_cost.py`` (five minutes here, on a machine busy with other work);
``--resolution 160,224 --images 256 --rounds 7``.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", default="160,224")
    parser.add_argument("--images", type=int, default=256, help="calibration images")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.5, help="timed runs per setup and round")
    args = parser.parse_args()

    from compofa.devices import Settings, open_device
    from compofa.devices.base import Quantization
    from compofa.sources.calibration import calibration_set
    from compofa.sources.subnet import SubnetSource
    from compofa.space import get_space
    from compofa.supernet.train.data import write_digits

    design = get_space("compofa")
    runtimes = ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("nncf") else [])
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        write_digits(Path(folder) / "digits")
        digest = calibration_set(Path(folder) / "digits", args.images).digest
        recipe = Quantization(str(Path(folder) / "digits"), args.images, 0, digest)
        for resolution in (int(text) for text in args.resolution.split(",")):
            for size, spec in (("smallest", design.smallest(resolution)), ("largest", design.largest(resolution))):
                cache = Path(folder) / f"cache-{resolution}-{size}"
                source = SubnetSource("compofa", cache_dir=cache)
                source.onnx(spec, 1)  # the fp32 export is not part of quantizing
                setups: dict[str, tuple[Any, Any]] = {}
                for runtime in runtimes:
                    start = time.perf_counter()
                    int8 = open_device(runtime, source, Settings(precision="int8", quantization=recipe))
                    int8.prepare(spec).close()  # quantizes (calibration included) into the empty cache
                    quantize_s = time.perf_counter() - start
                    setups[f"{runtime} fp32"] = (open_device(runtime, source, Settings()), None)
                    setups[f"{runtime} int8"] = (int8, quantize_s)
                medians = _interleaved(setups, spec, args.rounds, args.seconds)
                for runtime in runtimes:
                    fp32, int8 = medians[f"{runtime} fp32"], medians[f"{runtime} int8"]
                    rows.append((f"{size} @{resolution}", runtime, setups[f"{runtime} int8"][1], fp32, int8))
    print(f"{'subnet':<15} {'runtime':<12} {'quantize s':>10} {'fp32 ms':>8} {'int8 ms':>8} {'int8/fp32':>9}")
    for subnet, runtime, quantize_s, fp32, int8 in rows:
        print(f"{subnet:<15} {runtime:<12} {quantize_s:>10.1f} {fp32:>8.2f} {int8:>8.2f} {int8 / fp32:>9.2f}")


def _interleaved(setups: dict[str, tuple[Any, Any]], spec: Any, rounds: int, seconds: float) -> dict[str, float]:
    """Each setup's median of round medians, the setups taking turns within every round (a fresh handle each)."""
    medians: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(rounds):
        for name, (device, _) in setups.items():
            handle = device.prepare(spec)
            device.time(handle, 20)  # warm-up
            samples: list[float] = []
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                samples += device.time(handle, 10)
            handle.close()
            medians[name].append(statistics.median(samples))
    return {name: statistics.median(values) for name, values in medians.items()}


if __name__ == "__main__":
    main()
