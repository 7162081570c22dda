"""The report as one self-contained HTML page: figures inline, nothing fetched.

The Pareto fronts and latency scatters are also drawn as interactive charts (`compofa.report.interactive`):
SVG that reads without scripts, and one inline script that shows a subnet's numbers on hover or keyboard
focus and copies its `compofa export` command on a click. The static PNGs stay on the page, folded under each
chart, and in the folder (for papers). A Content-Security-Policy forbids every fetch and every other script:
the page may show only its inline styles and data: images, and run only that script (by its hash).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

from compofa.report import interactive

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
img { max-width: 100%; display: block; margin: 1em 0 .3em; }
figcaption { font-size: .9em; color: #555; margin-bottom: 1.2em; }
table { border-collapse: collapse; font-size: .85em; margin: .8em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f4f4f4; } td.text { text-align: left; font-family: monospace; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .4em .8em; margin: .6em 0; }
.meta { color: #555; font-size: .9em; }
details.static summary { cursor: pointer; color: #555; font-size: .85em; }
"""


def _policy() -> str:
    """Nothing may be fetched (default-src 'none'); inline styles, data: images and the charts' script may be used."""
    return (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src {interactive.script_hash()}; "
            "base-uri 'none'; form-action 'none'")


@dataclass
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass
class Figure:
    file_name: str
    png: bytes
    caption: str
    charts: Sequence[str] = ()  # the same figure as interactive charts (HTML from `compofa.report.interactive`)


@dataclass
class Section:
    """One part of the report: what it shows, its figures and tables, and what was left out and why."""

    title: str
    text: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")


def _table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in table.header)
    body = []
    for row in table.rows:
        cells = []
        for cell in row:
            numeric = cell.replace(".", "", 1).replace("-", "", 1).replace("%", "").replace("+", "").isdigit()
            cells.append(f"<td{'' if numeric else ' class=text'}>{html.escape(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render(title: str, meta: Sequence[str], sections: Sequence[Section]) -> str:
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
             f"<meta http-equiv=Content-Security-Policy content=\"{_policy()}\"><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}{interactive.STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts.extend(f"<p class=meta>{html.escape(line)}</p>" for line in meta)
    parts.append("<ul>" + "".join(f"<li><a href='#{s.anchor}'>{html.escape(s.title)}</a></li>" for s in sections)
                 + "</ul>")
    for section in sections:
        parts.append(f"<h2 id='{section.anchor}'>{html.escape(section.title)}</h2><p>{html.escape(section.text)}</p>")
        parts.extend(f"<p class=note>{html.escape(note)}</p>" for note in section.notes)
        parts.extend(_figure(figure) for figure in section.figures)
        parts.extend(_table(table) for table in section.tables)
    if any(figure.charts for section in sections for figure in section.figures):
        parts.append(f"<script>{interactive.SCRIPT}</script>")
    parts.append("</body></html>\n")
    return "".join(parts)


def _figure(figure: Figure) -> str:
    if not figure.file_name:  # charts only: no static figure was drawn (matplotlib is missing)
        return f"<figure>{''.join(figure.charts)}<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
    data = base64.b64encode(figure.png).decode("ascii")
    mime = "image/svg+xml" if figure.file_name.endswith(".svg") else "image/png"  # the format the report drew
    image = f"<img alt='{html.escape(figure.caption)}' src='data:{mime};base64,{data}'>"
    if figure.charts:  # the static figure folded under the charts: the same numbers, for papers
        image = (f"{''.join(figure.charts)}<details class=static><summary>static figure "
                 f"({html.escape(figure.file_name)})</summary>{image}</details>")
    caption = f"{html.escape(figure.caption)} ({html.escape(figure.file_name)})"
    return f"<figure>{image}<figcaption>{caption}</figcaption></figure>"
