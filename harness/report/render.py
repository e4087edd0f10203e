"""Rendering: a document of sections and blocks, as Markdown or as one self-contained HTML page.

Blocks: ("p", text), ("ul", [text]), ("table", Grid), ("details", title, Grid), ("img", caption, path).
The page carries its stylesheet, a table of contents, the plots as inline PNG and a few
lines of script that filter sections and rows: no external resource, readable offline.
"""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

NUMBER = re.compile(r"^[−+-]?[\d,]*\.?\d+(e[−+-]?\d+)?\s*(×|x|%|\s*±.*|\s*\(.*\))?$")


@dataclass
class Grid:
    """A table of text cells; numbers are right-aligned."""
    frame: pd.DataFrame

    def numeric(self) -> list[bool]:
        """Per column: are its filled cells numbers (so right-aligned)?"""
        return [any(NUMBER.match(v) for v in col) and all(NUMBER.match(v) or v.startswith(("—", "n/a")) for v in col)
                for col in (self.frame[c].astype(str) for c in self.frame.columns)]


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list = field(default_factory=list)
    filters: dict[str, str] = field(default_factory=dict)  # e.g. {"device": "cuda", "model": "mlp"}
    level: int = 2


@dataclass
class Document:
    title: str
    intro: list[str]  # lines under the title
    summary: list[str]  # the answer: shown first, as it is
    sections: list[Section]


# ---------------------------------------------------------------- Markdown
def github_anchor(title: str) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def md_table(grid: Grid) -> str:
    cells = grid.frame.astype(str).map(lambda v: v.replace("|", "\\|"))
    align = ["---:" if n else "---" for n in grid.numeric()]
    return "\n".join(["| " + " | ".join(grid.frame.columns) + " |", "| " + " | ".join(align) + " |"]
                     + ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)])


def md_block(block: tuple, base: Path) -> str:
    kind = block[0]
    if kind == "p":
        return block[1]
    if kind == "ul":
        return "\n".join(f"- {item}" for item in block[1])
    if kind == "table":
        return md_table(block[1])
    if kind == "details":  # GitHub folds it as on the page
        return f"<details><summary>{html.escape(block[1])}</summary>\n\n{md_table(block[2])}\n\n</details>"
    if kind == "img":
        return f"![{block[1]}]({block[2].relative_to(base).as_posix()})"
    if kind == "code":  # [(caption, source)], one after another
        return "\n\n".join(f"{caption}:\n\n```python\n{source}\n```" for caption, source in block[1])
    raise ValueError(f"unknown block {kind!r}")


def markdown(doc: Document, base: Path) -> str:
    """The document as Markdown; images linked relative to base (the file's folder)."""
    out = [f"# {doc.title}", "\n".join(doc.intro), "## Summary", "```\n" + "\n".join(doc.summary) + "\n```",
           "Contents: " + " · ".join(f"[{s.title}](#{github_anchor(s.title)})" for s in doc.sections if s.level == 2)]
    for s in doc.sections:
        out.append("#" * s.level + f" {s.title}")
        out += [md_block(b, base) for b in s.blocks if b[0] != "ul" or b[1]]
    return "\n\n".join(out) + "\n"


# ---------------------------------------------------------------- HTML
STYLE = """
.code{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:10px}
.code pre{font-size:12px;background:#f6f8fa;padding:8px;overflow-x:auto;margin:0}
body{font:15px/1.45 system-ui,sans-serif;color:#1d2125;margin:0 auto;max-width:1320px;padding:0 20px 40px}
h1{font-size:1.5em;margin:.6em 0 .2em}h2{margin-top:1.6em;border-bottom:1px solid #d0d7de}h3{margin-top:1.2em}
.intro{color:#57606a;margin:0 0 .6em}
pre.summary{background:#f3f6f9;border-left:4px solid #2f6fb0;padding:10px 14px;white-space:pre-wrap;
font:14px/1.5 ui-monospace,monospace;margin:.4em 0}
nav{font-size:.9em;columns:3 260px;background:#fafbfc;border:1px solid #e5e8eb;padding:6px 10px}
nav a{display:block;text-decoration:none}
table{border-collapse:collapse;font-size:13px;margin:.4em 0;display:block;overflow-x:auto;max-width:100%}
th,td{padding:3px 8px;border-bottom:1px solid #e5e8eb;text-align:left;vertical-align:top}td{white-space:nowrap}
th{background:#f3f6f9;position:sticky;top:0}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr:hover td{background:#f7f9fb}.note{color:#57606a;font-size:.9em}
details{margin:.3em 0}summary{cursor:pointer;color:#2f6fb0}
figure{margin:.8em 0}figure img{max-width:100%;height:auto}figcaption{color:#57606a;font-size:.9em}
.filter{position:sticky;top:0;background:#fff;padding:6px 0;z-index:2;border-bottom:1px solid #e5e8eb}
.filter select,.filter input{margin-right:8px}
"""
# Hide what does not match: a table's section by device and model, any table row by the words typed.
SCRIPT = """
const q=document.getElementById('q'),dev=document.getElementById('dev'),mod=document.getElementById('mod');
function filter(){const words=q.value.toLowerCase().split(/\\s+/).filter(Boolean);
document.querySelectorAll('section[data-device]').forEach(s=>{
s.hidden=(dev.value&&s.dataset.device!==dev.value)||(mod.value&&s.dataset.model!==mod.value)});
document.querySelectorAll('table.rows tbody tr').forEach(r=>{const t=r.textContent.toLowerCase();
r.hidden=!words.every(w=>t.includes(w))})}
[q,dev,mod].forEach(e=>e.addEventListener('input',filter));
"""


def html_table(grid: Grid, css: str = "") -> str:
    numeric = grid.numeric()

    def cell(tag, v, n):
        return f'<{tag}{" class=n" if n else ""}>{html.escape(str(v))}</{tag}>'

    head = "".join(cell("th", c, n) for c, n in zip(grid.frame.columns, numeric))
    body = "".join("<tr>" + "".join(cell("td", v, n) for v, n in zip(row, numeric)) + "</tr>"
                   for row in grid.frame.itertuples(index=False))
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def html_block(block: tuple) -> str:
    kind = block[0]
    if kind == "p":
        return f'<p class="note">{html.escape(block[1])}</p>'
    if kind == "ul":
        return '<ul class="note">' + "".join(f"<li>{html.escape(i)}</li>" for i in block[1]) + "</ul>"
    if kind == "table":
        return html_table(block[1], "rows")
    if kind == "details":
        return f"<details><summary>{html.escape(block[1])}</summary>{html_table(block[2])}</details>"
    if kind == "code":  # [(caption, source)], side by side
        return '<div class="code">' + "".join(
            f"<figure><figcaption>{html.escape(caption)}</figcaption><pre>{html.escape(source)}</pre></figure>"
            for caption, source in block[1]) + "</div>"
    if kind == "img":
        data = base64.b64encode(block[2].read_bytes()).decode()
        return (f'<figure><img alt="{html.escape(block[1])}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(block[1])}</figcaption></figure>")
    raise ValueError(f"unknown block {kind!r}")


def filter_bar(doc: Document) -> str:
    """Selects for device and model, and a box for words in a row; empty when nothing is filterable."""
    values = {k: sorted({s.filters[k] for s in doc.sections if k in s.filters}) for k in ("device", "model")}
    if not any(values.values()):
        return ""
    selects = "".join(
        f'<label>{k} <select id="{k[:3]}"><option value="">all</option>'
        + "".join(f'<option>{html.escape(v)}</option>' for v in vs) + "</select></label>"
        for k, vs in values.items())
    return (f'<div class="filter">{selects}<input id="q" type="search" placeholder="rows with words, e.g. scan torch">'
            "</div>")


def page(doc: Document) -> str:
    """The document as one HTML page: summary first, then contents, then every section."""
    toc = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in doc.sections if s.level == 2)
    body = []
    for s in doc.sections:
        attrs = "".join(f' data-{k}="{html.escape(v)}"' for k, v in s.filters.items())
        body.append(f'<section id="{s.anchor}"{attrs}><h{s.level}>{html.escape(s.title)}</h{s.level}>'
                    + "".join(html_block(b) for b in s.blocks if b[0] != "ul" or b[1]) + "</section>")
    bar = filter_bar(doc)
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f"<title>{html.escape(doc.title)}</title><style>{STYLE}</style></head><body>\n"
            f"<h1>{html.escape(doc.title)}</h1>"
            + "".join(f'<p class="intro">{html.escape(line)}</p>' for line in doc.intro)
            + f'<pre class="summary" id="summary">{html.escape(chr(10).join(doc.summary))}</pre>'
            + f"<nav>{toc}</nav>{bar}\n" + "\n".join(body)
            + (f"<script>{SCRIPT}</script>" if bar else "") + "\n</body></html>\n")
