"""The study's report, rebuilt from saved results alone: ``python -m jaxcnn report``.

Sections are plain data (text, tables, figures), rendered twice: as ``REPORT.md`` and as one
self-contained ``report.html`` (figures embedded as base64 PNG), so both say the same thing. Every
number comes from a results file and is written in a fixed format (``RATE``, ``SECONDS``), so a
test can find it again.
"""

from __future__ import annotations

from pathlib import Path

from jaxcnn.processes import is_primary
from jaxcnn.report.render import render_html, render_markdown
from jaxcnn.report.sections import DOCS_DIR, build_sections


# --- results at a glance ----------------------------------------------------------------------


# --- rendering --------------------------------------------------------------------------------


def report_path(workdir: str | Path, out: str | Path | None = None) -> Path:
    """Where the markdown report goes: ``out`` if given, else ``WORKDIR/REPORT.md``, beside the results."""
    return Path(out) if out else Path(workdir) / "REPORT.md"


def write_report(workdir: str | Path, out: str | Path | None = None,
                 docs_dir: Path = DOCS_DIR) -> tuple[Path, Path]:
    """Writes ``out`` (default ``WORKDIR/REPORT.md``) and ``report.html`` beside it from the results
    under ``workdir``; figure links are relative to ``out``. Of several processes, process 0 writes."""
    out = report_path(workdir, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    title = "jaxcnn: transfer learning on handwritten characters"
    sections = build_sections(Path(workdir), out.parent, docs_dir)
    html_path = out.with_name("report.html")
    if is_primary():
        out.write_text(render_markdown(sections, out.parent, title))
        html_path.write_text(render_html(sections, title))
    return out, html_path
