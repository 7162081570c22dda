"""Drawing the report's figures with matplotlib (an optional dependency: ``pip install 'compofa[report]'``).

Figures are built on `matplotlib.figure.Figure` directly, never through
pyplot, so no global state or display backend is involved; each is rendered
to PNG or SVG bytes. One convention holds across them: accuracy is top-1
accuracy in percent (higher is better), never error; latency is in ms; a
measured latency carries its 95% confidence interval as a bar, an estimate
(a LUT's layer sum) none.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from compofa.report.crossdevice import CrossDevice, Scatter
from compofa.report.design import Buckets, Grid
from compofa.report.joint import JointFront
from compofa.report.noise import NoiseReport
from compofa.report.pareto import ParetoPanel
from compofa.report.runtimes import MachineRuntimes
from compofa.report.series import ReportError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: One colour per space of the pair: the coupled space first.
COLOURS = ("#1f77b4", "#ff7f0e")
DPI = 110
IMAGE_FORMATS = ("png", "svg")
#: What the report says (on the page and as a note) when it cannot draw.
MISSING = ("figures left out: they are drawn with matplotlib, which is not installed; "
           "pip install 'compofa[report]' (or pip install matplotlib) and run the report again")


def available() -> bool:
    """Whether matplotlib can be imported (the report is written without figures where it cannot)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def check_image_options(image_format: str, dpi: int) -> None:
    if image_format not in IMAGE_FORMATS:
        raise ReportError(f"image format {image_format!r} is not one of {', '.join(IMAGE_FORMATS)}",
                          option="image_format")
    if dpi < 1:
        raise ReportError(f"dpi must be a positive number of dots per inch, got {dpi}", option="dpi")


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def render(figure: Figure, image_format: str = "png", dpi: int = DPI) -> bytes:
    """The figure as PNG or SVG bytes (an SVG without its creation date, so one report's figures are the same
    bytes each time it is written)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=image_format, dpi=dpi, metadata={"Date": None} if image_format == "svg" else None)
    return buffer.getvalue()


def _interval_bars(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray | None:
    """Error-bar lengths below and above `values` (2 x n) for `errorbar`; None where nothing was measured.
    An unmeasured point among measured ones gets no bar (0)."""
    measured = np.isfinite(low) & np.isfinite(high)
    if not measured.any():
        return None
    below = np.where(measured, values - np.where(measured, low, values), 0.0)
    above = np.where(measured, np.where(measured, high, values) - values, 0.0)
    return np.vstack([np.maximum(below, 0.0), np.maximum(above, 0.0)])


def _percent(values: np.ndarray) -> np.ndarray:
    return np.asarray(values) * 100


def pareto_figure(panel: ParetoPanel) -> Figure:
    figure = _figure(7, 4.5)
    axes = figure.add_subplot()
    for colour, cloud in zip(COLOURS, panel.clouds):
        if cloud.show_points:
            axes.scatter(cloud.latency, _percent(cloud.accuracy), s=6, alpha=0.25, color=colour, linewidths=0)
        front = cloud.front
        axes.step(cloud.latency[front], _percent(cloud.accuracy[front]), where="post", color=colour, linewidth=1.6,
                  marker="o", markersize=3, label=f"{cloud.space}: {cloud.method}")
        bars = _interval_bars(cloud.latency[front], cloud.latency_low[front], cloud.latency_high[front])
        if bars is not None:  # measured: each front subnet's 95% interval of its median latency
            axes.errorbar(cloud.latency[front], _percent(cloud.accuracy[front]), xerr=bars, fmt="none",
                          ecolor=colour, elinewidth=0.9, capsize=2, alpha=0.8)
    if any(cloud.measured for cloud in panel.clouds):
        axes.text(0.01, 0.99, "bars: 95% interval of the median latency", transform=axes.transAxes, fontsize=7,
                  va="top", color="#555555")
    axes.set_xlabel("latency (ms)")
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_title(f"Pareto front: {panel.series}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    return figure


def grid_figure(grid: Grid) -> Figure:
    figure = _figure(9, 3.8)
    panels = ((grid.accuracy * 100, "top-1 accuracy (%)", "{:.1f}", "viridis"),
              (grid.latency, "latency (ms)", "{:.2f}", "magma_r"))
    for index, (values, title, form, colours) in enumerate(panels):
        axes = figure.add_subplot(1, 2, index + 1)
        image = axes.imshow(values, origin="lower", cmap=colours, aspect="auto")
        axes.set_xticks(range(len(grid.expands)), [str(e) for e in grid.expands])
        axes.set_yticks(range(len(grid.depths)), [str(d) for d in grid.depths])
        axes.set_xlabel("expand ratio (every block)")
        axes.set_ylabel("depth (every stage)")
        axes.set_title(title, fontsize=10)
        low, high = float(values.min()), float(values.max())
        for row, depth in enumerate(grid.depths):
            for column, expand in enumerate(grid.expands):
                shade = (values[row, column] - low) / (high - low) if high > low else 0.5
                text = form.format(values[row, column]) + (" *" if (depth, expand) in grid.coupled else "")
                axes.text(column, row, text, ha="center", va="center", fontsize=8,
                          color="black" if (shade > 0.5) == (colours == "viridis") else "white")
        figure.colorbar(image, ax=axes, shrink=0.85)
    figure.suptitle(f"{grid.space}, uniform depth x expand ratio, kernel 5, {grid.resolution} px: {grid.series}"
                    "  (* = kept by CompOFA)", fontsize=10)
    return figure


def cdf_figure(buckets: Buckets) -> Figure:
    """Per latency bucket, the share of random subnets at or below each accuracy: the curve further right, the
    more accurate space. Each panel spans its own bucket's accuracies (a shared axis would squeeze each into a
    sliver of the whole range); the panels share the share axis and one legend."""
    from matplotlib.ticker import MaxNLocator

    count = len(buckets.rows)
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure = _figure(3.8 * columns, 0.6 + 3.0 * rows)
    grid = figure.subplots(rows, columns, sharey=True, squeeze=False)
    for axes, pair in zip(grid.flat, buckets.rows):
        for colour, space, sample in zip(COLOURS, buckets.spaces, pair):
            accuracy = np.sort(_percent(sample.accuracy))
            shares = np.arange(len(accuracy) + 1) / len(accuracy)  # from 0 below the least accurate subnet
            axes.step(np.concatenate([accuracy[:1], accuracy]), shares, where="post", color=colour, linewidth=1.5,
                      label=space)
        sizes = "/".join(str(len(sample.accuracy)) for sample in pair)
        axes.set_title(f"{pair[0].low_ms:g}-{pair[0].high_ms:g} ms (n={sizes})", fontsize=10)
        axes.tick_params(labelsize=9)
        axes.xaxis.set_major_locator(MaxNLocator(5))  # a bucket spans a few points of accuracy: few labels
        axes.grid(alpha=0.3)
    for axes in grid.flat[count:]:
        axes.set_visible(False)
    figure.supxlabel("top-1 accuracy (%)", fontsize=10)
    figure.supylabel("share of subnets at or below", fontsize=10)
    handles, labels = grid.flat[0].get_legend_handles_labels()
    # the legend above the panels carries the title (a suptitle and an outside legend would overlap)
    figure.legend(handles, labels, loc="outside upper center", ncols=len(labels), fontsize=10, title_fontsize=11,
                  title=f"Accuracy CDF per {buckets.width_ms:g} ms bucket, random subnets: {buckets.series}",
                  frameon=False)
    return figure


def mean_figure(buckets: Buckets) -> Figure:
    figure = _figure(7, 4)
    axes = figure.add_subplot()
    centres = np.array([(pair[0].low_ms + pair[0].high_ms) / 2 for pair in buckets.rows])
    for side, (colour, space) in enumerate(zip(COLOURS, buckets.spaces)):
        means = np.array([pair[side].mean for pair in buckets.rows]) * 100
        spread = np.array([pair[side].ci95 for pair in buckets.rows]) * 100
        axes.plot(centres, means, marker="o", color=colour, label=space)
        axes.fill_between(centres, means - spread, means + spread, color=colour, alpha=0.2, linewidth=0)
    axes.set_xlabel(f"latency bucket centre (ms; {buckets.width_ms:g} ms wide)")
    axes.set_ylabel("mean top-1 accuracy (%)")
    axes.set_title(f"Mean accuracy of random subnets per bucket (95% interval): {buckets.series}", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def correlation_figure(cross: CrossDevice) -> Figure:
    count = len(cross.labels)
    size = 2.2 + 1.1 * count
    figure = _figure(size + 1.5, size)
    axes = figure.add_subplot()
    image = axes.imshow(cross.kendall, vmin=min(0.0, float(np.nanmin(cross.kendall))), vmax=1.0, cmap="RdYlGn")
    axes.set_xticks(range(count), cross.labels, rotation=30, ha="right", fontsize=8)
    axes.set_yticks(range(count), cross.labels, fontsize=8)
    for i in range(count):
        for j in range(count):
            value = cross.kendall[i, j]
            text = "-" if np.isnan(value) else f"{value:.3f}\n({int(cross.shared[i, j])})"
            axes.text(j, i, text, ha="center", va="center", fontsize=8)
    figure.colorbar(image, ax=axes, shrink=0.8, label="Kendall tau")
    axes.set_title("Rank agreement of subnet latency (shared subnets)", fontsize=10)
    return figure


def scatter_figure(scatters: Sequence[Scatter]) -> Figure:
    count = len(scatters)
    columns = min(count, 3)
    figure = _figure(4.2 * columns, 3.8 * math.ceil(count / columns))
    for index, scatter in enumerate(scatters):
        axes = figure.add_subplot(math.ceil(count / columns), columns, index + 1)
        axes.scatter(scatter.x, scatter.y, s=8, alpha=0.6, linewidths=0, color=COLOURS[0])
        xerr = _interval_bars(scatter.x, scatter.x_low, scatter.x_high)
        yerr = _interval_bars(scatter.y, scatter.y_low, scatter.y_high)
        if xerr is not None or yerr is not None:  # each measured latency's 95% interval
            axes.errorbar(scatter.x, scatter.y, xerr=xerr, yerr=yerr, fmt="none", ecolor=COLOURS[0], elinewidth=0.7,
                          alpha=0.5, label="95% intervals")
        line = np.array([scatter.x.min(), scatter.x.max()])
        axes.plot(line, line * scatter.ratio, color="grey", linewidth=1, label=f"x {scatter.ratio:.3g} (median ratio)")
        _same_latency_line(axes, scatter)
        axes.set_xlabel(f"{scatter.a} (ms)", fontsize=8)
        axes.set_ylabel(f"{scatter.b} (ms)", fontsize=8)
        axes.set_title(f"tau {scatter.kendall_tau:.3f}, {len(scatter.x)} subnets", fontsize=9)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    return figure


def _same_latency_line(axes: Axes, scatter: Scatter) -> None:
    """y = x over the part of the view it crosses; where the two sources' ranges do not overlap, a word instead
    (stretching the view to reach the line would squeeze the points into a corner)."""
    low, high = max(scatter.x.min(), scatter.y.min()), min(scatter.x.max(), scatter.y.max())
    if low < high:
        axes.plot([low, high], [low, high], color="black", linewidth=0.8, linestyle="--", label="y = x (same latency)")
    else:
        axes.text(0.02, 0.98, f"y = x lies outside the view:\n{scatter.b} is {scatter.ratio:.3g}x {scatter.a}",
                  transform=axes.transAxes, ha="left", va="top", fontsize=7, color="#555555")


def noise_figure(noise: NoiseReport) -> Figure:
    figure = _figure(10, 3.6)
    left = figure.add_subplot(1, 2, 1)
    from matplotlib.ticker import MaxNLocator

    left.hist(_percent(noise.relative_ci), bins=30, color=COLOURS[0])
    left.yaxis.set_major_locator(MaxNLocator(integer=True))  # a count of entries
    left.set_xlabel("95% CI half-width (% of median)")
    left.set_ylabel("entries")
    left.set_title(f"{_count(len(noise.relative_ci), 'entry', 'entries')}, {noise.unstable_count} unstable",
                   fontsize=10)
    right = figure.add_subplot(1, 2, 2)
    kept = ~noise.discarded
    span, unit = _time_unit(float(noise.seconds.max()) if len(noise.seconds) else 0.0)
    elapsed = noise.seconds / span
    if noise.discarded.any():  # drawn first, faint: the kept rounds are what the entries rest on
        right.scatter(elapsed[noise.discarded], noise.drift[noise.discarded], s=6, color="red", alpha=0.3,
                      linewidths=0, label="discarded (moved within the round)")
    right.scatter(elapsed[kept], noise.drift[kept], s=6, alpha=0.7, linewidths=0, color=COLOURS[0],
                  label="round used")
    right.axhline(1.0, color="grey", linewidth=1)
    right.set_xlabel(f"{unit} since the first round")
    right.set_ylabel("drift (reference / baseline)")
    right.set_title(f"{_count(len(noise.drift), 'round')}, {int(noise.discarded.sum())} discarded", fontsize=10)
    right.grid(alpha=0.3)
    right.legend(fontsize=7)
    figure.suptitle(f"Noise: {noise.series}", fontsize=10)
    return figure


def _time_unit(seconds: float) -> tuple[float, str]:
    """Seconds per unit and the unit's name that suit a run of `seconds`: seconds up to 2 minutes, minutes up to
    2 hours, hours beyond."""
    if seconds < 120:
        return 1.0, "seconds"
    if seconds < 7200:
        return 60.0, "minutes"
    return 3600.0, "hours"


def _count(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def joint_front_figure(joint: JointFront) -> Figure:
    """The first two sources' latencies of every shared subnet, the joint front coloured by accuracy."""
    figure = _figure(6.5, 5)
    axes = figure.add_subplot()
    x, y = joint.latency[:, 0], joint.latency[:, 1]
    axes.scatter(x, y, s=6, color="#bbbbbb", linewidths=0, label="subnets")
    front = joint.front
    image = axes.scatter(x[front], y[front], c=_percent(joint.accuracy[front]), s=18, cmap="viridis",
                         label=f"joint front ({len(front)})")
    figure.colorbar(image, ax=axes, label="top-1 accuracy (%) on the front")
    axes.set_xlabel(f"{joint.labels[0]} (ms)", fontsize=8)
    axes.set_ylabel(f"{joint.labels[1]} (ms)", fontsize=8)
    more = len(joint.objectives) - 3
    axes.set_title(f"Joint front of {len(joint.specs)} subnets" + (f" ({more} more objectives in report.json)"
                                                                   if more else ""), fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    return figure


def runtime_figure(views: Sequence[MachineRuntimes]) -> Figure:
    """Kendall tau of every runtime and precision against FP32 ONNX Runtime, per machine."""
    rows = [(f"{a.label}", a.kendall_tau) for view in views for a in view.agreements]
    figure = _figure(7, 1.2 + 0.35 * max(len(rows), 1))
    axes = figure.add_subplot()
    positions = np.arange(len(rows))
    values = np.array([0.0 if np.isnan(tau) else tau for _, tau in rows])
    axes.barh(positions, values, color=COLOURS[0])
    for position, value, (_, tau) in zip(positions.tolist(), values.tolist(), rows):
        axes.text(max(0.0, value) + 0.01, position, "-" if np.isnan(tau) else f"{tau:.3f}", va="center", fontsize=8)
    axes.set_yticks(positions, [label for label, _ in rows], fontsize=8)
    axes.set_xlim(min(0.0, float(values.min()) if len(values) else 0.0), 1.1)
    axes.set_xlabel("Kendall tau against FP32 ONNX Runtime on the same machine")
    axes.invert_yaxis()
    axes.grid(alpha=0.3, axis="x")
    return figure
