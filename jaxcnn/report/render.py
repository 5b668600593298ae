"""Render sections twice, as Markdown (``REPORT.md``) and as one self-contained HTML page (figures
embedded as base64 PNG), so both say the same thing."""

from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path

from jaxcnn.document import Bullets, Figure, Section, Table, Text


def anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(sections: list[Section], out_dir: Path, title: str) -> str:
    """The report as GitHub markdown; figures are linked relative to ``out_dir``.

    The first section (the results at a glance) comes before the list of contents."""
    lines = [f"# {title}", ""]
    for index, section in enumerate(sections):
        if index == 1:
            lines += [*(f"- [{s.title}](#{anchor(s.title)})" for s in sections if s.level == 2), ""]
        lines += [f"{'#' * section.level} {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Text):
                lines += [block.text, ""]
            elif isinstance(block, Bullets):
                lines += [*(f"- {item}" for item in block.items), ""]
            elif isinstance(block, Table):
                if block.caption:
                    lines += [f"*{block.caption}*", ""]
                lines += ["| " + " | ".join(map(md_cell, block.header)) + " |",
                          "|" + "---|" * len(block.header),
                          *("| " + " | ".join(map(md_cell, row)) + " |" for row in block.rows), ""]
            elif isinstance(block, Figure):
                lines += [f"![{block.caption}]({Path(os.path.relpath(block.path, out_dir)).as_posix()})",
                          "", f"*{block.caption}*", ""]
    return "\n".join(lines)


def render_text(sections: list[Section]) -> str:
    """The sections as plain text for a terminal (what a part's command prints): headings, paragraphs,
    tables in aligned columns, figures by path."""
    lines = []
    for section in sections:
        lines += [section.title, ("=" if section.level == 2 else "-") * len(section.title)]
        for block in section.blocks:
            if isinstance(block, Text):
                lines.append(block.text)
            elif isinstance(block, Bullets):
                lines += [f"- {item}" for item in block.items]
            elif isinstance(block, Table):
                rows = [block.header, *block.rows]
                widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(block.header))]
                lines += [*([block.caption] if block.caption else []),
                          *("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)]
            elif isinstance(block, Figure):
                lines.append(f"figure: {block.path}")  # the figures of a section, one line each
                continue
            lines.append("")
        if lines[-1]:
            lines.append("")
    return "\n".join(lines)


def inline_html(text: str) -> str:
    """Escapes ``text`` and renders its `code` spans, **bold** and [links](target)."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
        else:
            linked = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>',
                            html.escape(part, quote=False))
            out.append(re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", linked))
    return "".join(out)


def table_cell(text: str) -> str:
    """A <td>; numbers (``0.9712 ± 0.0123``) are kept on one line."""
    numeric = re.fullmatch(r"-?[\d.]+( ± [\d.]+)?( \(\d+/\d+ seeds\))?", text)
    return f'<td class="num">{inline_html(text)}</td>' if numeric else f"<td>{inline_html(text)}</td>"


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.6rem; text-align: left; }
th { background: #f3f3f3; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
p.caption { font-style: italic; margin-bottom: 0.3rem; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-style: italic; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""


def render_html(sections: list[Section], title: str) -> str:
    """The report as one HTML page with every figure inside it (no file beside it is needed)."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for index, section in enumerate(sections):
        if index == 1:
            body += ["<nav><ul>", *(f'<li><a href="#{anchor(s.title)}">{html.escape(s.title)}</a></li>'
                                    for s in sections if s.level == 2), "</ul></nav>"]
        body.append(f'<h{section.level} id="{anchor(section.title)}">{html.escape(section.title)}</h{section.level}>')
        for block in section.blocks:
            if isinstance(block, Text):
                body.append(f"<p>{inline_html(block.text)}</p>")
            elif isinstance(block, Bullets):
                body.append("<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in block.items) + "</ul>")
            elif isinstance(block, Table):
                head = "".join(f"<th>{inline_html(h)}</th>" for h in block.header)
                rows = "".join("<tr>" + "".join(table_cell(c) for c in row) + "</tr>" for row in block.rows)
                if block.caption:
                    body.append(f'<p class="caption">{inline_html(block.caption)}</p>')
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif isinstance(block, Figure):
                body.append(f'<figure><img src="{data_uri(block.path)}" alt="{html.escape(block.caption)}">'
                            f"<figcaption>{inline_html(block.caption)}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
