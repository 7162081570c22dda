"""Interactive charts of the report page: inline SVG drawn here, and one small inline script.

Each chart is complete without scripts: points, the Pareto front or the y = x line, interval bars, axes, ticks
and labels are SVG written here. The script (`SCRIPT`, run once per page) only adds a tooltip and a copy button:
hovering near a point, or moving along the points with the arrow keys once the chart has keyboard focus, shows
the subnet's spec, its median latency with the 95% confidence interval the table stored, and its accuracy; a
click (or Enter) copies the `compofa export` command for that subnet. Its data is the JSON in the chart's
``<script type="application/json">`` element, escaped so that no ``</`` inside a string ends the element.
Nothing is fetched: the page's Content-Security-Policy allows this script (by its hash) and inline data only.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from compofa.errors import CompofaError
from compofa.report.crossdevice import Scatter
from compofa.report.pareto import ParetoPanel
from compofa.report.scoring import Scorer
from compofa.report.series import specs_batch

#: The coupled space first, as in the static figures (`plots.COLOURS`).
COLOURS = ("#1f77b4", "#ff7f0e")
#: The SVG's own coordinates (the page scales it to its width).
WIDTH, HEIGHT = 720, 420
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 46
#: Where the command a click copies puts the subnet's spec: shell-safe, as canonical specs are (lower-case
#: letters, digits, - and _), so the script puts a spec there as it stands.
SPEC_SLOT = "SPEC_SLOT"


def export_command(spec: str, width: float) -> str:
    """The command that writes `spec` (canonical text, which names the space and resolution) as ONNX."""
    return f"compofa export {shlex.quote(spec)} --width {width:g} -o {shlex.quote(spec + '.onnx')}"


@dataclass(frozen=True)
class Axis:
    """One axis of a chart: what it shows (`kind` "latency" in ms, or "accuracy" in percent) and its range."""

    label: str
    name: str
    kind: str
    low: float
    high: float

    def ticks(self) -> list[float]:
        """Round values (1, 2 or 5 times a power of ten apart), about six over the range."""
        raw = (self.high - self.low) / 6
        power = 10 ** math.floor(math.log10(raw))
        step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
        first = math.ceil(self.low / step)
        return [round(k * step, 12) for k in range(first, math.floor(self.high / step) + 1)]

    def to_pixel(self, values: np.ndarray, start: float, end: float) -> np.ndarray:
        return start + (np.asarray(values, dtype=float) - self.low) / (self.high - self.low) * (end - start)


def _axis(label: str, name: str, kind: str, *arrays: np.ndarray) -> Axis:
    values = np.concatenate([a[np.isfinite(a)] for a in arrays])
    low, high = float(values.min()), float(values.max())
    pad = (high - low) * 0.04 or abs(high) * 0.05 or 1.0
    return Axis(label, name, kind, low - pad, high + pad)


def _column(values: np.ndarray, digits: int = 5) -> list[float | None]:
    """JSON numbers to `digits` significant digits; null where not measured (nan)."""
    return [float(f"{v:.{digits}g}") if math.isfinite(v) else None for v in np.asarray(values, dtype=float).tolist()]


def _script_json(data: Mapping[str, object]) -> str:
    """`data` as JSON that cannot end its <script> element early (no `<`, `>` or `&` left unescaped)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@dataclass(frozen=True)
class Points:
    """The points of one chart, in drawing order (later points are drawn on top)."""

    specs: tuple[str, ...]
    x: np.ndarray
    x_low: np.ndarray
    x_high: np.ndarray
    y: np.ndarray
    y_low: np.ndarray
    y_high: np.ndarray
    accuracy: np.ndarray | None  # percent; None where no axis or source gives it

    def part(self, start: int, end: int) -> Points:
        return Points(self.specs[start:end], self.x[start:end], self.x_low[start:end], self.x_high[start:end],
                      self.y[start:end], self.y_low[start:end], self.y_high[start:end],
                      None if self.accuracy is None else self.accuracy[start:end])


class _Canvas:
    """SVG markup of one chart: plot area, axes with ticks and labels, then what is drawn on them."""

    def __init__(self, x: Axis, y: Axis) -> None:
        self.x, self.y = x, y
        self.parts: list[str] = []
        self._axes()

    def px(self, values: np.ndarray) -> np.ndarray:
        return self.x.to_pixel(values, LEFT, WIDTH - RIGHT)

    def py(self, values: np.ndarray) -> np.ndarray:
        return self.y.to_pixel(values, HEIGHT - BOTTOM, TOP)

    def _axes(self) -> None:
        left, right, top, bottom = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
        grid, labels = [], []
        for tick, at in zip(self.x.ticks(), self.px(np.array(self.x.ticks())).tolist()):
            grid.append(f"M{at:.1f} {top}V{bottom}")
            labels.append(f'<text x="{at:.1f}" y="{bottom + 16}" text-anchor="middle">{tick:g}</text>')
        for tick, at in zip(self.y.ticks(), self.py(np.array(self.y.ticks())).tolist()):
            grid.append(f"M{left} {at:.1f}H{right}")
            labels.append(f'<text x="{left - 6}" y="{at + 4:.1f}" text-anchor="end">{tick:g}</text>')
        self.parts += [
            f'<path d="{"".join(grid)}" stroke="#e4e4e4" fill="none"/>',
            f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="#888"/>',
            f'<g class="ticks">{"".join(labels)}</g>',
            f'<text x="{(left + right) / 2}" y="{HEIGHT - 8}" text-anchor="middle">{html.escape(self.x.label)}</text>',
            f'<text transform="translate(16 {(top + bottom) / 2}) rotate(-90)" text-anchor="middle">'
            f"{html.escape(self.y.label)}</text>",
        ]

    def bars(self, points: Points, colour: str, opacity: float = 0.6) -> None:
        """Interval bars (horizontal for x, vertical for y) of the points whose interval was measured."""
        path = []
        x, y = self.px(points.x), self.py(points.y)
        for low, high, at in zip(self.px(points.x_low).tolist(), self.px(points.x_high).tolist(), y.tolist()):
            if math.isfinite(low) and math.isfinite(high):
                path.append(f"M{low:.1f} {at:.1f}H{high:.1f}")
        for low, high, at in zip(self.py(points.y_low).tolist(), self.py(points.y_high).tolist(), x.tolist()):
            if math.isfinite(low) and math.isfinite(high):
                path.append(f"M{at:.1f} {low:.1f}V{high:.1f}")
        if path:
            self.parts.append(f'<path class="bars" d="{"".join(path)}" stroke="{colour}" stroke-opacity="{opacity}"/>')

    def dots(self, points: Points, colour: str, radius: float, opacity: float) -> None:
        circles = "".join(f'<circle class="pt" cx="{a:.1f}" cy="{b:.1f}" r="{radius}"/>'
                          for a, b in zip(self.px(points.x).tolist(), self.py(points.y).tolist()))
        self.parts.append(f'<g fill="{colour}" fill-opacity="{opacity}">{circles}</g>')

    def line(self, x: np.ndarray, y: np.ndarray, colour: str, extra: str = "") -> None:
        coordinates = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(self.px(x).tolist(), self.py(y).tolist()))
        self.parts.append(f'<polyline points="{coordinates}" fill="none" stroke="{colour}"{extra}/>')

    def legend(self, entries: Sequence[tuple[str, str]], top: bool) -> None:
        """Swatches and names in the plot's upper left (`top`) or lower right corner."""
        rows = []
        for index, (colour, text) in enumerate(entries):
            if top:
                at, x, anchor = TOP + 14 + 16 * index, LEFT + 10, "start"
            else:
                at, x, anchor = HEIGHT - BOTTOM - 10 - 16 * (len(entries) - 1 - index), WIDTH - RIGHT - 22, "end"
            swatch = x if top else x + 8
            rows.append(f'<circle cx="{swatch + 4}" cy="{at - 4}" r="4" fill="{colour}"/>'
                        f'<text x="{x + 14 if top else x}" y="{at}" text-anchor="{anchor}">{html.escape(text)}</text>')
        self.parts.append(f'<g class="legend">{"".join(rows)}</g>')

    def svg(self, description: str) -> str:
        return (f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" tabindex="0" aria-label="{html.escape(description)}">'
                f'{"".join(self.parts)}</svg>')


def _chart(title: str, canvas: _Canvas, points: Points, width: float) -> str:
    """The chart's HTML: title, SVG, tooltip, the copied command's box, and its data."""
    data = {
        "x": {"name": canvas.x.name, "kind": canvas.x.kind}, "y": {"name": canvas.y.name, "kind": canvas.y.kind},
        "spec": list(points.specs), "command": export_command(SPEC_SLOT, width), "slot": SPEC_SLOT,
        "xs": _column(points.x), "x_low": _column(points.x_low), "x_high": _column(points.x_high),
        "ys": _column(points.y), "y_low": _column(points.y_low), "y_high": _column(points.y_high),
        "accuracy": None if points.accuracy is None else _column(points.accuracy, 4),
    }
    hint = "hover or focus (then arrow keys) for a subnet; click or Enter copies its compofa export command"
    return (f'<div class="chart"><div class="chart-title">{html.escape(title)}</div>{canvas.svg(title + ". " + hint)}'
            '<div class="tip" role="status" aria-live="polite" hidden></div>'
            f'<p class="copy"><input readonly aria-label="compofa export command" placeholder="{hint}">'
            '<span class="status" role="status"></span></p>'
            f'<script type="application/json">{_script_json(data)}</script></div>')


def _nan(count: int) -> np.ndarray:
    return np.full(count, np.nan)


def pareto_chart(panel: ParetoPanel, width: float) -> str:
    """Every drawn subnet of `panel` (a cloud's front alone where the static figure shows no cloud), each
    front as a step line over its points, drawn on top, with the latency intervals of measured front points."""
    layers = []  # (colour, cloud, indices, on the front), in drawing order: every cloud behind every front
    for colour, cloud in zip(COLOURS, panel.clouds):
        if cloud.show_points:
            layers.append((colour, cloud, np.setdiff1d(np.arange(len(cloud.specs)), cloud.front), False))
    layers += [(colour, cloud, np.asarray(cloud.front, dtype=int), True)
               for colour, cloud in zip(COLOURS, panel.clouds)]

    def joined(name: str) -> np.ndarray:
        return np.concatenate([np.asarray(getattr(cloud, name), dtype=float)[index] for _, cloud, index, _ in layers])

    count = sum(len(index) for _, _, index, _ in layers)
    points = Points(tuple(cloud.specs[i] for _, cloud, index, _ in layers for i in index.tolist()),
                    joined("latency"), joined("latency_low"), joined("latency_high"), joined("accuracy") * 100,
                    _nan(count), _nan(count), None)
    measured = bool(np.isfinite(points.x_low).any())
    canvas = _Canvas(_axis("latency (ms): median, bars the 95% interval" if measured else "latency (ms, estimated)",
                           "latency", "latency", points.x, points.x_low, points.x_high),
                     _axis("top-1 accuracy (%)", "accuracy", "accuracy", points.y))
    offset, legend = 0, []
    for colour, cloud, index, on_front in layers:
        part = points.part(offset, offset + len(index))
        offset += len(index)
        if not on_front:
            canvas.dots(part, colour, 2.2, 0.3)
            continue
        canvas.line(np.repeat(part.x, 2)[1:], np.repeat(part.y, 2)[:-1], colour, ' stroke-width="1.5"')
        canvas.bars(part, colour)
        canvas.dots(part, colour, 3.2, 1.0)
        legend.append((colour, f"{cloud.space}: front of {len(index)}, {len(cloud.specs)} subnets"))
    canvas.legend(legend, top=False)
    return _chart(f"Pareto front, {panel.series}", canvas, points, width)


def scatter_chart(scatter: Scatter, width: float, scorer: Scorer | None = None) -> str:
    """Latency of each shared subnet on `scatter.a` (x) against `scatter.b` (y), interval bars where measured,
    and the line y = x: above it a subnet is slower on b. `scorer`, where given, adds accuracy to the tooltip."""
    accuracy = None
    if scorer is not None:
        try:
            accuracy = scorer.accuracy(specs_batch(list(scatter.specs))) * 100
        except CompofaError:  # a source without these subnets (measured accuracy rows): the latencies still show
            accuracy = None
    points = Points(scatter.specs, scatter.x, scatter.x_low, scatter.x_high, scatter.y, scatter.y_low,
                    scatter.y_high, accuracy)
    canvas = _Canvas(_axis(f"{scatter.a} (ms)", scatter.a, "latency", points.x, points.x_low, points.x_high),
                     _axis(f"{scatter.b} (ms)", scatter.b, "latency", points.y, points.y_low, points.y_high))
    low, high = max(canvas.x.low, canvas.y.low), min(canvas.x.high, canvas.y.high)
    legend = [(COLOURS[0], f"{len(scatter.specs)} subnets, Kendall tau {scatter.kendall_tau:.3f}")]
    if low < high:
        canvas.line(np.array([low, high]), np.array([low, high]), "#777", ' stroke-dasharray="5 4"')
        legend.append(("#777", "dashed: y = x (same latency on both)"))
    else:
        legend.append(("#777", f"y = x lies outside: {scatter.b} runs about {scatter.ratio:.3g}x {scatter.a}"))
    canvas.bars(points, COLOURS[0], 0.35)
    canvas.dots(points, COLOURS[0], 2.6, 0.75)
    canvas.legend(legend, top=True)
    return _chart(f"{scatter.b} against {scatter.a}", canvas, points, width)


#: The page's one script: tooltips and copying for every chart (see the module docstring). Plain ES5-style
#: JavaScript, no libraries; its text is hashed into the page's Content-Security-Policy.
SCRIPT = r"""
(function () {
  "use strict";
  function number(v) { return Math.abs(v) >= 1000 ? v.toFixed(0) : v.toPrecision(4); }
  function setup(chart) {
    var data = JSON.parse(chart.querySelector("script[type='application/json']").textContent);
    var svg = chart.querySelector("svg"), tip = chart.querySelector(".tip");
    var box = chart.querySelector(".copy input"), status = chart.querySelector(".copy .status");
    var dots = Array.prototype.slice.call(svg.querySelectorAll("circle.pt"));
    var order = dots.map(function (_, i) { return i; });
    order.sort(function (a, b) { return data.xs[a] - data.xs[b]; });
    var current = -1;
    function value(axis, values, lows, highs, i) {
      if (axis.kind === "accuracy") { return "accuracy " + values[i].toFixed(2) + "%"; }
      var text = axis.name + ": " + number(values[i]) + " ms median";
      if (lows[i] === null || highs[i] === null) { return text + " (an estimate: no interval)"; }
      return text + ", 95% interval " + number(lows[i]) + ".." + number(highs[i]) + " ms";
    }
    function describe(i) {
      var lines = [data.spec[i], value(data.x, data.xs, data.x_low, data.x_high, i),
                   value(data.y, data.ys, data.y_low, data.y_high, i)];
      if (data.accuracy) { lines.push("accuracy " + data.accuracy[i].toFixed(2) + "%"); }
      lines.push("click or Enter: copy its compofa export command");
      return lines.join("\n");
    }
    function show(i) {
      if (current >= 0) { dots[current].classList.remove("on"); }
      current = i;
      dots[i].classList.add("on");
      tip.textContent = describe(i);
      tip.hidden = false;
      var place = chart.getBoundingClientRect(), dot = dots[i].getBoundingClientRect();
      var left = dot.left - place.left + 12, top = dot.top - place.top + 12;
      if (left + tip.offsetWidth > place.width) { left = Math.max(0, dot.left - place.left - tip.offsetWidth - 12); }
      tip.style.left = left + "px";
      tip.style.top = top + "px";
    }
    function hide() {
      tip.hidden = true;
      if (current >= 0) { dots[current].classList.remove("on"); }
    }
    function nearest(event) {
      var point = svg.createSVGPoint(), best = -1, bestDistance = 144;  // within 12 units of the chart
      point.x = event.clientX; point.y = event.clientY;
      point = point.matrixTransform(svg.getScreenCTM().inverse());
      for (var i = 0; i < dots.length; i++) {
        var dx = dots[i].cx.baseVal.value - point.x, dy = dots[i].cy.baseVal.value - point.y;
        if (dx * dx + dy * dy <= bestDistance) { best = i; bestDistance = dx * dx + dy * dy; }  // later: on top
      }
      return best;
    }
    function say(text) { status.textContent = text; }
    function copy(i) {
      var text = data.command.split(data.slot).join(data.spec[i]);
      box.value = text;
      say("");
      function select() {
        box.focus();
        box.select();
        var copied = false;
        try { copied = document.execCommand("copy"); } catch (error) { copied = false; }
        say(copied ? "copied" : "selected: press Ctrl+C to copy");
      }
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(function () { say("copied"); }, select);
      } else { select(); }
    }
    svg.addEventListener("mousemove", function (event) {
      var i = nearest(event);
      if (i >= 0) { show(i); } else { hide(); }
    });
    svg.addEventListener("mouseleave", hide);
    svg.addEventListener("click", function (event) {
      var i = nearest(event);
      if (i >= 0) { copy(i); }
    });
    svg.addEventListener("focus", function () { show(current >= 0 ? current : order[0]); });
    svg.addEventListener("blur", hide);
    svg.addEventListener("keydown", function (event) {
      var at = order.indexOf(current), step = {ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1}[event.key];
      if (step) { show(order[Math.min(order.length - 1, Math.max(0, at + step))]); }
      else if (event.key === "Home") { show(order[0]); }
      else if (event.key === "End") { show(order[order.length - 1]); }
      else if (event.key === "Enter" && current >= 0) { copy(current); }
      else if (event.key === "Escape") { hide(); }
      else { return; }
      event.preventDefault();
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll(".chart"), setup);
})();
"""

#: What the charts' elements look like; the page adds it to its style sheet.
STYLE = """
.chart { position: relative; max-width: 760px; margin: 1em 0 .3em; }
.chart-title { font-size: .95em; font-weight: 600; }
.chart svg { width: 100%; height: auto; display: block; font-size: 12px; fill: #333; }
.chart svg:focus { outline: none; } .chart svg:focus-visible { outline: 2px solid #4a90d9; }
.chart circle.pt.on { stroke: #000; stroke-width: 2; fill-opacity: 1; }
.chart .bars { fill: none; }
.chart .tip { position: absolute; z-index: 1; pointer-events: none; background: #fff; border: 1px solid #999;
  padding: .3em .5em; font: 12px monospace; white-space: pre-wrap; overflow-wrap: anywhere; max-width: 34em;
  box-shadow: 0 2px 6px rgba(0,0,0,.15); }
.chart .copy { display: flex; gap: .6em; align-items: center; margin: .3em 0; font-size: .85em; }
.chart .copy input { flex: 1; font: 12px monospace; padding: .2em; }
.chart .copy .status { color: #2a7a2a; min-width: 6em; }
"""


def script_hash() -> str:
    """`SCRIPT`'s hash as a Content-Security-Policy source: the one script the page may run."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode("ascii") + "'"
