"""The study's three parts. Each part module offers the same small protocol:

- ``get_config(quick: bool)``: its frozen config dataclass (``quick``: tiny, same code path);
- ``run(cfg, data_root, workdir, *, resume, overwrite, cache_dir, **upstream) -> dict``: trains
  (``upstream``: the runs of other parts it reads, ``UPSTREAM``),
  writes ``workdir/results.json`` (what the report reads) and its figures, returns the results;
- ``sections(results, workdir, ...) -> list[Section]``: its part of the report, which its command
  also prints (its figures drawn from ``results``, into ``workdir`` unless a figure folder is
  given); ``headline(results) -> str``: its answer in a sentence, for the report's glance.
"""

from __future__ import annotations

import importlib
from types import ModuleType

PARTS = {
    "part1": "Part 1: train the 62-class character CNN from scratch on every writer, last epoch kept.",
    "part2": "Part 2: digits pretraining (A), then MNIST from scratch (B) and from A's trunk (C).",
    "part3": "Part 3: a label-corrupted MNIST, from scratch and from part-1 weights, and what is wrong with it.",
}


# Part 1's other runs in a study's work directory, beside part1/, part2/ and part3/.
STUDY_RUNS = {"cv": "part1-cv", "ablation": "part1-ablation"}

# The runs of other parts that each part reads, ``{argument: (place in a study's work directory, what
# it is)}``: ``study`` passes each as ``run``'s keyword argument, the command line as a flag.
UPSTREAM = {
    "part1": {"cv_run": (STUDY_RUNS["cv"], "the cv run of this recipe, whose estimate the final model's results carry")},
    "part2": {},
    "part3": {"part1_run": ("part1", "part 1's run, whose trunk is grafted"),
              "oracle_run": ("part2/B", "a run of clean MNIST (part 2's B), the oracle")},
}


def part_module(name: str) -> ModuleType:
    """The module of part ``name`` (a key of ``PARTS``)."""
    if name not in PARTS:
        raise ValueError(f"unknown part {name!r}; choose from {', '.join(PARTS)}")
    return importlib.import_module(f"jaxcnn.experiments.{name}")
