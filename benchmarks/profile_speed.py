"""Profiling speed and reproducibility: all 243 CompOFA subnets at 224 with ONNX Runtime.

Goals (issue "Profile every subnet"):
- total wall time <= 1.3x the time spent inside timed inference, from empty
  caches, split into export, session creation, warm-up and measurement;
- two independent full runs: Kendall tau of the medians >= 0.97, median
  |relative difference| <= 0.5% once global drift is divided out, pairs more
  than 2% apart ordered the same in >= 99.5% of cases;
- side by side, from the same run, the reference code's habit: one session per
  subnet, 5 warm-ups, 10 timed runs, their mean.

Run: ``python benchmarks/profile_speed.py`` (about 20 minutes; ``--limit N``
for a smoke run). Prints tables; asserts nothing. Don't run other work meanwhile.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from compofa.devices import Settings, open_device
from compofa.space import get_space
from compofa.sources.subnet import SubnetSource
from compofa.tables import LatencyTable
from compofa.tables.compare import compare_entries, kendall_tau, ordered_same
from compofa.jobs.profile import ProfileRequest, profile_space


class TimedSource(SubnetSource):
    """A SubnetSource that adds up the time spent exporting."""

    export_seconds: float = 0.0

    def onnx(self, spec, batch):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        path = super().onnx(spec, batch)
        self.export_seconds += time.perf_counter() - start
        return path


def ours(table: Path, cache: Path, limit: int | None) -> dict[str, float]:
    source = TimedSource("compofa", cache_dir=cache)
    start = time.perf_counter()
    summary = profile_space(ProfileRequest(table, "onnxruntime", source, (224,), limit=limit))
    wall = time.perf_counter() - start
    times = summary.times
    assert times is not None
    inside = times.timed + times.reference
    return {
        "subnets": summary.measured,
        "wall": wall,
        "export": source.export_seconds,
        "session": times.prepare - source.export_seconds,
        "warmup": times.warmup,
        "timed": times.timed,
        "reference": times.reference,
        "ratio": wall / inside,
        "samples": times.samples / max(summary.measured, 1),
        "rounds": times.rounds / max(summary.measured, 1),
        "discarded": summary.discarded_rounds,
    }


def habit(cache: Path, limit: int | None) -> dict[str, float]:
    """The reference code's habit: 5 warm-ups, the mean of 10 runs, one session per subnet."""
    device = open_device("onnxruntime", SubnetSource("compofa", cache_dir=cache), Settings())
    specs = list(get_space("compofa").enumerate([224]))[:limit]
    means = {}
    for spec in specs:
        handle = device.prepare(spec)
        device.time(handle, 5)
        means[str(spec)] = float(np.mean(device.time(handle, 10)))
        handle.close()
    return means


def reproducibility(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Kendall tau, median |relative difference| after dividing the median ratio out, pairs >2% same order."""
    factor = float(np.median(y / x))
    share, _ = ordered_same(x, y, 0.02)
    return kendall_tau(x, y), float(np.median(np.abs(y / factor / x - 1))), share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="only the first N subnets (smoke run)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        first = ours(root / "a.db", root / "cache-a", args.limit)
        habit_first = habit(root / "cache-a", args.limit)
        second = ours(root / "b.db", root / "cache-b", args.limit)
        habit_second = habit(root / "cache-b", args.limit)
        with LatencyTable.open(root / "a.db") as a, LatencyTable.open(root / "b.db") as b:
            entries_a, entries_b = a.entries(), b.entries()
            ref_a = a.reference(entries_a[0].device_id, entries_a[0].key)
            ref_b = b.reference(entries_b[0].device_id, entries_b[0].key)
    baselines = (ref_a[1], ref_b[1]) if ref_a and ref_b and ref_a[0] == ref_b[0] else None
    comparison = compare_entries(entries_a, entries_b, baselines)

    print("| run 1 from empty caches | seconds | share of wall |")
    print("|---|---:|---:|")
    for part in ("export", "session", "warmup", "timed", "reference"):
        print(f"| {part} | {first[part]:.1f} | {first[part] / first['wall']:.1%} |")
    print(f"| wall | {first['wall']:.1f} | |")
    for label, run in (("run 1", first), ("run 2", second)):
        print(f"\n{label}: {run['subnets']:.0f} subnets, wall / timed inference = {run['ratio']:.3f} (goal <= 1.3), "
              f"{run['samples']:.0f} samples and {run['rounds']:.2f} rounds per subnet, "
              f"{run['discarded']:.0f} rounds discarded for drift")

    keys = [e.key.spec for e in entries_a]
    habit_x = np.array([habit_first[k] for k in keys if k in habit_second])
    habit_y = np.array([habit_second[k] for k in keys if k in habit_second])
    tau_h, diff_h, share_h = reproducibility(habit_x, habit_y)
    index_b = {e.key.spec: e.median_ms for e in entries_b}
    ours_x = np.array([e.median_ms for e in entries_a if e.key.spec in index_b])
    ours_y = np.array([index_b[e.key.spec] for e in entries_a if e.key.spec in index_b])
    tau_o, diff_o, share_o = reproducibility(ours_x, ours_y)
    print("\n| two independent runs | Kendall tau (>= 0.97) | median abs rel diff, drift out (<= 0.5%) "
          "| pairs >2% apart same order (>= 99.5%) |")
    print("|---|---:|---:|---:|")
    print(f"| compofa profile (reference baselines) | {comparison.kendall_tau:.4f} | "
          f"{comparison.median_abs_rel_diff_normalized:.2%} | {comparison.pairs_2pct_same_order:.2%} |")
    print(f"| compofa profile (median ratio) | {tau_o:.4f} | {diff_o:.2%} | {share_o:.2%} |")
    print(f"| 5 warm-ups + mean of 10, one session (median ratio) | {tau_h:.4f} | {diff_h:.2%} | {share_h:.2%} |")
    print(f"\nglobal drift between runs: {comparison.drift_factor:.4f} ({comparison.drift_source}); "
          f"raw median abs rel diff {comparison.median_abs_rel_diff_raw:.2%}")


if __name__ == "__main__":
    main()
