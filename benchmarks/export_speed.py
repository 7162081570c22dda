"""Export speed: all 243 CompOFA subnets to ONNX, loaded by ONNX Runtime.

Goal (issue "Foundation"): all 243 `compofa` subnets (w1.2) at one resolution
exported and loadable by ONNX Runtime in <= 20 s on a 2-core machine, outputs
equal to PyTorch. Also: the legacy TorchScript exporter per subnet, and subnet
extraction and forward time of our supernet against the reference `ofa`
package on the same configurations (ratio, same run).

Run: ``python benchmarks/export_speed.py`` (``--quick`` for a smoke run).
Prints tables; asserts nothing. Don't run other work meanwhile.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from compofa.space import SubnetSpec, get_space
from compofa.supernet import Supernet
from compofa.graphs.cache import OnnxExporter
from compofa.supernet.export import SupernetWeights, write_onnx
from compofa.supernet.fresh import fresh_supernet


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_then_load(supernet: Supernet, specs: list[SubnetSpec], cache: str) -> dict[str, float]:
    """Export every spec, then create an ONNX Runtime session for each."""
    start = time.perf_counter()
    exporter = OnnxExporter(SupernetWeights(supernet), cache_dir=cache)
    hashed = time.perf_counter()
    paths = [exporter.path(spec) for spec in specs]
    exported = time.perf_counter()
    for path in paths:
        session(path)
    loaded = time.perf_counter()
    return {
        "megabytes": sum(path.stat().st_size for path in Path(cache).rglob("*") if path.is_file()) / 1e6,
        "hash weights": hashed - start,
        "export": exported - hashed,
        "load in ORT": loaded - exported,
        "total": loaded - start,
        "misses": exporter.misses,
        "hits": exporter.hits,
    }


def export_and_load_pipelined(supernet: Supernet, specs: list[SubnetSpec], cache: str) -> float:
    """Export in this thread while a second thread loads finished files (2 cores)."""
    start = time.perf_counter()
    exporter = OnnxExporter(SupernetWeights(supernet), cache_dir=cache)
    ready: queue.Queue[Path | None] = queue.Queue(maxsize=8)

    def load_all() -> None:
        while (path := ready.get()) is not None:
            session(path)

    loader = threading.Thread(target=load_all)
    loader.start()
    for spec in specs:
        ready.put(exporter.path(spec))
    ready.put(None)
    loader.join()
    return time.perf_counter() - start


def parity(supernet: Supernet, specs: list[SubnetSpec], cache: str) -> tuple[float, str]:
    """Worst max|ORT - PyTorch| / max|PyTorch| over `specs`."""
    exporter = OnnxExporter(SupernetWeights(supernet), cache_dir=cache)
    generator = torch.Generator().manual_seed(0)
    worst, worst_spec = 0.0, ""
    for spec in specs:
        x = torch.randn(1, 3, spec.resolution, spec.resolution, generator=generator)
        with torch.no_grad():
            expected = supernet(x, spec).numpy()
        got = session(exporter.path(spec)).run(None, {"input": x.numpy()})[0]
        error = float(np.abs(got - expected).max() / np.abs(expected).max())
        if error > worst:
            worst, worst_spec = error, str(spec)
    return worst, worst_spec


def legacy_export(supernet: Supernet, specs: list[SubnetSpec], folder: str) -> list[float]:
    times = []
    for index, spec in enumerate(specs):
        start = time.perf_counter()
        write_onnx(supernet, spec, Path(folder) / f"legacy{index}.onnx", method="torch", fingerprint="-")
        times.append(time.perf_counter() - start)
    return times


def reference_comparison(specs: list[SubnetSpec], repeats: int) -> dict[str, tuple[float, float]] | None:
    """Extraction and forward time: ours vs the reference `ofa` package (same weights, same configs)."""
    try:
        from ofa.imagenet_classification.elastic_nn.modules.dynamic_op import DynamicSeparableConv2d
        from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
    except ImportError:
        return None
    from compofa.supernet.checkpoint import load_state, unwrap_checkpoint

    DynamicSeparableConv2d.KERNEL_TRANSFORM_MODE = None  # CompOFA: plain centre crops
    reference = OFAMobileNetV3(width_mult=1.2, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    reference.eval()
    ours = Supernet("mobilenetv3", 1.2, kernel_transform=False).eval()
    load_state(ours, unwrap_checkpoint(reference.state_dict())[0])

    def timed(function) -> float:  # type: ignore[no-untyped-def]
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    results: dict[str, list[float]] = {"extract ours": [], "extract ofa": [], "forward ours": [], "forward ofa": []}
    x = torch.randn(8, 3, 224, 224)
    with torch.no_grad():
        for spec in specs:
            ofa_dict = spec.to_ofa_dict()

            def ofa_extract() -> None:
                reference.set_active_subnet(ks=ofa_dict["ks"], e=ofa_dict["e"], d=ofa_dict["d"])
                reference.get_active_subnet(preserve_weight=True)

            def ofa_forward() -> None:
                reference.set_active_subnet(ks=ofa_dict["ks"], e=ofa_dict["e"], d=ofa_dict["d"])
                reference(x)

            results["extract ours"].append(timed(lambda: ours.subnet(spec)))
            results["extract ofa"].append(timed(ofa_extract))
            results["forward ours"].append(timed(lambda: ours(x, spec)))
            results["forward ofa"].append(timed(ofa_forward))
    return {
        "extract": (statistics.mean(results["extract ours"]), statistics.mean(results["extract ofa"])),
        "forward (batch 8, 224)": (statistics.mean(results["forward ours"]), statistics.mean(results["forward ofa"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few subnets only (smoke run)")
    parser.add_argument("--resolution", type=int, default=224)
    args = parser.parse_args()
    torch.set_num_threads(1)

    specs = list(get_space("compofa").enumerate([args.resolution]))
    if args.quick:
        specs = specs[::40]
    step = max(1, len(specs) // 12)
    supernet = fresh_supernet("mobilenetv3", 1.2, kernel_transform=False)

    print(f"compofa w1.2, {len(specs)} subnets at {args.resolution}, ONNX Runtime {ort.__version__} (1 thread), "
          f"torch {torch.__version__} (1 thread)\n")
    with tempfile.TemporaryDirectory() as cold, tempfile.TemporaryDirectory() as piped, \
            tempfile.TemporaryDirectory() as scratch:
        first = export_then_load(supernet, specs, cold)
        warm = export_then_load(supernet, specs, cold)
        pipelined = export_and_load_pipelined(supernet, specs, piped)
        worst, worst_spec = parity(supernet, specs, cold)
        legacy = legacy_export(supernet, specs[::step], scratch)

    n = len(specs)
    print("| export of all subnets + ONNX Runtime load | seconds | ms per subnet |")
    print("|---|---:|---:|")
    for label, stats in (("empty cache", first), ("warm cache (all hits)", warm)):
        for part in ("hash weights", "export", "load in ORT", "total"):
            print(f"| {label}: {part} | {stats[part]:.2f} | {stats[part] / n * 1000:.1f} |")
    print(f"| empty cache, export and load pipelined on 2 threads | {pipelined:.2f} | {pipelined / n * 1000:.1f} |")
    legacy_mean = statistics.mean(legacy)
    print(f"| legacy torch.onnx.export (TorchScript), {len(legacy)} subnets | {sum(legacy):.2f} | "
          f"{legacy_mean * 1000:.1f} |")
    print(f"| legacy, extrapolated to {n} subnets (export only) | {legacy_mean * n:.1f} | |")
    print(f"\ncache: {first['misses']} misses then {warm['hits']} hits, {first['megabytes']:.0f} MB on disk (graphs + shared weights); "
          "worst ORT vs PyTorch "
          f"max|diff|/max|logit| = {worst:.2e} ({worst_spec})\n")

    comparison = reference_comparison(specs[:: max(1, n // 30)], repeats=3)
    if comparison is None:
        print("reference package `ofa` not installed: extraction/forward comparison skipped")
        return
    print("| same configs, same weights (median of 3, mean over configs) | ours ms | ofa ms | ofa / ours |")
    print("|---|---:|---:|---:|")
    for label, (ours, theirs) in comparison.items():
        print(f"| {label} | {ours * 1000:.1f} | {theirs * 1000:.1f} | {theirs / ours:.2f}x |")


if __name__ == "__main__":
    main()
