"""Search speed and quality against the Note10 lookup table and OFA's accuracy predictor.

Goals (issue "Search against measured latency"):
- exhaustive CompOFA search, 243 subnets x 17 resolutions, 4 targets, in < 0.5 s
  including predictor inference, and exactly optimal (checked against an
  independent brute force: the lookup table summed subnet by subnet and OFA's own
  predictor code);
- evolution on `ofa-mbv3` (w1.2, 500 generations) in < 1 s per target, with best
  accuracy at least that of OFA's own evolution code (`ofa.tutorial.EvolutionFinder`,
  the code the CompOFA authors build on) on average over seeds;
- OFA against CompOFA spaces at the Note10 targets 15/20/25/30 ms (paper 5.3/5.7).

Run: ``python benchmarks/search_speed.py`` (``--seeds 1 --quick`` for a smoke run).
Prints tables; asserts nothing. Don't run other work meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import random
import statistics
import time
from importlib import resources
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch
import yaml

from compofa.lut import LookupTable
from compofa.search.evolution import EvolutionConfig, evolve
from compofa.search.latency import LutLatency
from compofa.search.predictor import SHIPPED_RESOURCE, AccuracyPredictor, PredictorAccuracy
from compofa.search.run import SearchRequest, search
from compofa.space import SEARCH_RESOLUTIONS, SubnetSpec, get_space

TARGETS = (15.0, 20.0, 25.0, 30.0)
WIDTH = 1.2


def table(title: str, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def sources(space: str) -> tuple[PredictorAccuracy, LutLatency]:
    return PredictorAccuracy(AccuracyPredictor.shipped(), space, WIDTH), LutLatency("note10", space, WIDTH)


# -- the reference: OFA's tutorial code, loaded by path (its package __init__ pulls in ImageNet helpers) ----------


def ofa_module(name: str) -> ModuleType:
    import ofa

    path = Path(ofa.__file__).parent / "tutorial" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"ofa_tutorial_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class OfaNote10:
    """OFA's own LatencyEstimator over the shipped Note10 yaml files, one per resolution."""

    def __init__(self, resolutions: tuple[int, ...]) -> None:
        module = ofa_module("latency_table")
        # its yaml.load(fp) predates PyYAML 6, which needs a Loader; the tables are plain data
        module.yaml = SimpleNamespace(load=yaml.safe_load)
        estimator = module.LatencyEstimator
        folder = resources.files("compofa.data") / "note10_lut"
        with contextlib.redirect_stdout(io.StringIO()):
            self.tables = {r: estimator(url=str(folder / f"{r}_lookup_table.yaml")) for r in resolutions}

    def predict_efficiency(self, sample: dict[str, Any]) -> float:
        return float(self.tables[sample["r"][0]].predict_network_latency_given_spec(sample))


def ofa_predictor() -> Any:
    predictor = ofa_module("accuracy_predictor").AccuracyPredictor(pretrained=False, device="cpu")
    weights = resources.files("compofa.data") / SHIPPED_RESOURCE
    predictor.model.load_state_dict(torch.load(str(weights), map_location="cpu", weights_only=True))
    return predictor


def ofa_evolution(target: float, seed: int, efficiency: OfaNote10, predictor: Any, generations: int) -> tuple[float, float]:
    """(best accuracy, seconds) of one run of OFA's EvolutionFinder at the paper's settings."""
    module = ofa_module("evolution_finder")
    finder = module.EvolutionFinder(
        "note10", target, efficiency, predictor, mutate_prob=0.1, population_size=100,
        max_time_budget=generations, parent_ratio=0.25, mutation_ratio=0.5,
    )
    finder.arch_manager.resolutions = list(SEARCH_RESOLUTIONS)  # the same 17 resolutions as ours
    random.seed(seed)
    np.random.seed(seed)
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
        best_valids, _ = finder.run_evolution_search()
    return float(best_valids[-1]), time.perf_counter() - start


# -- 1. exhaustive ----------------------------------------------------------------------------------------------


def brute_force(targets: tuple[float, ...]) -> list[str]:
    """Best subnet per target, computed independently: LUT sums subnet by subnet, OFA's predictor code."""
    specs = list(get_space("compofa").enumerate(SEARCH_RESOLUTIONS))
    lut = LookupTable.shipped("note10")
    latency = np.array([lut.predict(spec, WIDTH) for spec in specs])
    predictor = ofa_predictor()
    with torch.no_grad():
        accuracy = predictor.predict_accuracy([spec.to_ofa_dict() for spec in specs]).numpy()[:, 0]
    best = []
    for target in targets:
        fits = np.flatnonzero(latency <= target)
        best.append(str(specs[fits[np.argmax(accuracy[fits])]]))
    return best


def exhaustive_benchmark(repeats: int) -> None:
    began = time.perf_counter()
    accuracy, latency = sources("compofa")
    setup = time.perf_counter() - began
    request = SearchRequest("compofa", WIDTH, TARGETS, SEARCH_RESOLUTIONS, "exhaustive")
    times, report = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        report = search(request, accuracy, latency)
        times.append(time.perf_counter() - start)
    assert report is not None
    expected = brute_force(TARGETS)
    rows = [(f"{r.target:g}", str(r.spec), f"{r.accuracy:.4f}", f"{r.latency_ms:.2f}",
             "yes" if str(r.spec) == best else f"NO ({best})") for r, best in zip(report.results, expected)]
    table(f"Exhaustive CompOFA search: {report.candidates} candidates, 4 targets, Note10 LUT + predictor",
          ("target ms", "best subnet", "accuracy", "latency ms", "= brute force"), rows)
    print(f"search time (4 targets, incl. predictor on all {report.candidates}): first {times[0]:.3f} s, "
          f"median of {repeats} {statistics.median(times):.3f} s; sources loaded once in {setup:.2f} s")


# -- 2. evolution ----------------------------------------------------------------------------------------------------


def ours(target: float, seed: int, config: EvolutionConfig, accuracy: PredictorAccuracy,
         latency: LutLatency) -> tuple[float, float, int, SubnetSpec]:
    start = time.perf_counter()
    result = evolve("ofa-mbv3", accuracy.accuracy, lambda batch: latency.latency(batch).median, target, config,
                    np.random.default_rng(seed))
    return result.accuracy, time.perf_counter() - start, result.generations, result.spec


def evolution_benchmark(seeds: int, generations: int, reference: bool) -> dict[str, dict[float, tuple[float, float]]]:
    accuracy, latency = sources("ofa-mbv3")
    evolve("ofa-mbv3", accuracy.accuracy, lambda b: latency.latency(b).median, 25.0, EvolutionConfig(generations=3))
    variants: dict[str, EvolutionConfig] = {
        f"compofa, {generations} generations": EvolutionConfig(generations=generations, patience=None),
        f"compofa, OFA's parents (duplicates kept), {generations} gen.": EvolutionConfig(
            generations=generations, patience=None, distinct_parents=False),
        "compofa, default (stops after 100 gen. without gain)": EvolutionConfig(generations=generations),
    }
    summary: dict[str, dict[float, tuple[float, float]]] = {}
    rows = []
    for name, config in variants.items():
        summary[name] = {}
        for target in TARGETS:
            runs = [ours(target, seed, config, accuracy, latency) for seed in range(seeds)]
            acc = statistics.mean(r[0] for r in runs)
            seconds = statistics.mean(r[1] for r in runs)
            summary[name][target] = (acc, seconds)
            rows.append((name, f"{target:g}", f"{acc:.4f}", f"{max(r[0] for r in runs):.4f}", f"{seconds:.2f}",
                         f"{statistics.mean(r[2] for r in runs):.0f}"))
    if reference:
        efficiency, predictor = OfaNote10(SEARCH_RESOLUTIONS), ofa_predictor()
        name = f"OFA's EvolutionFinder, {generations} generations"
        summary[name] = {}
        for target in TARGETS:
            runs = [ofa_evolution(target, seed, efficiency, predictor, generations) for seed in range(seeds)]
            acc, seconds = statistics.mean(r[0] for r in runs), statistics.mean(r[1] for r in runs)
            summary[name][target] = (acc, seconds)
            rows.append((name, f"{target:g}", f"{acc:.4f}", f"{max(r[0] for r in runs):.4f}", f"{seconds:.2f}",
                         str(generations)))
    table(f"Evolution on ofa-mbv3 w{WIDTH:g}, Note10 LUT + predictor, population 100, {seeds} seeds "
          "(OFA's code redraws the resolution with p 0.1, ours with 0.5)",
          ("search", "target ms", "mean best acc", "max best acc", "s/target", "generations"), rows)
    table("Per target, averaged over targets", ("search", "mean best acc", "s/target"),
          [(name, f"{statistics.mean(v[0] for v in by.values()):.4f}",
            f"{statistics.mean(v[1] for v in by.values()):.2f}") for name, by in summary.items()])
    return summary


# -- 3. OFA against CompOFA ------------------------------------------------------------------------------------------


def spaces_benchmark(seeds: int) -> None:
    rows = []
    cases: list[tuple[str, str, Callable[[], EvolutionConfig | None]]] = [
        ("ofa-mbv3", "evolution", lambda: EvolutionConfig()),
        ("compofa", "exhaustive", lambda: None),
        ("compofa", "evolution", lambda: EvolutionConfig.for_space("compofa")),
    ]
    for space, strategy, config in cases:
        accuracy, latency = sources(space)
        per_target: dict[float, list[tuple[float, float, float]]] = {t: [] for t in TARGETS}
        for seed in range(seeds if strategy == "evolution" else 1):
            request = SearchRequest(space, WIDTH, TARGETS, SEARCH_RESOLUTIONS, strategy, seed=seed,
                                    evolution=config())
            report = search(request, accuracy, latency)
            share = report.seconds / len(TARGETS)  # exhaustive scores once for all targets
            for result in report.results:
                seconds = result.seconds if strategy == "evolution" else share
                per_target[result.target].append((result.accuracy, result.latency_ms, seconds))
        for target, runs in per_target.items():
            rows.append((space, strategy, f"{target:g}", f"{statistics.mean(r[0] for r in runs):.4f}",
                         f"{statistics.mean(r[1] for r in runs):.2f}", f"{statistics.mean(r[2] for r in runs):.3f}"))
    table(f"OFA and CompOFA spaces at the Note10 targets (w{WIDTH:g}, predicted top-1; evolution: mean of {seeds} "
          "seeds, default settings)", ("space", "strategy", "target ms", "best acc", "latency ms", "s/target"), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="evolution seeds per target (default 3)")
    parser.add_argument("--quick", action="store_true", help="50 generations and no reference run (a smoke run)")
    args = parser.parse_args()
    generations = 50 if args.quick else 500
    print(f"torch {torch.__version__}, numpy {np.__version__}")
    exhaustive_benchmark(repeats=5)
    evolution_benchmark(args.seeds, generations, reference=not args.quick)
    spaces_benchmark(args.seeds)


if __name__ == "__main__":
    main()
