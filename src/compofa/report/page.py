"""The report as one self-contained HTML page: figures inline, no scripts, nothing fetched."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

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
"""


@dataclass
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass
class Figure:
    file_name: str
    png: bytes
    caption: str


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
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts.extend(f"<p class=meta>{html.escape(line)}</p>" for line in meta)
    parts.append("<ul>" + "".join(f"<li><a href='#{s.anchor}'>{html.escape(s.title)}</a></li>" for s in sections)
                 + "</ul>")
    for section in sections:
        parts.append(f"<h2 id='{section.anchor}'>{html.escape(section.title)}</h2><p>{html.escape(section.text)}</p>")
        parts.extend(f"<p class=note>{html.escape(note)}</p>" for note in section.notes)
        for figure in section.figures:
            data = base64.b64encode(figure.png).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(figure.caption)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(figure.caption)} ({html.escape(figure.file_name)})</figcaption>"
                         "</figure>")
        parts.extend(_table(table) for table in section.tables)
    parts.append("</body></html>\n")
    return "".join(parts)
