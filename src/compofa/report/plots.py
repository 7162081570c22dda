"""Drawing the report's figures with matplotlib (an optional dependency: ``pip install 'compofa[report]'``).

Figures are built on `matplotlib.figure.Figure` directly, never through
pyplot, so no global state or display backend is involved; each is rendered
to PNG bytes.
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


def require_matplotlib() -> None:
    """Fail in one line, before any work, where matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ReportError("the report draws with matplotlib, which is not installed: "
                          "pip install 'compofa[report]' (or pip install matplotlib)") from None


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


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


def _bucket_axes(figure: Figure, count: int) -> list[Axes]:
    columns = min(count, 4)
    rows = math.ceil(count / columns)
    return [figure.add_subplot(rows, columns, index + 1) for index in range(count)]


def cdf_figure(buckets: Buckets) -> Figure:
    count = len(buckets.rows)
    columns = min(count, 4)
    figure = _figure(3.0 * columns, 2.6 * math.ceil(count / columns))
    for axes, pair in zip(_bucket_axes(figure, count), buckets.rows):
        for colour, space, sample in zip(COLOURS, buckets.spaces, pair):
            error = np.sort(100 - _percent(sample.accuracy))
            axes.step(error, np.arange(1, len(error) + 1) / len(error), where="post", color=colour,
                      label=f"{space} (n={len(error)})")
        axes.set_title(f"{pair[0].low_ms:g}-{pair[0].high_ms:g} ms", fontsize=9)
        axes.set_xlabel("top-1 error (%)", fontsize=8)
        axes.set_ylabel("share of subnets", fontsize=8)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.suptitle(f"Accuracy CDF per {buckets.width_ms:g} ms bucket, random subnets: {buckets.series}", fontsize=10)
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
        axes.scatter(scatter.x, scatter.y, s=8, alpha=0.6, linewidths=0)
        line = np.array([scatter.x.min(), scatter.x.max()])
        axes.plot(line, line * scatter.ratio, color="grey", linewidth=1, label=f"x {scatter.ratio:.3g} (median ratio)")
        axes.set_xlabel(f"{scatter.a} (ms)", fontsize=8)
        axes.set_ylabel(f"{scatter.b} (ms)", fontsize=8)
        axes.set_title(f"tau {scatter.kendall_tau:.3f}, {len(scatter.x)} subnets", fontsize=9)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    return figure


def noise_figure(noise: NoiseReport) -> Figure:
    figure = _figure(10, 3.6)
    left = figure.add_subplot(1, 2, 1)
    left.hist(_percent(noise.relative_ci), bins=30, color=COLOURS[0])
    left.set_xlabel("95% CI half-width (% of median)")
    left.set_ylabel("entries")
    left.set_title(f"{len(noise.relative_ci)} entries, {noise.unstable_count} unstable", fontsize=10)
    right = figure.add_subplot(1, 2, 2)
    kept = ~noise.discarded
    if noise.discarded.any():  # drawn first, faint: the kept rounds are what the entries rest on
        right.scatter(noise.hours[noise.discarded], noise.drift[noise.discarded], s=6, color="red", alpha=0.3,
                      linewidths=0, label="discarded (moved within the round)")
    right.scatter(noise.hours[kept], noise.drift[kept], s=6, alpha=0.7, linewidths=0, color=COLOURS[0],
                  label="round used")
    right.axhline(1.0, color="grey", linewidth=1)
    right.set_xlabel("hours since the first round")
    right.set_ylabel("drift (reference / baseline)")
    right.set_title(f"{len(noise.drift)} rounds, {int(noise.discarded.sum())} discarded", fontsize=10)
    right.grid(alpha=0.3)
    right.legend(fontsize=7)
    figure.suptitle(f"Noise: {noise.series}", fontsize=10)
    return figure



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
