"""LiteRT conversion speed: all 243 CompOFA subnets written as ``.tflite`` models, checked against ONNX Runtime.

Goal (issue "Profile any device you can reach", Android phones): converting the
243 `compofa` subnets (w1.2, seeded weights) at 224 to LiteRT models takes
<= 120 s on this 2-core machine (a general converter, litert-torch, takes 31 s a
subnet), with outputs equal to ONNX Runtime's.

The conversion is `TfliteExporter` into an empty temporary cache: the seeded
weights are drawn, each model's flatbuffer is written from its network plan
and saved. A second pass over the warm cache shows the lookups alone, a third
builds the flatbuffers again without writing them (the writer's own share).
About five subnets are then run by the LiteRT interpreter and ONNX Runtime
(one thread each) on the same image.

Run: ``python benchmarks/tflite_speed.py`` (``--quick`` for a smoke run).
Prints a table; asserts nothing. Don't run other work meanwhile.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import onnxruntime as ort

from compofa.graphs.onnx_graph import build_onnx_model
from compofa.graphs.seeded import SeededWeights
from compofa.graphs.tflite_cache import TfliteExporter
from compofa.graphs.tflite_graph import build_tflite_model
from compofa.space import DEFAULT_SPACE, SubnetSpec, get_space


def convert(specs: list[SubnetSpec], folder: str) -> tuple[SeededWeights, dict[str, float]]:
    """Draw the weights and write every spec's model into an empty cache, then look them all up again."""
    start = time.perf_counter()
    family = get_space(specs[0].space).family
    weights = SeededWeights(family, family.default_width)
    exporter = TfliteExporter(weights, cache_dir=folder)
    paths = [exporter.path(spec) for spec in specs]
    converted = time.perf_counter()
    for spec in specs:
        exporter.path(spec)
    looked_up = time.perf_counter()
    build_only = time.perf_counter()
    for spec in specs:
        build_tflite_model(weights.plan(spec), weights)
    built = time.perf_counter()
    return weights, {
        "convert": converted - start,
        "warm": looked_up - converted,
        "build only": built - build_only,
        "megabytes": sum(path.stat().st_size for path in paths) / 1e6,
        "misses": exporter.misses,
        "hits": exporter.hits,
    }


def parity(weights: SeededWeights, specs: list[SubnetSpec], folder: str) -> list[tuple[SubnetSpec, float, float]]:
    """(spec, max |LiteRT - ORT|, that over max |ORT|) for each spec, from the cached files."""
    from ai_edge_litert.interpreter import Interpreter

    exporter = TfliteExporter(weights, cache_dir=folder)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    found = []
    for spec in specs:
        image = np.random.default_rng(0).standard_normal((1, 3, spec.resolution, spec.resolution), dtype=np.float32)
        onnx = build_onnx_model(weights.plan(spec), weights).to_proto().SerializeToString()
        session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
        expected = session.run(None, {"input": image})[0]
        interpreter = Interpreter(model_path=str(exporter.path(spec)), num_threads=1)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image.transpose(0, 2, 3, 1).copy())
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        difference = float(np.abs(got - expected).max())
        found.append((spec, difference, difference / float(np.abs(expected).max())))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few subnets only (smoke run)")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--space", default=DEFAULT_SPACE, help=f"design space (default {DEFAULT_SPACE})")
    args = parser.parse_args()

    specs = list(get_space(args.space).enumerate([args.resolution]))
    if args.quick:
        specs = specs[::40]
    n = len(specs)
    print(f"{args.space}, {n} subnets at {args.resolution}, seeded weights, ONNX Runtime {ort.__version__} "
          "(1 thread), LiteRT interpreter (1 thread)\n")
    with tempfile.TemporaryDirectory() as folder:
        weights, stats = convert(specs, folder)
        try:
            checked = parity(weights, specs[:: max(1, n // 5)][:5], folder)
        except ImportError:
            checked = []

    print("| LiteRT models of all subnets | subnets | seconds | seconds per subnet | MB written |")
    print("|---|---:|---:|---:|---:|")
    print(f"| empty cache: weights drawn, models built and written | {n} | {stats['convert']:.1f} | "
          f"{stats['convert'] / n:.3f} | {stats['megabytes']:.0f} |")
    print(f"| warm cache (all hits) | {n} | {stats['warm']:.2f} | {stats['warm'] / n:.4f} | 0 |")
    print(f"| flatbuffers only (weights drawn, nothing written) | {n} | {stats['build only']:.1f} | "
          f"{stats['build only'] / n:.3f} | - |")
    print(f"\ncache: {stats['misses']:.0f} misses then {stats['hits']:.0f} hits\n")
    if not checked:
        print("ai_edge_litert not installed (pip install ai-edge-litert): the check against ONNX Runtime is skipped")
        return
    print("| subnet | max abs difference vs ONNX Runtime | relative to max logit |")
    print("|---|---:|---:|")
    for spec, difference, relative in checked:
        print(f"| {spec} | {difference:.2e} | {relative:.2e} |")
    worst = max(checked, key=lambda row: row[1])
    print(f"\nworst max abs difference {worst[1]:.2e} over {len(checked)} subnets ({worst[0]})")


if __name__ == "__main__":
    main()
