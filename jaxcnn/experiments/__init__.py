"""The study's three parts. Each part module offers the same small protocol:

- ``get_config(profile)``: its frozen config dataclass for one of ``PROFILES``;
- ``planned_images(cfg) -> int``: how many training images its ``fit`` calls will see (nominal data
  sizes; an upper bound where part 3's diagnosis skips models), for the study's ETA;
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


# How much of the study to run: every part's ``get_config`` takes one of these names.
PROFILES = {
    "full": "the study as designed: every seed, epoch and variant (minutes on a GPU, days on a CPU)",
    "cpu": "full-size models and part 1's recipe; parts 2 and 3 with fewer seeds and epochs and no variants "
           "(about an hour on 2 CPU cores)",
    "quick": "tiny models, a few epochs: the same pipeline as a smoke test (CI); its numbers mean nothing",
}


def check_profile(profile: str) -> str:
    """``profile`` when it is one of ``PROFILES``, else a one-line error naming them."""
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r}: choose one of {', '.join(PROFILES)}")
    return profile


def default_profile() -> str:
    """What a command runs when no profile is asked for: "cpu" where JAX finds no accelerator, else "full"."""
    import jax
    return "cpu" if jax.default_backend() == "cpu" else "full"


def profiles_of(module: ModuleType, config: dict) -> tuple[str, ...]:
    """The profiles whose configuration ``config`` (a results file's) is (part 1's "full" and "cpu"
    are one); empty for a changed one."""
    from jaxcnn.config import to_dict
    return tuple(name for name in PROFILES if to_dict(module.get_config(name)) == config)


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
