"""Part 1's final model: the recipe trained on every image. Nothing is held out, so its last epoch
is kept; its expected accuracy on unseen images comes from the folds of ``folds`` (``python -m
jaxcnn cv``) when they judged the same recipe."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from jaxcnn.config import defaults_of, to_dict
from jaxcnn.experiments.part1.config import Part1Config, input_meta, load_data
from jaxcnn.experiments.part1.folds import estimate
from jaxcnn.experiments.results import RESULTS_FILE, Stamped, results_of, write_results
from jaxcnn.rundir import claim
from jaxcnn.training.loop import fit

logger = logging.getLogger("jaxcnn")


class Part1Results(Stamped):
    """``run``'s results.json: the final model's training, and the expected accuracy of a cv run of
    the same recipe (None without one)."""

    config: dict  # to_dict(Part1Config)
    writers: list[int]
    num_train: int
    history: list[dict]  # fit's, one record per epoch
    epoch: int  # the epoch kept: the last
    train_seconds: float
    expected_new_writers: dict | None  # cv_estimate's


def run(cfg: Part1Config, data_root: Path, workdir: Path, *, cv_run: Path | None = None, resume=False,
        overwrite=False, cache_dir=None) -> dict:
    """The final model: the recipe trained on every writer, last epoch kept; writes results.json.

    Its expected accuracy on new writers is the cross-validated one of ``cv_run``, when that run
    used the same recipe; otherwise None (run ``python -m jaxcnn cv``).
    """
    workdir = claim(workdir, "part1", to_dict(cfg), defaults=defaults_of(cfg), resume=resume,
                    overwrite=overwrite)
    data = load_data(cfg, data_root, cache_dir)
    writers = sorted(int(w) for w in np.unique(data.groups))
    logger.info("part 1: %d training images of %d writers, %d classes; none held out",
                len(data), len(writers), data.num_classes)
    _, history = fit(data, None, cfg.train, workdir, resume=resume, overwrite=overwrite, meta=input_meta(cfg))
    results = Part1Results(config=to_dict(cfg), writers=writers, num_train=len(data), history=history,
                           epoch=len(history), train_seconds=sum(r["seconds"] for r in history),
                           expected_new_writers=cv_estimate(cfg, cv_run))
    return write_results(workdir / RESULTS_FILE, results)


def cv_estimate(cfg: Part1Config, cv_run: Path | None) -> dict | None:
    """The cross-validated figures of ``cv_run`` if it ran this recipe, else None."""
    saved = results_of(cv_run) if cv_run else None
    if saved is None or saved["config"] != to_dict(cfg):
        logger.info("part 1: no cross-validation of this recipe in %s; run `python -m jaxcnn cv` for the "
                    "expected accuracy on unseen images", cv_run)
        return None
    return estimate(saved, str(Path(cv_run) / RESULTS_FILE))
