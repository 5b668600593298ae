"""The study's three parts. Each part module offers the same small protocol:

- ``get_config(quick: bool)``: its frozen config dataclass (``quick``: tiny, same code path);
- ``run(cfg, data_root, workdir, *, resume, overwrite, cache_dir) -> dict``: trains, writes
  ``workdir/results.json`` (what the report reads) and its figures, returns the results;
- ``summary_lines(results) -> list[str]``: what the command prints.
"""

from __future__ import annotations

import importlib
from types import ModuleType

PARTS = {
    "part1": "Part 1: train the 62-class character CNN from scratch on every writer, last epoch kept.",
    "part2": "Part 2: digits pretraining (A), then MNIST from scratch (B) and from A's trunk (C).",
    "part3": "Part 3: a label-corrupted MNIST, from scratch and from part-1 weights, and what is wrong with it.",
}


def part_module(name: str) -> ModuleType:
    """The module of part ``name`` (a key of ``PARTS``)."""
    if name not in PARTS:
        raise ValueError(f"unknown part {name!r}; choose from {', '.join(PARTS)}")
    return importlib.import_module(f"jaxcnn.experiments.{name}")
