"""The report as plain data: sections of text, bullets, tables and figures, the fixed formats every
number is written in (``RATE``, ``SECONDS``, so a test can find it again), and the results files
they are read from."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from jaxcnn.evaluation.convergence import paired, verdict


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


def paired_text(a: dict, b: dict, fmt: str = RATE, lower_is_better: bool = False) -> str:
    """``a - b`` paired over seeds (``convergence.paired``) as ``+mean ± ci (verdict)``."""
    difference = paired(a, b)
    if difference["n"] == 0:
        return "not reached"
    sign = "+" if difference["mean"] >= 0 else ""
    return f"{sign}{stat_text(difference, fmt)} ({verdict(difference, lower_is_better)})"


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


def read_json(path: Path) -> dict | None:
    """A results file, or None when it is not there."""
    return json.loads(path.read_text()) if path.is_file() else None


def evaluation_files(workdir: Path) -> list[Path]:
    """``eval_*.json`` written by ``python -m jaxcnn evaluate`` beside any run's checkpoint."""
    return sorted({*workdir.glob("*/eval_*.json"), *workdir.glob("*/checkpoints/eval_*.json")})
