"""The report's answer in words: which subnet to take on each source, whether the sources agree, what to distrust.

Per source (a measured table's device, or a LUT), the subnet `compofa search --target 25%,50%,75%` picks: the
most accurate one within 25, 50 and 75% of the way from the source's fastest subnet to its slowest, found by
the search package itself over what the source answers for (a table: the subnets it measured; a LUT: every
subnet at the search resolutions it covers). Then the Kendall tau of every pair of sources, and warnings:

- unstable entries (the profiler's stability check failed) and entries whose run stopped before their interval
  reached the profiler's target (noisy, out of time, or a front-aware coarse pass), counted as `compofa table
  show` counts them;
- a partial table: fewer entries than the space has subnets at the resolutions the table measured, so the
  picks and the front are among those measured only;
- an unresolved front: adjacent points of a measured Pareto front whose latency intervals overlap, so which
  of the two is faster is not known (the front's order there is the noise's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from compofa.devices import Settings
from compofa.report import page
from compofa.report.crossdevice import CrossDevice
from compofa.report.pareto import Cloud, lut_resolutions
from compofa.report.runtimes import TARGET_SHARES
from compofa.report.scoring import Scorer
from compofa.report.series import LutSeries, ReportError, TableSeries
from compofa.search.latency import LatencySource, TableLatency
from compofa.search.run import SearchRequest, search
from compofa.search.targets import Target

#: Entry reasons that mean the profiler reached its target (`compofa table show` counts the others as
#: unconverged); "estimated" marks a lookup table's layer sums, which have no measurement to converge.
CONVERGED_REASONS = ("converged", "estimated")
#: Subnets named per warning; the rest are counted (report.json's other parts list them all).
NAMED = 3


@dataclass(frozen=True)
class Pick:
    """The search's pick at `share` percent of a source's latency range.

    Attributes:
        target_ms: that share resolved to milliseconds on the source.
        latency_low_ms, latency_high_ms: the 95% confidence interval of the pick's median latency; None for
            a LUT's estimate, which has none.
    """

    share: int
    target_ms: float
    spec: str
    accuracy: float
    latency_ms: float
    latency_low_ms: float | None
    latency_high_ms: float | None

    def record(self) -> dict[str, Any]:
        return {"target": f"{self.share}%", "target_ms": self.target_ms, "spec": self.spec,
                "accuracy": self.accuracy, "latency_ms": self.latency_ms, "latency_ci_low_ms": self.latency_low_ms,
                "latency_ci_high_ms": self.latency_high_ms}

    def latency_text(self) -> str:
        if self.latency_low_ms is None or self.latency_high_ms is None:
            return f"{self.latency_ms:.3f} ms (estimate)"
        return f"{self.latency_ms:.3f} ms ({self.latency_low_ms:.3f}-{self.latency_high_ms:.3f})"


@dataclass(frozen=True)
class SourcePicks:
    """The picks on one source, over `candidates` subnets of `space` (measured: a table's; else a LUT's)."""

    source: str
    space: str
    measured: bool
    candidates: int
    picks: tuple[Pick, ...]

    def record(self) -> dict[str, Any]:
        return {"source": self.source, "space": self.space, "measured": self.measured,
                "candidates": self.candidates, "picks": [pick.record() for pick in self.picks]}


@dataclass(frozen=True)
class PairAgreement:
    """Kendall tau of subnet latency between sources `a` and `b` (None: fewer than 3 subnets shared)."""

    a: str
    b: str
    kendall_tau: float | None
    shared: int

    def record(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "kendall_tau": self.kendall_tau, "shared_subnets": self.shared}


@dataclass(frozen=True)
class Caveat:
    """Something about `source` that makes its numbers less certain; `kind`: unstable, partial or unresolved."""

    source: str
    kind: str
    text: str

    def record(self) -> dict[str, str]:
        return {"source": self.source, "kind": self.kind, "text": self.text}


@dataclass(frozen=True)
class Summary:
    picks: tuple[SourcePicks, ...]
    agreements: tuple[PairAgreement, ...]
    warnings: tuple[Caveat, ...]

    def record(self) -> dict[str, Any]:
        return {"target_shares": list(TARGET_SHARES), "picks": [p.record() for p in self.picks],
                "kendall_tau": [a.record() for a in self.agreements],
                "warnings": [w.record() for w in self.warnings]}

    def sentences(self) -> list[str]:
        """The answer in a few sentences: the middle target's pick per source, the agreement, the warnings."""
        middle = TARGET_SHARES[len(TARGET_SHARES) // 2]
        said = []
        for source in self.picks:
            pick = next(p for p in source.picks if p.share == middle)
            said.append(f"On {source.source}, the most accurate subnet within {middle}% of its latency range "
                        f"({pick.target_ms:.3f} ms) is {pick.spec}: {pick.accuracy:.2%} at {pick.latency_text()}.")
        known = [a for a in self.agreements if a.kendall_tau is not None]
        if known:
            low = min(known, key=lambda a: a.kendall_tau or 0.0)
            said.append(f"The sources rank subnets with Kendall tau {_range([a.kendall_tau or 0.0 for a in known])}"
                        f"; least alike: {low.a} and {low.b} ({low.kendall_tau:.3f}).")
        said.append(f"{_count(len(self.warnings), 'warning')} below." if self.warnings else "No warnings.")
        return said


def _range(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.3f}" if low == high else f"{low:.3f} to {high:.3f}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _picks(source: str, space: str, latency: LatencySource, resolutions: tuple[int, ...], scorer: Scorer,
           measured: bool) -> SourcePicks:
    """The search's picks at every `TARGET_SHARES` on `latency` (exhaustive over what the source answers for)."""
    request = SearchRequest(space, scorer.width, tuple(Target(share, relative=True) for share in TARGET_SHARES),
                            resolutions, "exhaustive")
    found = search(request, scorer.source(space), latency)
    picks = tuple(Pick(share, r.target, str(r.spec), r.accuracy, r.latency_ms,
                       r.latency_ci_low_ms if measured else None, r.latency_ci_high_ms if measured else None)
                  for share, r in zip(TARGET_SHARES, found.results))
    return SourcePicks(source, space, measured, found.candidates, picks)


def table_picks(series: TableSeries, space: str, scorer: Scorer) -> SourcePicks:
    """The picks on one device of a measured table, over the subnets of `space` it measured."""
    entries = series.of_space(space)
    if not entries:
        raise ReportError(f"no {space} subnets measured: nothing to pick from")
    latency = TableLatency(series.path, space, scorer.width, Settings(batch=series.batch, precision=series.precision),
                           device_id=series.device_id, complete=False)
    resolutions = tuple(sorted({e.key.resolution for e in entries}))
    return _picks(series.label, space, latency, resolutions, scorer, measured=True)


def lut_picks(series: LutSeries, space: str, scorer: Scorer) -> SourcePicks:
    """The picks on a LUT's estimates, over every subnet of `space` at the search resolutions it covers."""
    return _picks(series.label, space, series.model(space), lut_resolutions(series, space), scorer, measured=False)


def agreements(cross: CrossDevice) -> tuple[PairAgreement, ...]:
    """Every pair of sources' Kendall tau, as `cross` computed it."""
    pairs = []
    for i, a in enumerate(cross.labels):
        for j in range(i + 1, len(cross.labels)):
            tau = float(cross.kendall[i, j])
            pairs.append(PairAgreement(a, cross.labels[j], None if np.isnan(tau) else tau, int(cross.shared[i, j])))
    return tuple(pairs)


def entry_warnings(series: TableSeries) -> list[Caveat]:
    """Unstable entries, and entries stopped before their interval reached the profiler's target."""
    unstable = sorted((e for e in series.entries if not e.stable), key=lambda e: -e.relative_ci)
    unconverged = [e for e in series.entries if e.reason not in CONVERGED_REASONS]
    if not unstable and not unconverged:
        return []
    parts = []
    if unstable:
        named = ", ".join(f"{e.key.spec} (+-{e.relative_ci:.1%})" for e in unstable[:NAMED])
        parts.append(f"{len(unstable)} unstable (widest: {named})")
    if unconverged:
        reasons = sorted({e.reason for e in unconverged})
        parts.append(f"{len(unconverged)} stopped before their interval reached the profiler's target "
                     f"({', '.join(reasons)})")
    return [Caveat(series.label, "unstable",
                    f"{series.label}: of {len(series.entries)} entries, {' and '.join(parts)}: their latency is less "
                    f"certain; "
                    f"`compofa profile --table {series.path}` measures them again first")]


def partial_warning(series: TableSeries, cloud: Cloud) -> Caveat | None:
    """A table with fewer entries than `cloud`'s space has subnets at the resolutions it measured."""
    if not cloud.missing:
        return None
    held = len(cloud.specs)
    resolutions = ", ".join(map(str, sorted({e.key.resolution for e in series.of_space(cloud.space)})))
    return Caveat(series.label, "partial",
                   f"{series.label}: a partial table: {held} of the {held + cloud.missing} {cloud.space} subnets at "
                   f"{resolutions} px measured; its picks and front are the best of those, not of the space "
                   f"(profile the rest with `compofa profile --space {cloud.space} --resolution "
                   f"{resolutions.replace(' ', '')} --table {series.path}`)")


def unresolved_warning(label: str, cloud: Cloud) -> Caveat | None:
    """Adjacent points of a measured front whose latency intervals overlap (None: every step is resolved)."""
    if not cloud.measured or len(cloud.front) < 2:
        return None
    front = cloud.front
    overlapping = [(int(a), int(b)) for a, b in zip(front[:-1], front[1:])
                   if cloud.latency_high[a] >= cloud.latency_low[b]]
    if not overlapping:
        return None
    named = "; ".join(f"{cloud.specs[a]} ({cloud.latency_low[a]:.3f}-{cloud.latency_high[a]:.3f} ms) and "
                      f"{cloud.specs[b]} ({cloud.latency_low[b]:.3f}-{cloud.latency_high[b]:.3f} ms)"
                      for a, b in overlapping[:NAMED])
    more = f" and {len(overlapping) - NAMED} more" if len(overlapping) > NAMED else ""
    steps = f"all {len(overlapping)}" if len(overlapping) == len(front) - 1 else \
        f"{len(overlapping)} of the {len(front) - 1}"
    return Caveat(label, "unresolved",
                   f"{label}: {steps} steps of the {cloud.space} front are not resolved: the latency intervals of "
                   f"adjacent front subnets overlap, so which is faster is not known: {named}{more}; profiling "
                   "them to a smaller target CI narrows the intervals")


def summary_section(summary: Summary, notes: Sequence[str] = ()) -> page.Section:
    """The summary as the page's first section: its sentences, the picks and taus as tables, the warnings."""
    section = page.Section("Summary", " ".join(summary.sentences()))
    if summary.picks:
        section.tables.append(page.Table(
            ("source", "target", "target ms", "best subnet", "accuracy", "latency ms (95% interval)"),
            [(source.source, f"{pick.share}%", f"{pick.target_ms:.3f}", pick.spec, f"{pick.accuracy:.2%}",
              pick.latency_text()) for source in summary.picks for pick in source.picks]))
    if summary.agreements:
        section.tables.append(page.Table(
            ("source", "source", "Kendall tau", "shared subnets"),
            [(a.a, a.b, "-" if a.kendall_tau is None else f"{a.kendall_tau:.3f}", str(a.shared))
             for a in summary.agreements]))
    section.notes.extend([*notes, *(f"warning: {w.text}" for w in summary.warnings)])
    return section
