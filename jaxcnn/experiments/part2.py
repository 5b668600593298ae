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
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.data.mnist import load_mnist
from jaxcnn.errors import require
from jaxcnn.evaluation.convergence import format_stat, stat, summarise_history, summarise_predictions, threshold_key
from jaxcnn.evaluation.evaluate import evaluate_run, predict_probs
from jaxcnn.evaluation.plots import plot_confusion, plot_curves, plot_data_size, plot_step_curves
from jaxcnn.experiments.common import MNIST_AUGMENT, balanced_subset
from jaxcnn.rundir import claim
from jaxcnn.rundir import write_json
from jaxcnn.training.loop import fit
from jaxcnn.training.transfer import graft_init, pretrained_variables, transfer_record

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
    ``mnist_train_size``/``mnist_test_size``: 0 uses the whole split, else a class-balanced subset.
    ``subset_sizes``: the data-size curve's training-set sizes, each run with ``subset_seeds``.
    ``subset_epoch_images``: each subset is repeated to an epoch of this many images (0: as many as
    the MNIST training set, so every point gets the main runs' steps and schedule).
    ``subset_draw_seed`` picks every class-balanced subset. ``thresholds``: the test accuracies
    whose epochs, steps and seconds to reach are reported.
    """

    SHARES_MODEL = ("digits", "mnist")  # their ``model`` is ``model``: ``override`` refuses to set it apart

    model: ModelConfig = ModelConfig()
    digits: TrainConfig = TrainConfig(seeds=(0, 1, 2), epochs=60, batch_size=32)
    mnist: TrainConfig = TrainConfig(seeds=(0, 1, 2, 3, 4), epochs=15, batch_size=128, learning_rate=2e-3,
                                     weight_decay=5e-4, warmup_epochs=1, label_smoothing=0.0,
                                     augment=MNIST_AUGMENT, probe_every=50)
    val_writers: tuple[int, ...] = ()  # held out from A for its validation; empty: A sees every writer
    preprocess: str = "mnist"
    data_subdir: str = "trainPart1"
    mnist_train_size: int = 0
    mnist_test_size: int = 0
    subset_sizes: tuple[int, ...] = (100, 1000, 10000)
    subset_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    subset_epoch_images: int = 0
    subset_draw_seed: int = 0
    thresholds: tuple[float, ...] = (0.98, 0.99, 0.995)
    variants: tuple[str, ...] = tuple(VARIANTS)

    def __post_init__(self):
        object.__setattr__(self, "digits", dataclasses.replace(self.digits, model=self.model))
        object.__setattr__(self, "mnist", dataclasses.replace(self.mnist, model=self.model))
        for name in ("mnist_train_size", "mnist_test_size", "subset_epoch_images"):
            require(self, name, getattr(self, name) >= 0, ">= 0 (0: all)")
        require(self, "subset_sizes", all(n >= 1 for n in self.subset_sizes), "a list of sizes >= 1")
        require(self, "subset_seeds", len(self.subset_seeds) > 0 and len(set(self.subset_seeds)) == len(
            self.subset_seeds) and all(s >= 0 for s in self.subset_seeds), "a non-empty list of distinct integers >= 0")
        require(self, "thresholds", all(0 < t <= 1 for t in self.thresholds), "a list of accuracies in (0, 1]")
        require(self, "variants", set(self.variants) <= set(VARIANTS), f"a list of {', '.join(VARIANTS)} (or empty)")


def get_config(quick: bool = False) -> Part2Config:
    """The study's configuration; ``quick`` is the same pipeline, tiny (a minute or two on a CPU)."""
    cfg = Part2Config()
    if not quick:
        return cfg
    return dataclasses.replace(
        cfg, model=ModelConfig(widths=(8, 16, 32), hidden=32),
        digits=dataclasses.replace(cfg.digits, seeds=(0,), epochs=2),
        mnist=dataclasses.replace(cfg.mnist, seeds=(0, 1), epochs=2, probe_every=5),
        mnist_train_size=2000, mnist_test_size=1000, subset_sizes=(100, 500), subset_seeds=(0, 1))


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
    splits = []
    for split, size in (("train", cfg.mnist_train_size), ("test", cfg.mnist_test_size)):
        data = load_mnist(data_root, split)
        splits.append(data.subset(balanced_subset(data.labels, size, cfg.subset_draw_seed)) if size else data)
    return splits[0], splits[1]


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


# --- derived metrics --------------------------------------------------------------------------


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
    grafted = {"init": graft_init(variables), "meta": {"transfer": trunk_source}}  # fit's arguments

    frozen = dataclasses.replace(cfg.mnist, freeze_trunk=True)
    runs = {"B": (cfg.mnist, {}), "C": (cfg.mnist, grafted), "C_frozen": (frozen, grafted),
            **{name: (dataclasses.replace(cfg.mnist, **VARIANTS[name][1]), grafted) for name in cfg.variants}}
    models = {}
    for name, (train_cfg, start) in runs.items():
        logger.info("part 2: model %s", LABELS[name])
        state, history = fit(train, test, train_cfg, workdir / name, **start, **flags)
        logits, probs = predict_probs(state, test.inputs(), train_cfg.eval_batch_size)
        models[name] = {"history": history, **summarise_history(history, cfg.thresholds),
                        **summarise_predictions(logits, probs, test.labels, test.class_names),
                        "transfer": transfer_record(trunk_source, variables, state) if start else None}

    subset_cfg = dataclasses.replace(cfg.mnist, seeds=cfg.subset_seeds)
    data_size = {name: {} for name in CURVE_MODELS}
    for size, subset in subsets.items():
        for name in CURVE_MODELS:
            logger.info("part 2: data-size curve, %s on %d images", name, size)
            _, history = fit(subset, test, subset_cfg, workdir / "data_size" / f"{name}_{size}",
                             **runs[name][1], **flags)
            data_size[name][str(size)] = {"final_test_accuracy": stat(history[-1]["val_accuracy"]),
                                          "ensemble_accuracy": history[-1]["val_accuracy_ensemble"],
                                          "history": history}
    for name in CURVE_MODELS:
        data_size[name][str(len(train))] = {"final_test_accuracy": models[name]["final_test_accuracy"],
                                            "ensemble_accuracy": models[name]["ensemble"]["accuracy"]}

    results = {"config": to_dict(cfg),
               "data": {"digits_train": len(digits_train), "digits_val": num_val,
                        "mnist_train": len(train), "mnist_test": len(test)},
               "A": {"history": a_history, "validation": a_report,
                     "writers": sorted(int(w) for w in np.unique(digits_train.groups))},
               "models": models, "data_size": data_size}
    write_plots(results, test.class_names, workdir)
    write_json(workdir / "results.json", results)
    return results


# --- figures ----------------------------------------------------------------------------------


def write_plots(results: dict, class_names, workdir: Path) -> None:
    """learning_curves.png, step_curves.png, test_loss_curves.png, test_ece_curves.png, data_size_curve.png,
    confusion_B.png,
    confusion_C.png."""
    models = results["models"]
    plot_curves(models, "val_accuracy", "MNIST test accuracy", workdir / "learning_curves.png", LABELS)
    plot_step_curves(models, workdir / "step_curves.png", "MNIST test accuracy", LABELS)
    plot_curves(models, "val_loss", "MNIST test loss (NLL)", workdir / "test_loss_curves.png", LABELS)
    plot_curves(models, "val_ece", "MNIST test calibration error (ECE)", workdir / "test_ece_curves.png", LABELS)
    plot_data_size(results["data_size"], workdir / "data_size_curve.png", LABELS)
    for name in CURVE_MODELS:
        plot_confusion(models[name]["ensemble"]["confusion"], class_names, workdir / f"confusion_{name}.png",
                       f"part 2: {LABELS[name]}, MNIST test (ensemble, last epoch)")


# --- summary ----------------------------------------------------------------------------------


def summary_lines(results: dict) -> list[str]:
    """The B vs C vs C_frozen table (mean ± 95% CI over seeds, last epoch) and the data-size curve."""
    models = results["models"]
    thresholds = results["config"]["thresholds"]
    rows = [("first-epoch test accuracy", "first_epoch_test_accuracy", 4)]
    for t in thresholds:
        rows += [(f"epochs to {threshold_key(t)}%", f"epochs_to_{threshold_key(t)}", 1),
                 (f"steps to {threshold_key(t)}%", f"steps_to_{threshold_key(t)}", 0),
                 (f"seconds to {threshold_key(t)}%", f"seconds_to_{threshold_key(t)}", 1)]
    rows += [("final test accuracy", "final_test_accuracy", 4), ("final test NLL", "final_test_nll", 4),
             ("final test ECE", "final_test_ece", 4), ("train - test accuracy", "train_test_gap", 4)]
    row = lambda cells: "".join(f"{c:<26}" for c in cells).rstrip()
    lines = [f"part 2, MNIST test set ({results['data']['mnist_test']} images), mean ± 95% CI over seeds, "
             "last epoch:", row(("", *models))]
    lines += [row((label, *(format_stat(m[key], digits) for m in models.values()))) for label, key, digits in rows]
    lines.append(row(("ensemble accuracy", *(f"{m['ensemble']['accuracy']:.4f}" for m in models.values()))))
    for name, points in results["data_size"].items():
        by_size = sorted(points.items(), key=lambda kv: int(kv[0]))
        lines.append(f"data size, {name}: " + ", ".join(f"{n}: {format_stat(p['final_test_accuracy'])}"
                                                         for n, p in by_size))
    a = results["A"]["validation"]
    if a is not None:
        lines.append(f"A (digits, validation writers, ensemble of {len(a['seeds'])}, epoch {a['epoch']}): "
                     f"accuracy {a['accuracy']:.4f}")
    return lines
