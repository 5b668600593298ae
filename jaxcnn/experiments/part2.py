"""Part 2: does a trunk pretrained on handwritten digits (A) help MNIST, from scratch (B) or not (C)?

A learns the ten digit classes of the part-1 data from every writer, as part 1's final model. B
learns MNIST from random initialisation; C and C_frozen start from A's trunk (parameters and
BatchNorm statistics) with a fresh head, C fine-tuning everything, C_frozen only the head. B and C
are also trained on class-balanced MNIST subsets for a data-size curve. Validation during MNIST
training is the MNIST test set, used for convergence curves only: nothing is selected on it, and
every figure is the last epoch's. See ``docs/part2.md``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from jaxcnn.config import ModelConfig, TrainConfig, defaults_of, to_dict
from jaxcnn.data.chars74k import DIGIT_CLASSES, load_chars74k, writer_split
from jaxcnn.data.dataset import ArrayDataset, balanced_subset
from jaxcnn.data import mnist
from jaxcnn.data.mnist import load_mnist_split
from jaxcnn.document import Section, Table, Text
from jaxcnn.errors import require
from jaxcnn.evaluation.cka import transfer_changes
from jaxcnn.evaluation.evaluate import evaluate_run, predict_probs, validation_table
from jaxcnn.evaluation.plots import plot_confusion, plot_transfer_changes
from jaxcnn.experiments import check_profile
from jaxcnn.experiments.common import MNIST_TRAIN, drawn_figures, not_run, seeds_epochs
from jaxcnn.experiments.part1.config import DATA_SUBDIR, IMAGES_PER_CLASS, PREPROCESS
from jaxcnn.experiments.records import (
    ensemble_class_names, ensemble_confusion, model_record, models_table, paired_lines, paired_table,
    point_of_history, point_of_record, point_paired_text, point_text, transfer_reading, write_curves, write_size_curve,
)
from jaxcnn.experiments.results import RESULTS_FILE, Stamped, write_results
from jaxcnn.rundir import claim
from jaxcnn.training.loop import fit, trained_images
from jaxcnn.training.transfer import KEEP_HEAD_FRESH, graft_init, pretrained_variables, transfer_record

logger = logging.getLogger("jaxcnn")

CURVE_MODELS = ("B", "C")
VARIANTS = {  # C with one change to how A's trunk learns MNIST: what makes the transfer pay, or not
    "C_slow": ("C_slow: A's trunk at a tenth of the learning rate", {"trunk_lr_scale": 0.1}),
    "C_l2sp": ("C_l2sp: A's trunk decayed toward A's weights (L2-SP)", {"decay_to_start": 0.1}),
    "C_frozen_bn": ("C_frozen_bn: A's convolutions frozen, its BatchNorm retrained",
                    {"freeze_trunk": True, "train_trunk_batch_norm": True}),
}
LABELS = {"B": "B: scratch", "C": "C: A's trunk, fine-tuned", "C_frozen": "C_frozen: A's trunk, frozen",
          **{name: label for name, (label, _) in VARIANTS.items()}}


@dataclasses.dataclass(frozen=True)
class Part2Config:
    """What part 2 trains and how.

    ``model`` is the one architecture of A, B and C (A's trunk must fit B/C to be grafted): it
    replaces ``digits.model`` and ``mnist.model``, so set ``model.*``, not ``digits.model.*``.
    ``digits`` trains A; ``mnist`` trains B, C and C_frozen (C_frozen with ``freeze_trunk``).
    ``keep_fresh``: the layers C and its variants do not take from A (``fullmatch`` patterns).
    ``mnist_train_size``/``mnist_test_size``: 0 uses the whole split, else a class-balanced subset.
    ``subset_sizes``: the data-size curve's training-set sizes, each run with ``subset_seeds``.
    ``subset_epoch_images``: each subset is repeated to an epoch of this many images (0: as many as
    the MNIST training set, so every point gets the main runs' steps and schedule).
    ``subset_draw_seed`` picks every class-balanced subset. ``thresholds``: the test accuracies
    whose epochs, steps and seconds to reach are reported. ``cka_images``: how many MNIST test images
    (class-balanced) C's trunk features are compared on with A's and B's (``evaluation.cka``; 0: not).
    """

    SHARES_MODEL = ("digits", "mnist")  # their ``model`` is ``model``: ``override`` refuses to set it apart

    model: ModelConfig = ModelConfig()
    digits: TrainConfig = TrainConfig(seeds=(0, 1, 2), epochs=60, batch_size=32)
    mnist: TrainConfig = MNIST_TRAIN
    keep_fresh: tuple[str, ...] = KEEP_HEAD_FRESH
    val_writers: tuple[int, ...] = ()  # held out from A for its validation; empty: A sees every writer
    preprocess: str = PREPROCESS  # part 1's data (A learns its digits), prepared as part 1 does
    data_subdir: str = DATA_SUBDIR
    mnist_train_size: int = 0
    mnist_test_size: int = 0
    subset_sizes: tuple[int, ...] = (100, 1000, 10000)
    subset_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    subset_epoch_images: int = 0
    subset_draw_seed: int = 0
    thresholds: tuple[float, ...] = (0.98, 0.99, 0.995)
    variants: tuple[str, ...] = tuple(VARIANTS)
    cka_images: int = 1000

    def __post_init__(self):
        object.__setattr__(self, "digits", dataclasses.replace(self.digits, model=self.model))
        object.__setattr__(self, "mnist", dataclasses.replace(self.mnist, model=self.model))
        for name in ("mnist_train_size", "mnist_test_size", "subset_epoch_images", "cka_images"):
            require(self, name, getattr(self, name) >= 0, ">= 0 (0: all)")
        require(self, "subset_sizes", all(n >= 1 for n in self.subset_sizes), "a list of sizes >= 1")
        require(self, "subset_seeds", len(self.subset_seeds) > 0 and len(set(self.subset_seeds)) == len(
            self.subset_seeds) and all(s >= 0 for s in self.subset_seeds), "a non-empty list of distinct integers >= 0")
        require(self, "thresholds", all(0 < t <= 1 for t in self.thresholds), "a list of accuracies in (0, 1]")
        require(self, "variants", set(self.variants) <= set(VARIANTS), f"a list of {', '.join(VARIANTS)} (or empty)")


class Part2Results(Stamped):
    """``run``'s results.json."""

    config: dict  # to_dict(Part2Config)
    data: dict  # image counts: digits_train, digits_val, mnist_train, mnist_test
    A: dict  # A's history, its validation report (None: A learnt every writer) and its writers
    models: dict[str, dict]  # B, C, C_frozen and the variants: records.model_record
    data_size: dict[str, dict[str, dict]]  # B and C -> training images -> records.accuracy_point
    representations: dict[str, dict]  # C -> cka.transfer_changes (absent in results written before it)


def get_config(profile: str = "full") -> Part2Config:
    """The study's configuration for ``profile`` (``jaxcnn.experiments.PROFILES``). "cpu": the full
    models, B, C and C_frozen at 3 seeds for 2 epochs, the data-size curve at 100 and 1,000 images
    (3 seeds, 6,000-image epochs), no variants; "quick": tiny (a minute or two on a CPU)."""
    cfg = Part2Config()
    if check_profile(profile) == "full":
        return cfg
    if profile == "cpu":
        return dataclasses.replace(cfg, mnist=dataclasses.replace(cfg.mnist, seeds=(0, 1, 2), epochs=2),
                                   subset_sizes=(100, 1000), subset_seeds=(0, 1, 2), subset_epoch_images=6000,
                                   variants=())
    return dataclasses.replace(
        cfg, model=ModelConfig(widths=(8, 16, 32), hidden=32),
        digits=dataclasses.replace(cfg.digits, seeds=(0,), epochs=2),
        mnist=dataclasses.replace(cfg.mnist, seeds=(0, 1), epochs=2, probe_every=5),
        mnist_train_size=2000, mnist_test_size=1000, subset_sizes=(100, 500), subset_seeds=(0, 1), cka_images=500)




def planned_images(cfg: Part2Config) -> int:
    """The training images of A, B, C, C_frozen, the variants and the data-size runs together."""
    digits = len(DIGIT_CLASSES) * (IMAGES_PER_CLASS - len(cfg.val_writers))
    train_images = cfg.mnist_train_size or mnist.TRAIN_IMAGES
    subset = dataclasses.replace(cfg.mnist, seeds=cfg.subset_seeds)
    return (trained_images(digits, cfg.digits) + (3 + len(cfg.variants)) * trained_images(train_images, cfg.mnist)
            + len(cfg.subset_sizes) * len(CURVE_MODELS) * trained_images(cfg.subset_epoch_images or train_images, subset))


# --- data -------------------------------------------------------------------------------------


def repeat_to(data: ArrayDataset, size: int) -> ArrayDataset:
    """``data`` repeated cyclically to ``size`` images, so that an epoch has as many steps as a full one."""
    return data.subset(np.resize(np.arange(len(data)), size))


def load_digits(cfg: Part2Config, data_root: Path, cache_dir=None) -> tuple[ArrayDataset, ArrayDataset | None]:
    """A's data: the part-1 digits, and the digits of ``cfg.val_writers`` apart (None when empty)."""
    data = load_chars74k(data_root / cfg.data_subdir, classes=DIGIT_CLASSES, cache_dir=cache_dir,
                         preprocess=cfg.preprocess)
    return writer_split(data, cfg.val_writers) if cfg.val_writers else (data, None)


def load_mnist_splits(cfg: Part2Config, data_root: Path) -> tuple[ArrayDataset, ArrayDataset]:
    """MNIST train and test, each the whole split or a class-balanced subset of the configured size."""
    return (load_mnist_split(data_root, "train", cfg.mnist_train_size, cfg.subset_draw_seed),
            load_mnist_split(data_root, "test", cfg.mnist_test_size, cfg.subset_draw_seed))


def data_size_subsets(cfg: Part2Config, train: ArrayDataset) -> dict[int, ArrayDataset]:
    """The data-size curve's training sets, each repeated to ``subset_epoch_images`` (default: the
    size of ``train``)."""
    subsets = {}
    for size in cfg.subset_sizes:
        if size >= len(train):
            raise ValueError(f"subset size {size} is not smaller than the MNIST training set ({len(train)})")
        subsets[size] = repeat_to(train.subset(balanced_subset(train.labels, size, cfg.subset_draw_seed)),
                                  cfg.subset_epoch_images or len(train))
    return subsets


# --- the experiment ---------------------------------------------------------------------------

def run(cfg: Part2Config, data_root: Path, workdir: Path, *, resume=False, overwrite=False, cache_dir=None) -> dict:
    """Trains A, then B, C, C_frozen, C's ``variants`` and the data-size runs; writes results.json and
    the plots."""
    workdir = claim(workdir, "part2", to_dict(cfg), defaults=defaults_of(cfg), resume=resume,
                    overwrite=overwrite)
    digits_train, digits_val = load_digits(cfg, data_root, cache_dir)
    train, test = load_mnist_splits(cfg, data_root)
    subsets = data_size_subsets(cfg, train)
    flags = {"resume": resume, "overwrite": overwrite}
    num_val = len(digits_val) if digits_val is not None else 0
    logger.info("part 2: A on %d digit images (%d validation), MNIST %d train / %d test, subsets %s",
                len(digits_train), num_val, len(train), len(test), list(subsets))

    _, a_history = fit(digits_train, digits_val, cfg.digits, workdir / "A", meta={"preprocess": cfg.preprocess},
                       **flags)
    a_report = evaluate_run(workdir / "A", digits_val) if digits_val is not None else None
    variables, trunk_source = pretrained_variables(workdir / "A", "best")
    grafted = {"init": graft_init(variables, cfg.keep_fresh), "meta": {"transfer": trunk_source}}  # fit's arguments

    frozen = dataclasses.replace(cfg.mnist, freeze_trunk=True)
    runs = {"B": (cfg.mnist, {}), "C": (cfg.mnist, grafted), "C_frozen": (frozen, grafted),
            **{name: (dataclasses.replace(cfg.mnist, **VARIANTS[name][1]), grafted) for name in cfg.variants}}
    models, states = {}, {}
    for name, (train_cfg, start) in runs.items():
        logger.info("part 2: model %s", LABELS[name])
        state, history = fit(train, test, train_cfg, workdir / name, **start, **flags)
        states[name] = state
        transfer = transfer_record(trunk_source, variables, state, cfg.keep_fresh) if start else None
        predictions = predict_probs(state, test.inputs(), train_cfg.eval_batch_size)
        models[name] = model_record(history, predictions, test, cfg.thresholds, transfer=transfer)

    subset_cfg = dataclasses.replace(cfg.mnist, seeds=cfg.subset_seeds)
    data_size = {name: {} for name in CURVE_MODELS}
    for size, subset in subsets.items():
        for name in CURVE_MODELS:
            logger.info("part 2: data-size curve, %s on %d images", name, size)
            _, history = fit(subset, test, subset_cfg, workdir / "data_size" / f"{name}_{size}",
                             **runs[name][1], **flags)
            data_size[name][str(size)] = point_of_history(history)
    for name in CURVE_MODELS:
        data_size[name][str(len(train))] = point_of_record(models[name])

    results = Part2Results(
        config=to_dict(cfg), data={"digits_train": len(digits_train), "digits_val": num_val, "mnist_train": len(train),
                                   "mnist_test": len(test)},
        A={"history": a_history, "validation": a_report, "writers": sorted(int(w) for w in np.unique(digits_train.groups))},
        models=models, data_size=data_size, representations=representations(cfg, states, variables, test))
    write_plots(results, workdir)
    return write_results(workdir / RESULTS_FILE, results)


# --- figures ----------------------------------------------------------------------------------


def representations(cfg: Part2Config, states: dict, variables: dict, test: ArrayDataset) -> dict:
    """What fine-tuning changed inside C's trunk: ``cka.transfer_changes`` against A's trunk and B,
    on ``cfg.cka_images`` class-balanced MNIST test images (empty when 0)."""
    if not cfg.cka_images:
        return {}
    images = test.subset(balanced_subset(test.labels, min(cfg.cka_images, len(test)), cfg.subset_draw_seed)).images
    return {"C": transfer_changes(states["C"], variables, states["B"], images)}


def write_plots(results: dict, folder: Path) -> dict[str, str]:
    """Draws every figure of ``FIGURE_CAPTIONS`` that ``results`` hold the data of into ``folder``
    (the curves of ``records.write_curves``, the data-size curve, B's and C's confusions, what
    transfer changed in C's trunk); returns the others, file name -> what the results lack."""
    folder.mkdir(parents=True, exist_ok=True)
    models = results["models"]
    missing = write_curves(models, folder, "MNIST test", LABELS)
    write_size_curve(results["data_size"], folder / "data_size_curve.png", LABELS)
    for name in CURVE_MODELS:
        plot_confusion(ensemble_confusion(models[name]), ensemble_class_names(models[name]),
                       folder / f"confusion_{name}.png", f"part 2: {LABELS[name]}, MNIST test (ensemble, last epoch)")
    if results.get("representations"):
        plot_transfer_changes(results["representations"], folder / "transfer_changes.png", LABELS, "A", "B")
    else:
        missing["transfer_changes.png"] = "this run did not record its trunk features (`representations`)"
    return missing


# --- the report -------------------------------------------------------------------------------

TITLE = "Part 2: transfer to MNIST"
FIGURE_CAPTIONS = {
    "learning_curves.png": "MNIST test accuracy per epoch (mean of seeds, min-max band).",
    "step_curves.png": "MNIST test accuracy against optimiser steps, first-epoch probes included (log scale).",
    "test_loss_curves.png": "MNIST test loss per epoch (mean of seeds, min-max band).",
    "test_ece_curves.png": "MNIST test calibration error (ECE, 15 bins) per epoch (mean of seeds, min-max band).",
    "data_size_curve.png": "Final MNIST test accuracy against training-set size (mean ± 95% CI over seeds).",
    "confusion_B.png": "Confusion matrix of B (scratch) on the MNIST test set (ensemble, rows normalised).",
    "confusion_C.png": "Confusion matrix of C (A's trunk, fine-tuned) on the MNIST test set (ensemble, rows normalised).",
    "transfer_changes.png": "Per trunk layer: linear CKA of C's features with A's and with B's (same seed), and "
                            "C's relative weight distance from A (mean of seeds).",
}


def sections(results: dict | None, part_dir: Path, figure_dir: Path | None = None) -> list[Section]:
    """Part 2's report: the models side by side, each against B, what transfer changed inside C, the
    data-size curve, A, and the figures, drawn from ``results`` into ``figure_dir`` (default ``part_dir``)."""
    if results is None:
        return [Section(TITLE, [not_run("part2")])]
    data, models, thresholds = results["data"], results["models"], results["config"]["thresholds"]
    a = results["A"]["validation"]
    overview = Text(
        f"A learns the ten digits of the part-1 data ({data['digits_train']} training, {data['digits_val']} "
        f"validation images{'' if a else ': every writer, last epoch'}); B (scratch), C (A's trunk, fine-tuned) "
        f"and C_frozen (A's trunk, frozen) learn "
        f"MNIST ({data['mnist_train']} training images) and are scored on the MNIST test set "
        f"({data['mnist_test']} images) at their last epoch.")
    table = models_table(models, thresholds, "MNIST test set, mean ± 95% CI over seeds (Student t), last epoch.")
    against_b = paired_table(models, thresholds, {name: "B" for name in models if name != "B"}, "Each model against B")
    sizes = sorted({size for points in results["data_size"].values() for size in points}, key=int)
    curve = Table(["training images", *results["data_size"]],
                  [[size, *(point_text(points[size]) if size in points else "n/a"
                            for points in results["data_size"].values())] for size in sizes],
                  "Final MNIST test accuracy by training-set size, mean ± 95% CI over seeds.")
    figure_dir = Path(figure_dir or part_dir)
    missing = write_plots(results, figure_dir)
    inside = [Text(transfer_reading(name, change, "A", "B"))
              for name, change in results.get("representations", {}).items()]
    figures = drawn_figures(figure_dir, FIGURE_CAPTIONS, missing, trained_text(results["config"], data))
    return [Section(TITLE, [overview, table, *against_b, *inside, *figures]),
            Section("Part 2: data size", [curve], 3),
            *([Section("Part 2: A, the digits model",
                       [validation_table(a, a.get("seeds", []), "validation writers' digits")], 3)] if a else [])]


def trained_text(cfg: dict, data: dict) -> str:
    """What part 2's models trained, from its saved config ("" where the config does not say)."""
    if not all(key in cfg for key in ("mnist", "digits", "subset_seeds")):
        return ""
    return (f"B, C, C_frozen{', the variants' if cfg.get('variants') else ''}: {seeds_epochs(cfg['mnist'])} of "
            f"{data['mnist_train']} images; data-size runs: {seeds_epochs({**cfg['mnist'], 'seeds': cfg['subset_seeds']})}; "
            f"A: {seeds_epochs(cfg['digits'])}")


def headline(results: dict | None) -> str:
    """Part 2's answer in a sentence: C against B, paired over seeds, at the end, on the way and by data size."""
    head = "**Part 2, does A's trunk help on MNIST (C) against scratch (B)?**"
    models = (results or {}).get("models", {})
    if "B" not in models or "C" not in models:
        return f"{head} not run yet"
    b, c = models["B"], models["C"]
    answers = paired_lines(c, b, "C", "B")
    sizes = results.get("data_size", {})
    common = sorted(set(sizes.get("B", {})) & set(sizes.get("C", {})), key=int)
    shown = [f"{n}: {point_paired_text(sizes['C'][n], sizes['B'][n])}" for n in common]
    if shown:
        answers.append("C - B by training images, paired over seeds, " + ", ".join(shown))
    return f"{head} {'; '.join(answers)}"
