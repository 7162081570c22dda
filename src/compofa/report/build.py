"""Writing a report: a summary in words, every figure as PNG (or SVG), the numbers as JSON, and one
self-contained HTML page.

Inputs are checked before anything is computed or written (a table with too
few entries, a LUT of another family or width, an unknown accuracy source or
image format): a refused report leaves no folder behind. Without matplotlib
the figures are left out, saying so, and the rest (the summary, the tables,
report.json) is written. Parts that cannot be
drawn for one source (no accuracy for OFA subnets from measured accuracy rows,
say) are left out with a note saying why, and the rest is written. The folder
is written whole or not at all (`compofa.fileio.write_folder_atomic`): a full
disk or an interruption leaves no part of a report behind.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from compofa import __version__
from compofa.errors import CompofaError
from compofa.fileio import check_output_folder, write_folder_atomic
from compofa.report import interactive, page, plots
from compofa.report.crossdevice import CrossDevice, cross_device
from compofa.report.design import MIN_BUCKET_SAMPLES, bucket_samples, uniform_grid
from compofa.report.joint import joint_front
from compofa.report.noise import noise_report
from compofa.report.pareto import ParetoPanel, exact_cloud, searched_cloud, table_pareto
from compofa.report.runtimes import TARGET_SHARES, runtime_views
from compofa.report.scoring import Scorer
from compofa.report.series import (
    LutSeries,
    ReportError,
    TableSeries,
    counterpart,
    read_lut_series,
    read_table_series,
    unique_labels,
)
from compofa.report.summary import (
    Summary,
    agreements,
    entry_warnings,
    lut_picks,
    partial_warning,
    summary_section,
    table_picks,
    unresolved_warning,
)
from compofa.search.arrays import ArchBatch
from compofa.space import get_space

PAGE_NAME = "index.html"
SUMMARY_NAME = "report.json"


@dataclass(frozen=True)
class ReportRequest:
    """What to report on.

    Attributes:
        tables: measured latency tables (every device and setup in each is a source).
        output: the folder to write into (created if missing).
        luts: layer lookup tables (``note10`` or paths): estimators that also
            give the design-space views, which need any OFA subnet's latency.
        space: the CompOFA space; its OFA counterpart is compared with it.
        width: width multiplier (default: the family's).
        accuracy: accuracy source, as `compofa search --accuracy`.
        bucket_ms: latency bucket width of the design-space views (default:
            about twelve buckets over CompOFA's range; 5 ms on the Note10).
        per_bucket: random subnets per bucket and space (the paper: 50).
        generations: evolution generations per target of OFA's front on a LUT.
        seed: seeds the random samples and the evolution.
        image_format: the figures' file format, png or svg (`plots.IMAGE_FORMATS`); either is inlined in the page.
        dpi: the resolution of PNG figures (SVG scales).
        device_ids: the devices of the tables to report (the ids `compofa table show` lists); all where empty.
    """

    tables: tuple[Path, ...]
    output: Path
    luts: tuple[str, ...] = ("note10",)
    space: str = "compofa"
    width: float | None = None
    accuracy: str = "predictor"
    bucket_ms: float | None = None
    per_bucket: int = 50
    generations: int = 500
    seed: int = 0
    image_format: str = "png"
    dpi: int = plots.DPI
    device_ids: tuple[int, ...] = ()


@dataclass
class ReportResult:
    files: list[Path] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


Progress = Callable[[str], None]
T = TypeVar("T")


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "source"


def _check_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise ReportError(f"report folder {str(output)!r} is a file; give a folder name such as report/")
    check_output_folder(output)


def _gather(request: ReportRequest) -> tuple[list[TableSeries], list[LutSeries], float]:
    design = get_space(request.space)
    width = request.width if request.width is not None else design.family.default_width
    design.family.check_width(width)
    spaces = tuple(s for s in (request.space, counterpart(request.space)) if s)
    tables = [series for path in request.tables
              for series in read_table_series(path, spaces, width, request.device_ids)]
    luts = [read_lut_series(source, request.space, width) for source in request.luts]
    if not tables and not luts:
        raise ReportError("nothing to report on: give a measured table or a lookup table (note10 ships)",
                          option=("table", "lut"))
    return tables, luts, width


class _Builder:
    """The report in the making: the request's sources, the figures drawn so far and their numbers."""

    def __init__(self, request: ReportRequest, tables: list[TableSeries], luts: list[LutSeries], width: float,
                 say: Progress) -> None:
        self.labels = unique_labels([table.label for table in tables] + [lut.label for lut in luts])
        tables = [dataclasses.replace(s, label=label) for s, label in zip(tables, self.labels)]
        for lut, label in zip(luts, self.labels[len(tables):]):
            lut.label = label
        self.request, self.tables, self.luts, self.width, self.say = request, tables, luts, width, say
        self.scorer = Scorer(request.accuracy, width)
        self.scorer.source(request.space)  # an unusable accuracy source is refused now, not noted per figure
        self.ofa_space = counterpart(request.space)
        self.spaces = tuple(s for s in (request.space, self.ofa_space) if s)
        self.rng = np.random.default_rng(request.seed)
        self.files: dict[str, bytes] = {}
        self.summary: dict[str, Any] = {"pareto": [], "grid": [], "buckets": [], "cross_device": None,
                                        "joint_front": None, "runtimes": [], "noise": []}
        self.drawing = plots.available()
        self.measured_panels: list[tuple[TableSeries, ParetoPanel]] = []  # the summary's warnings read them
        self.cross: CrossDevice | None = None

    def figure(self, section: page.Section, stem: str, draw: Callable[[], Any], caption: str,
               charts: Sequence[str] = ()) -> None:
        """Draw a figure (`draw` builds it) as file `stem` in the image format asked; without matplotlib, only its
        interactive charts, which need no drawing library (the summary says the static figures were left out)."""
        if not self.drawing:
            if charts:
                section.figures.append(page.Figure("", b"", caption, charts))
            return
        name = f"{stem}.{self.request.image_format}"
        data = plots.render(draw(), self.request.image_format, self.request.dpi)
        self.files[name] = data
        section.figures.append(page.Figure(name, data, caption, charts))

    @staticmethod
    def attempt(section: page.Section, label: str, work: Callable[[], T]) -> T | None:
        """Run one part for one source; if that source cannot give it, say why and go on (None)."""
        try:
            return work()
        except CompofaError as error:
            section.notes.append(f"{label}: left out: {error}")
            return None

    # -- sections -------------------------------------------------------------------------------

    def fronts_and_views(self) -> tuple[page.Section, page.Section]:
        fronts = page.Section("Pareto fronts", "Accuracy against latency of every subnet a source answers for, and "
                              "the front of subnets no other subnet beats (faster and more accurate). Accuracy: "
                              f"{self.scorer.describe()}.")
        views = page.Section("Design space", "The paper's views of the two spaces on each lookup table: accuracy and "
                             "latency of uniform depth and expand ratio (Figure 2), and random subnets per latency "
                             "bucket (Figures 4 and 5): how much of each space is accurate.")
        for series, label in zip(self.tables, self.labels):
            self.say(f"Pareto front of {label}")
            self.attempt(fronts, label, partial(self._table_front, fronts, series, label))
        for lut, label in zip(self.luts, self.labels[len(self.tables):]):
            samples = None
            if self.ofa_space is not None:
                self.say(f"design-space views on {label}")
                views_of = f"{label}: views with {self.ofa_space}"
                samples = self.attempt(views, views_of, partial(self._views, views, lut, label))
            self.say(f"Pareto fronts on {label} (evolution for {self.ofa_space})")
            self.attempt(fronts, label, partial(self._lut_front, fronts, lut, label, samples))
        return fronts, views

    def _table_front(self, section: page.Section, series: TableSeries, label: str) -> None:
        panel = table_pareto(series, self.spaces, self.scorer)
        self.measured_panels.append((series, panel))
        self.summary["pareto"].append(panel.summary())
        self.figure(section, f"pareto-{_slug(label)}", partial(plots.pareto_figure, panel), f"Pareto front, {label}",
                    [interactive.pareto_chart(panel, self.width)])
        for cloud in panel.clouds:
            if cloud.missing:
                resolutions = ",".join(map(str, sorted({e.key.resolution for e in series.of_space(cloud.space)})))
                section.notes.append(
                    f"{label}: a partial table: {cloud.missing} of the {len(cloud.specs) + cloud.missing} "
                    f"{cloud.space} subnets at the resolutions it measured have no entry; the front is of the "
                    f"{len(cloud.specs)} measured (profile the rest with `compofa profile --space {cloud.space} "
                    f"--resolution {resolutions} --table {series.path}`)")
        if self.ofa_space and not series.of_space(self.ofa_space):
            section.notes.append(
                f"{label}: no {self.ofa_space} subnets measured, so only {self.request.space} is drawn")

    def _lut_front(self, section: page.Section, series: LutSeries, label: str, samples: ArchBatch | None) -> None:
        request, ofa_space = self.request, self.ofa_space
        clouds = [exact_cloud(series, request.space, self.scorer)]
        if ofa_space is not None:  # a LUT built for the CompOFA space alone still gives CompOFA's front
            searched = self.attempt(section, f"{label}: {ofa_space} front", lambda: searched_cloud(
                series, ofa_space, clouds[0], self.scorer, samples, request.seed, request.generations))
            clouds += [searched] if searched is not None else []
        panel = ParetoPanel(label, tuple(clouds))
        self.summary["pareto"].append(panel.summary())
        self.figure(section, f"pareto-{_slug(label)}", partial(plots.pareto_figure, panel), f"Pareto fronts, {label}",
                    [interactive.pareto_chart(panel, self.width)])

    def _views(self, section: page.Section, series: LutSeries, label: str) -> ArchBatch | None:
        """Figures 2, 4 and 5 on one LUT; returns the random OFA subnets drawn (the Pareto plot's cloud)."""
        request, ofa_space = self.request, self.ofa_space
        assert ofa_space is not None
        grid = uniform_grid(series, request.space, ofa_space, self.scorer)
        self.summary["grid"].append(grid.summary())
        self.figure(section, f"uniform-grid-{_slug(label)}", partial(plots.grid_figure, grid),
                    f"Uniform depth x expand ratio, {label} (Figure 2)")
        buckets, samples = bucket_samples(series, request.space, ofa_space, self.scorer, request.bucket_ms,
                                          request.per_bucket, self.rng)
        self.summary["buckets"].append(buckets.summary())
        for low, a, b in buckets.left_out:
            section.notes.append(f"{label}: bucket {low:g}-{low + buckets.width_ms:g} ms left out: {a} "
                                 f"{request.space} and {b} {ofa_space} subnets (at least {MIN_BUCKET_SAMPLES} of "
                                 "each are needed)")
        if buckets.rows:
            self.figure(section, f"bucket-cdf-{_slug(label)}", partial(plots.cdf_figure, buckets),
                        f"Accuracy CDF per latency bucket, {label} (Figure 4)")
            self.figure(section, f"bucket-mean-{_slug(label)}", partial(plots.mean_figure, buckets),
                        f"Mean accuracy per latency bucket, {label} (Figure 5)")
        return samples

    def across_devices(self) -> page.Section:
        section = page.Section("Across devices", "Kendall rank correlation of subnet latency between every pair of "
                               f"sources, over the {self.request.space} subnets both answer for: near 1, a table "
                               "from one source picks nearly the same subnets as the other's; lower, profile the new "
                               "device.")
        sources: list[TableSeries | LutSeries] = [*self.tables, *self.luts]
        if len(sources) < 2:
            section.notes.append("one latency source only: give another --table (or --lut) to compare devices")
            return section
        self.say("rank correlation across sources")
        result = self.attempt(section, "comparison", lambda: cross_device(sources, self.labels, self.request.space))
        if result is None:
            return section
        self.cross = result
        self.summary["cross_device"] = result.summary()
        self.figure(section, "rank-correlation", partial(plots.correlation_figure, result),
                    "Kendall tau between sources")
        if result.scatters:
            self.figure(section, "latency-scatter", partial(plots.scatter_figure, result.scatters),
                        "Latency on one source against another",
                        [interactive.scatter_chart(scatter, self.width, self.scorer) for scatter in result.scatters])
        self.say("joint front across sources")
        joint = self.attempt(section, "joint front", lambda: joint_front(sources, self.labels, self.request.space,
                                                                          self.scorer))
        if joint is not None:
            self.summary["joint_front"] = joint.summary()
            self.figure(section, "joint-front", partial(plots.joint_front_figure, joint),
                        f"Joint Pareto front: {len(joint.front)} of {len(joint.specs)} subnets no other beats on "
                        f"{', '.join(joint.objectives)}")
        return section

    def runtimes(self) -> page.Section | None:
        """Runtimes and precisions measured on one machine, against FP32 ONNX Runtime (None: nothing to compare)."""
        views = runtime_views(self.tables, self.labels[: len(self.tables)], self.request.space, self.scorer)
        if not views:
            return None
        self.say("runtimes and precisions")
        section = page.Section(
            "Runtimes and precisions", "Per machine, Kendall rank correlation of subnet latency between every runtime "
            "and precision and FP32 ONNX Runtime (near 1: a table of one serves a search for the other), and the "
            f"subnet a search picks at {', '.join(f'{s}%' for s in TARGET_SHARES)} of each precision's latency "
            "range, in fp32 and in a lower precision of the same runtime, over the subnets both measured.")
        self.summary["runtimes"] = [view.summary() for view in views]
        for view in views:
            if view.baseline is None:
                section.notes.append(f"{view.machine}: no FP32 ONNX Runtime table to compare with; profile one with "
                                     "`compofa profile --device onnxruntime`")
            if view.agreements:
                section.tables.append(page.Table(
                    (f"{view.machine}: against {view.baseline}", "runtime", "precision", "batch", "Kendall tau",
                     "subnets"),
                    [(a.label, a.backend, a.precision, str(a.batch),
                      "-" if np.isnan(a.kendall_tau) else f"{a.kendall_tau:.3f}", str(a.shared))
                     for a in view.agreements]))
            if view.changes:
                section.tables.append(page.Table(
                    ("runtime", "precision", "target", "fp32 pick", "accuracy", "lower-precision pick", "accuracy",
                     "changed"),
                    [(f"{c.backend} b{c.batch}", c.precision, f"{c.share}%", c.fp32_spec, f"{c.fp32_accuracy:.4f}",
                      c.other_spec, f"{c.other_accuracy:.4f}", "yes" if c.changed else "no") for c in view.changes]))
        if any(view.agreements for view in views):
            self.figure(section, "runtime-agreement", partial(plots.runtime_figure, views),
                        "Rank agreement of every runtime and precision with FP32 ONNX Runtime")
        return section

    def summarize(self) -> page.Section:
        """The answer first (`compofa.report.summary`): the picks per source, the taus, the warnings; and, without
        matplotlib, that figures were left out."""
        self.say("summary")
        space, left_out = self.request.space, page.Section("Summary", "")
        picks = [self.attempt(left_out, f"{series.label}: picks", partial(table_picks, series, space, self.scorer))
                 for series in self.tables]
        picks += [self.attempt(left_out, f"{lut.label}: picks", partial(lut_picks, lut, space, self.scorer))
                  for lut in self.luts]
        panels = {series.label: panel for series, panel in self.measured_panels}
        caveats = []
        for series in self.tables:
            caveats += entry_warnings(series)
            for cloud in panels[series.label].clouds if series.label in panels else ():
                caveats += [c for c in (partial_warning(series, cloud), unresolved_warning(series.label, cloud)) if c]
        result = Summary(tuple(p for p in picks if p is not None), agreements(self.cross) if self.cross else (),
                         tuple(caveats))
        self.summary["summary"] = result.record()
        return summary_section(result, ([] if self.drawing else [plots.MISSING]) + left_out.notes)

    def noise(self) -> page.Section:
        section = page.Section("Noise", "Per measured table: the 95% confidence interval of each entry relative to "
                               "its median, entries the profiler could not make stable, and the drift of the "
                               "machine's speed per round (discarded rounds were measured again).")
        for series, label in zip(self.tables, self.labels):
            self.say(f"noise of {label}")
            report = noise_report(series)
            self.summary["noise"].append(report.summary())
            self.figure(section, f"noise-{_slug(label)}", partial(plots.noise_figure, report), f"Noise, {label}")
            if report.unstable:
                section.tables.append(page.Table(
                    ("unstable entry", "median ms", "CI half-width", "warnings"),
                    [(s, f"{m:.3f}", f"{c:.1%}", "; ".join(w)) for s, m, c, w in report.unstable]))
        return section


def write_report(request: ReportRequest, progress: Progress | None = None) -> ReportResult:
    """Compute, draw and write every part of the report for `request` (see the module docstring)."""
    start = time.perf_counter()
    _check_output(request.output)
    if request.per_bucket < 2:
        raise ReportError(f"per_bucket must be at least 2 to draw a distribution, got {request.per_bucket}")
    plots.check_image_options(request.image_format, request.dpi)
    tables, luts, width = _gather(request)
    builder = _Builder(request, tables, luts, width, progress or (lambda _: None))
    fronts, views = builder.fronts_and_views()
    runtimes = builder.runtimes()
    sections = [fronts, *([views] if luts else []), builder.across_devices(), *([runtimes] if runtimes else []),
                *([builder.noise()] if tables else [])]
    sections.insert(0, builder.summarize())  # the page's first section, made last: it reads the others' results
    notes = [note for section in sections for note in section.notes]
    builder.summary.update(_header(request, builder.labels, width, notes))
    builder.say("writing")
    return _write(request.output, builder.files, builder.summary, sections, notes, start)


def _header(request: ReportRequest, labels: Sequence[str], width: float, notes: list[str]) -> dict[str, Any]:
    return {"compofa_version": __version__, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "space": request.space, "width": width, "accuracy": request.accuracy, "sources": list(labels),
            "tables": [str(p) for p in request.tables], "luts": list(request.luts), "seed": request.seed,
            "notes": notes}


def _write(output: Path, files: dict[str, bytes], summary: dict[str, Any], sections: list[page.Section],
           notes: list[str], start: float) -> ReportResult:
    summary["files"] = sorted(files)
    meta = [f"compofa {__version__}, {summary['created_at']}; space {summary['space']} w{summary['width']:g}; "
            f"sources: {', '.join(summary['sources'])}"]
    contents = [*files.items(),
                (SUMMARY_NAME, (json.dumps(summary, indent=1, default=_plain) + "\n").encode()),
                (PAGE_NAME, page.render("compofa report", meta, sections).encode())]  # the page last
    written = write_folder_atomic(output, contents)
    return ReportResult(written, summary, notes, time.perf_counter() - start)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to the report summary")
