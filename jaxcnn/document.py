"""The report as plain data: sections of text, bullets, tables and figures, and the one way every
number is written (``RATE``, ``SECONDS``, ``stat_text``), so a test can find it again
and the command line prints what the report shows."""

from __future__ import annotations

import dataclasses
from pathlib import Path


RATE = "{:.4f}"  # accuracies, losses, ECE
SECONDS = "{:.1f}"


@dataclasses.dataclass
class Text:
    """A paragraph; may hold `code` and [links](target)."""
    text: str


@dataclasses.dataclass
class Bullets:
    items: list[str]


@dataclasses.dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclasses.dataclass
class Figure:
    path: Path
    caption: str


@dataclasses.dataclass
class Section:
    title: str
    blocks: list
    level: int = 2


def rate(x) -> str:
    return "n/a" if x is None else RATE.format(x)


def seconds(x) -> str:
    return "n/a" if x is None else SECONDS.format(x)


def stat_text(summary: dict, fmt: str = RATE) -> str:
    """A ``{"mean", "ci95", "n", "values"}`` summary as ``mean ± ci`` (or "not reached")."""
    if not summary or summary.get("n", 0) == 0 or summary.get("mean") is None:
        return "not reached"
    text = fmt.format(summary["mean"])
    if summary.get("ci95") is not None:
        text += " ± " + fmt.format(summary["ci95"])
    values = summary.get("values", [])
    if summary["n"] < len(values):
        text += f" ({summary['n']}/{len(values)} seeds)"
    return text
