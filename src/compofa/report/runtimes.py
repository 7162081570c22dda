"""Which runtime and precision to profile: rank agreement with FP32 ONNX Runtime on the same machine, and
whether a lower precision changes the subnet a search picks.

Tables measured on one machine with several runtimes (ONNX Runtime, OpenVINO,
LiteRT, ...) or precisions (fp32, fp16, int8) rank the same subnets; where
they rank them alike (Kendall tau near 1 against FP32 ONNX Runtime), a table of
one serves a search for the others. A lower precision can still move the
pick: per runtime, the search at 25, 50 and 75% of each precision's own
latency range is run on the subnets both precisions measured, and the picks
compared. The machine is what the device's fingerprint says beside its
runtime (CPU or GPU model and count); the runtime is its ``backend``, the
precision its entries' key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from compofa.report.crossdevice import cross_device
from compofa.report.scoring import Scorer
from compofa.report.series import TableSeries, specs_batch
from compofa.search.exhaustive import best_meeting
from compofa.search.targets import Target

#: What every runtime and precision is compared with.
BASELINE_BACKEND, BASELINE_PRECISION = "onnxruntime", "fp32"
#: Targets, in percent of each precision's latency range, at which picks are compared.
TARGET_SHARES = (25, 50, 75)
#: Fingerprint fields that identify a machine (the others describe the runtime and its settings).
MACHINE_FIELDS = ("machine", "cpu", "cpu_count", "gpu")


def machine_of(fingerprint: dict[str, Any]) -> str:
    """``x86_64, Intel Xeon ... (16 CPUs)``, with the GPU where there is one; ``unknown machine`` without any."""
    parts = [str(fingerprint[name]) for name in ("machine", "cpu") if fingerprint.get(name)]
    text = ", ".join(parts) + (f" ({fingerprint['cpu_count']} CPUs)" if fingerprint.get("cpu_count") else "")
    if fingerprint.get("gpu"):
        text += f"{', ' if text else ''}{fingerprint['gpu']}"
    return text or "unknown machine"


def backend_of(series: TableSeries) -> str:
    return str(series.fingerprint.get("backend") or series.device)


@dataclass(frozen=True)
class Agreement:
    """One runtime and precision of a machine against the baseline: Kendall tau over the subnets both hold."""

    label: str
    backend: str
    precision: str
    batch: int
    kendall_tau: float  # nan where fewer than 3 subnets are shared
    shared: int


@dataclass(frozen=True)
class PickChange:
    """The subnets a search picks at `share` percent of the latency range, in fp32 and in `precision`."""

    backend: str
    batch: int
    precision: str
    share: int
    fp32_spec: str
    fp32_accuracy: float
    fp32_target_ms: float
    other_spec: str
    other_accuracy: float
    other_target_ms: float
    subnets: int  # measured in both precisions

    @property
    def changed(self) -> bool:
        return self.fp32_spec != self.other_spec


@dataclass(frozen=True)
class MachineRuntimes:
    machine: str
    baseline: str | None  # the FP32 ONNX Runtime series' label (None: the machine has none)
    agreements: tuple[Agreement, ...]
    changes: tuple[PickChange, ...]

    def summary(self) -> dict[str, object]:
        return {
            "machine": self.machine, "baseline": self.baseline,
            "agreement": [{"series": a.label, "backend": a.backend, "precision": a.precision, "batch": a.batch,
                           "kendall_tau": None if np.isnan(a.kendall_tau) else a.kendall_tau, "shared": a.shared}
                          for a in self.agreements],
            "picks": [{"backend": c.backend, "batch": c.batch, "precision": c.precision, "share": c.share,
                       "subnets": c.subnets, "changed": c.changed,
                       "fp32": {"spec": c.fp32_spec, "accuracy": c.fp32_accuracy, "target_ms": c.fp32_target_ms},
                       c.precision: {"spec": c.other_spec, "accuracy": c.other_accuracy,
                                     "target_ms": c.other_target_ms}}
                      for c in self.changes],
        }


def runtime_views(series: Sequence[TableSeries], labels: Sequence[str], space: str, scorer: Scorer,
                  baseline_setup: tuple[str, str] = (BASELINE_BACKEND, BASELINE_PRECISION)) -> list[MachineRuntimes]:
    """Per machine with two or more runtimes or precisions: their agreement with `baseline_setup` (a backend and
    a precision: FP32 ONNX Runtime), and the picks of every runtime's lower precisions against its fp32."""
    machines: dict[str, list[tuple[TableSeries, str]]] = {}
    for one, label in zip(series, labels):
        if one.of_space(space):
            key = machine_of({name: one.fingerprint.get(name) for name in MACHINE_FIELDS})
            machines.setdefault(key, []).append((one, label))
    views = []
    for machine, group in machines.items():
        if len(group) < 2:
            continue
        baseline = next(((s, label) for s, label in group if (backend_of(s), s.precision) == baseline_setup), None)
        agreements: list[Agreement] = []
        if baseline is not None:
            others = [(s, label) for s, label in group if s is not baseline[0]]
            cross = cross_device([baseline[0], *(s for s, _ in others)], [baseline[1], *(lb for _, lb in others)],
                                 space)
            agreements = [Agreement(label, backend_of(s), s.precision, s.batch, float(cross.kendall[0, i + 1]),
                                    int(cross.shared[0, i + 1])) for i, (s, label) in enumerate(others)]
        views.append(MachineRuntimes(machine, baseline[1] if baseline else None, tuple(agreements),
                                     tuple(_pick_changes([s for s, _ in group], space, scorer))))
    return views


def _pick_changes(group: Sequence[TableSeries], space: str, scorer: Scorer) -> list[PickChange]:
    runtimes: dict[tuple[str, int], dict[str, TableSeries]] = {}
    for one in group:
        runtimes.setdefault((backend_of(one), one.batch), {}).setdefault(one.precision, one)
    changes = []
    for (backend, batch), by_precision in runtimes.items():
        fp32 = by_precision.get("fp32")
        if fp32 is None:
            continue
        for precision, other in sorted(by_precision.items()):
            if precision == "fp32":
                continue
            a, b = fp32.latency_by_spec(space), other.latency_by_spec(space)
            common = sorted(set(a) & set(b))
            if len(common) < 3:
                continue
            accuracy = scorer.accuracy(specs_batch(common))
            latency_a, latency_b = np.array([a[s] for s in common]), np.array([b[s] for s in common])
            for share in TARGET_SHARES:
                row_a, target_a = _pick(accuracy, latency_a, share)
                row_b, target_b = _pick(accuracy, latency_b, share)
                changes.append(PickChange(backend, batch, precision, share, common[row_a], float(accuracy[row_a]),
                                          target_a, common[row_b], float(accuracy[row_b]), target_b, len(common)))
    return changes


def _pick(accuracy: np.ndarray, latency: np.ndarray, share: int) -> tuple[int, float]:
    """The search's pick at `share` percent of the latency range (the fastest subnet always fits)."""
    target = Target(share, relative=True).resolve(float(latency.min()), float(latency.max()))
    row = best_meeting(accuracy, latency <= target, [latency])
    assert row is not None, "the fastest subnet meets any target within the range"
    return row, target
