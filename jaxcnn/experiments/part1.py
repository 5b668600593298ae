"""Part 1: a 62-class handwritten-character CNN trained from scratch on every image.

``run`` trains the final model on every image: nothing is held out, so its last epoch is kept. Its
expected accuracy on unseen images comes from the folds of ``part1_folds`` (``python -m jaxcnn cv``)
when they judged the same recipe.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from jaxcnn.config import defaults_of, to_dict
from jaxcnn.document import Figure, Section, Table, Text, rate, seconds
from jaxcnn.evaluation.plots import plot_learning_curves
from jaxcnn.experiments.common import not_run, part_figures
from jaxcnn.experiments.part1_config import Part1Config, get_config, input_meta, load_data, planned_images
from jaxcnn.experiments.part1_folds import ablation_section, estimate, estimate_line, expected_text, folds_section
from jaxcnn.experiments.results import RESULTS_FILE, Stamped, results_of, write_results
from jaxcnn.rundir import claim
from jaxcnn.training.loop import fit

__all__ = ["Part1Config", "get_config", "planned_images", "run", "sections", "headline"]  # the part protocol (jaxcnn.experiments)

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


# --- the report -------------------------------------------------------------------------------

TITLE = "Part 1: characters from scratch"


def sections(results: dict | None, part_dir: Path, cv: dict | None = None, ablation: dict | None = None,
             figure_dir: Path | None = None, evaluations: dict[str, float] | None = None) -> list[Section]:
    """Part 1's report, the answer first: the expected accuracy, the test score of each evaluation
    (``evaluations``: data set name -> accuracy), the folds of the ``cv`` run (case pairs, errors
    every member made), then how the final model trained (its learning curves drawn into
    ``figure_dir``), every 10th epoch, and the ``ablation``'s table."""
    if results is None:
        return [Section(TITLE, [not_run("part1")]), folds_section(cv), ablation_section(ablation)]
    train = results["config"]["train"]
    scores = [Text("Test score: " + "; ".join(f"{rate(accuracy)} on `{name}`" for name, accuracy in evaluations.items())
                   + " (the evaluations below).")] if evaluations else []
    overview = Text(
        f"The final model learns from all {results['num_train']} training images ({len(results['writers'])} writers; "
        f"none held out, so its last epoch is kept): {len(train['seeds'])} seeds {train['seeds']} trained side "
        f"by side and ensembled; {train['epochs']} epochs of batch {train['batch_size']}, peak learning rate "
        f"{train['learning_rate']}, model widths {train['model']['widths']} and hidden "
        f"{train['model']['hidden']}; training took {seconds(results['train_seconds'])} s.")
    figures = [*([learning_curve_figure(results["history"], figure_dir / "part1_learning_curves.png")]
                 if figure_dir else []), *part_figures(part_dir, {})]
    return [Section(TITLE, [expected_text(results["expected_new_writers"]), *scores]), folds_section(cv),
            Section("Part 1: the final model", [overview, *figures, history_table(results["history"])], 3),
            ablation_section(ablation)]


def history_table(history: list[dict], every: int = 10) -> Table:
    """Every ``every``-th epoch and the last, per-seed figures averaged over the seeds (validation
    columns if validated); the other epochs are in metrics.jsonl and TensorBoard."""
    keys = [k for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy") if k in history[0]]
    ensemble = "val_accuracy_ensemble" in history[0]
    shown = [r for r in history if r["epoch"] % every == 0 or r is history[-1]]
    rows = [[str(r["epoch"]), *(rate(np.mean(r[k])) for k in keys),
             *([rate(r["val_accuracy_ensemble"])] if ensemble else []), seconds(r["seconds"])] for r in shown]
    return Table(["epoch", *(k.replace("_", " ") for k in keys),
                  *(["val accuracy (ensemble)"] if ensemble else []), "seconds"], rows,
                 f"Every {every}th epoch and the last, mean over seeds; train figures are running means over the "
                 "augmented batches; every epoch is in the run's metrics.jsonl and TensorBoard.")


def learning_curve_figure(history: list[dict], path: Path) -> Figure:
    plot_learning_curves(history, path)
    return Figure(path, "Part 1 learning curves of the final model (augmented training batches; no writer held out).")


def fold_estimate(results: dict, cv: dict | None) -> dict | None:
    """Part 1's fold estimate: the one its results carry (a cv run of the same recipe), else the
    ``cv`` run's, else None."""
    if results.get("expected_new_writers"):
        return {"folds_by": "writer", **results["expected_new_writers"]}  # writer: before class folds
    return estimate(cv, "the study's cv run") if cv else None


def headline(results: dict | None, cv: dict | None = None, evaluations: dict[str, float] | None = None) -> str:
    """Part 1's answer in a sentence: the expected accuracy (folds) and any scored evaluation
    (``evaluations``: data set name -> accuracy)."""
    if results is None:
        return "**Part 1, 62 characters**: not run yet"
    expected = fold_estimate(results, cv)
    answers = [estimate_line(expected)] if expected else []
    answers += [f"{rate(accuracy)} on `{name}`" for name, accuracy in (evaluations or {}).items()]
    return f"**Part 1, 62 characters**: {'; '.join(answers) or 'no score recorded'}"
