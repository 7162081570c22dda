"""The front over every source at once: the subnets no other beats on accuracy, the latency on each source,
and the peak memory where a table has it for every subnet.

A subnet on one source's accuracy-latency front may be off another's; a
search for a subnet that must run on several devices (`compofa search` with
several ``--latency``) picks from this front. It is computed over the subnets
every source answers for (a lookup table estimates those the tables hold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from compofa.report.crossdevice import latencies_by_source
from compofa.report.scoring import Scorer
from compofa.report.series import LutSeries, ReportError, TableSeries, specs_batch
from compofa.search.exhaustive import pareto_front_nd


@dataclass(frozen=True)
class JointFront:
    """Subnets every source answers for, their objectives, and the rows of the front (by the first latency)."""

    labels: tuple[str, ...]
    specs: tuple[str, ...]
    accuracy: np.ndarray
    latency: np.ndarray  # (subnets, sources), ms
    memory_labels: tuple[str, ...]  # the sources whose peak memory is an objective
    memory: np.ndarray  # (subnets, len(memory_labels)), MB
    front: np.ndarray

    @property
    def objectives(self) -> list[str]:
        return ["accuracy (max)", *(f"latency_ms {label} (min)" for label in self.labels),
                *(f"peak_memory_mb {label} (min)" for label in self.memory_labels)]

    def summary(self) -> dict[str, object]:
        points = []
        for row in self.front.tolist():
            point: dict[str, object] = {"spec": self.specs[row], "accuracy": float(self.accuracy[row]),
                                        "latencies_ms": self.latency[row].tolist()}
            if self.memory_labels:
                point["peak_memory_mb"] = self.memory[row].tolist()
            points.append(point)
        return {"sources": list(self.labels), "objectives": self.objectives, "subnets": len(self.specs),
                "front": points}


def joint_front(series: Sequence[TableSeries | LutSeries], labels: Sequence[str], space: str, scorer: Scorer
                ) -> JointFront:
    """The front over accuracy, every source's latency and the tables' memory, on the subnets all share."""
    latencies = latencies_by_source(series, space)
    shared = sorted(set.intersection(*(set(by_spec) for by_spec in latencies)))
    if len(shared) < 2:
        raise ReportError(f"the sources share {len(shared)} {space} subnets; a joint front needs two or more")
    latency = np.array([[by_spec[spec] for by_spec in latencies] for spec in shared])
    memory_columns, memory_labels = [], []
    for source, label in zip(series, labels):
        if isinstance(source, TableSeries):
            by_spec = {e.key.spec: e.peak_memory_mb for e in source.of_space(space)}
            values = [by_spec.get(spec) for spec in shared]
            if all(value is not None for value in values):
                memory_columns.append(np.array(values, dtype=np.float64))
                memory_labels.append(label)
    memory = np.column_stack(memory_columns) if memory_columns else np.zeros((len(shared), 0))
    accuracy = scorer.accuracy(specs_batch(shared))
    front = pareto_front_nd(np.column_stack([-accuracy, latency, memory]))
    front = front[np.lexsort((-accuracy[front], latency[front, 0]))]
    return JointFront(tuple(labels), tuple(shared), accuracy, latency, tuple(memory_labels), memory, front)
