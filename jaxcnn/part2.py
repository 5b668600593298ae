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

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from jaxcnn import train as T  # noqa: E402
from jaxcnn.augment import AugmentConfig  # noqa: E402
from jaxcnn.chars74k import DIGIT_CLASSES, load_chars74k, writer_split  # noqa: E402
from jaxcnn.config import ModelConfig, TrainConfig, to_dict  # noqa: E402
from jaxcnn.dataset import ArrayDataset  # noqa: E402
from jaxcnn.errors import require  # noqa: E402
from jaxcnn.evaluate import evaluate_run, load_run, plot_confusion, predict_probs  # noqa: E402
from jaxcnn.fit import fit, write_json  # noqa: E402
from jaxcnn.graft import graft, transfer_plan  # noqa: E402
from jaxcnn.metrics import classification_report, mean_ci95  # noqa: E402
from jaxcnn.mnist import load_mnist  # noqa: E402
from jaxcnn.rundir import claim  # noqa: E402

logger = logging.getLogger("jaxcnn")

CURVE_MODELS = ("B", "C")
LABELS = {"B": "B: scratch", "C": "C: A's trunk, fine-tuned", "C_frozen": "C_frozen: A's trunk, frozen"}

# MNIST digits are already size-normalised and centred, so they vary less than the part-1 images:
# milder distortions than part 1's, still enough to regularise a 15-epoch run.
MNIST_AUGMENT = AugmentConfig(rotate_deg=8.0, scale=0.08, shear_deg=8.0, shift_px=2.0)


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
    subset_seeds: tuple[int, ...] = (0, 1, 2)
    subset_epoch_images: int = 0
    subset_draw_seed: int = 0
    thresholds: tuple[float, ...] = (0.98, 0.99)

    def __post_init__(self):
        object.__setattr__(self, "digits", dataclasses.replace(self.digits, model=self.model))
        object.__setattr__(self, "mnist", dataclasses.replace(self.mnist, model=self.model))
        for name in ("mnist_train_size", "mnist_test_size", "subset_epoch_images"):
            require(self, name, getattr(self, name) >= 0, ">= 0 (0: all)")
        require(self, "subset_sizes", all(n >= 1 for n in self.subset_sizes), "a list of sizes >= 1")
        require(self, "subset_seeds", len(self.subset_seeds) > 0 and len(set(self.subset_seeds)) == len(
            self.subset_seeds) and all(s >= 0 for s in self.subset_seeds), "a non-empty list of distinct integers >= 0")
        require(self, "thresholds", all(0 < t <= 1 for t in self.thresholds), "a list of accuracies in (0, 1]")


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

def balanced_subset(labels, size: int, seed: int) -> np.ndarray:
    """Sorted indices of ``size`` examples, as equal per class as possible, drawn with ``seed``.

    Each class's examples are shuffled once by ``seed`` and the first ones taken, so a smaller
    subset is contained in a larger one; the first ``size % classes`` classes get one extra.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if not 0 < size <= len(labels):
        raise ValueError(f"subset size must be in 1..{len(labels)}, got {size}")
    rng = np.random.default_rng(seed)
    chosen = []
    for rank, c in enumerate(classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        want = size // len(classes) + (rank < size % len(classes))
        if want > len(members):
            raise ValueError(f"a class-balanced subset of {size} needs {want} examples of class {c}, "
                             f"which has {len(members)}")
        chosen.append(members[:want])
    return np.sort(np.concatenate(chosen))


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


# --- transfer ---------------------------------------------------------------------------------

def pretrained_variables(run_dir: str | Path, which: str = "best", member: int = 0) -> tuple[dict, dict]:
    """``{"params", "batch_stats"}`` of one member of a saved population, restored from its checkpoint
    (the weight average, for a run that keeps one), and where they came from:
    ``{"checkpoint", "epoch", "member"}``."""
    state, _, _, epoch = load_run(run_dir, which)
    return T.unstack(T.inference_variables(state), member), {"checkpoint": str(run_dir), "epoch": epoch,
                                                              "member": member}


def transfer_record(source: dict, variables: dict, state: T.TrainState) -> dict:
    """What a grafted run received: its source and ``transfer_plan`` (copied and fresh leaves)."""
    return {**source, **transfer_plan({"params": state.params, "batch_stats": state.batch_stats}, variables)}


def graft_init(source: dict):
    """``fit``'s ``init``: every member gets ``source``'s trunk (parameters and BatchNorm statistics).

    The head stays freshly initialised, and so does the optimiser state (Adam's moments start at
    zero, as they should for a new task).
    """
    def init(state: T.TrainState) -> T.TrainState:
        grafted, _ = graft({"params": state.params, "batch_stats": state.batch_stats}, source)
        return state.replace(params=grafted["params"], batch_stats=grafted["batch_stats"],
                             ema=None if state.ema is None else grafted)
    return init


# --- derived metrics --------------------------------------------------------------------------

def stat(values) -> dict:
    """Mean ± 95% CI over the seeds whose value is not None; ``n`` counts them, ``values`` keeps all."""
    values = list(values)
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "ci95": None, "n": 0, "values": values}
    return {**mean_ci95(present), "values": values}


def validation_points(history: list[dict]) -> list[tuple[int, float, list[float]]]:
    """Every validation of a run in order, the first epoch's probes included: (step, wall seconds
    since training began, test accuracy per seed).

    Seeds train side by side, so the seconds are the population's clock, compilation included.
    """
    points, elapsed = [], 0.0
    for record in history:
        points += [(p["step"], elapsed + p["seconds"], p["val_accuracy"]) for p in record.get("probes", [])]
        elapsed += record["seconds"]
        points.append((record["step"], elapsed, record["val_accuracy"]))
    return points


def first_reaching(values: list, accuracy, threshold: float) -> list:
    """Per seed (a column of ``accuracy`` [points, seeds]), ``values`` at its first point at or above
    ``threshold`` (None if never)."""
    return [next((values[i] for i in np.flatnonzero(column >= threshold)), None)
            for column in np.asarray(accuracy).T]


def epochs_to_accuracy(history: list[dict], threshold: float) -> list[int | None]:
    """For each seed, the first epoch whose end-of-epoch test accuracy is at least ``threshold``."""
    return first_reaching([r["epoch"] for r in history], [r["val_accuracy"] for r in history], threshold)


def steps_to_accuracy(history: list[dict], threshold: float) -> list[int | None]:
    """For each seed, the optimiser steps until its first validation (probes included) at ``threshold``."""
    points = validation_points(history)
    return first_reaching([p[0] for p in points], [p[2] for p in points], threshold)


def seconds_to_accuracy(history: list[dict], threshold: float) -> list[float | None]:
    """For each seed, wall seconds of training (and testing) until its first validation at ``threshold``."""
    points = validation_points(history)
    return first_reaching([p[1] for p in points], [p[2] for p in points], threshold)


def threshold_key(threshold: float) -> str:
    """``0.98`` -> ``"98"``: the suffix of ``epochs_to_98`` and ``seconds_to_98``."""
    return f"{100 * threshold:g}"


def summarise_history(history: list[dict], thresholds=(0.98, 0.99)) -> dict:
    """Convergence figures from ``fit``'s history, each over seeds.

    ``train_test_gap`` is the last epoch's train accuracy minus its test accuracy; the train
    accuracy is the running mean over the epoch's augmented batches with dropout on.
    """
    first, last = history[0], history[-1]
    summary = {"first_epoch_test_accuracy": stat(first["val_accuracy"])}
    for threshold in thresholds:
        summary[f"epochs_to_{threshold_key(threshold)}"] = stat(epochs_to_accuracy(history, threshold))
        summary[f"steps_to_{threshold_key(threshold)}"] = stat(steps_to_accuracy(history, threshold))
        summary[f"seconds_to_{threshold_key(threshold)}"] = stat(seconds_to_accuracy(history, threshold))
    summary["final_test_accuracy"] = stat(last["val_accuracy"])
    summary["final_train_accuracy"] = stat(last["train_accuracy"])
    summary["train_test_gap"] = stat(np.subtract(last["train_accuracy"], last["val_accuracy"]).tolist())
    summary["train_seconds"] = float(sum(r["seconds"] for r in history))
    return summary


def summarise_predictions(logits, ensemble_probs, labels, class_names) -> dict:
    """Per-seed test NLL and ECE (mean ± CI) and the full report of the seeds' ensemble.

    ``logits`` float [K, N, C], one row per seed, and ``ensemble_probs`` [N, C]: ``predict_probs``.
    """
    members = [classification_report(p, labels, class_names) for p in np.asarray(jax.nn.softmax(logits, -1))]
    return {"final_test_nll": stat([m["nll"] for m in members]),
            "final_test_ece": stat([m["ece"] for m in members]),
            "ensemble": classification_report(ensemble_probs, labels, class_names)}


# --- the experiment ---------------------------------------------------------------------------

def run(cfg: Part2Config, data_root: Path, workdir: Path, *, resume=False, overwrite=False, cache_dir=None) -> dict:
    """Trains A, then B, C, C_frozen and the data-size runs; writes results.json and the plots."""
    workdir = claim(workdir, "part2", to_dict(cfg), resume=resume, overwrite=overwrite)
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
    runs = {"B": (cfg.mnist, {}), "C": (cfg.mnist, grafted), "C_frozen": (frozen, grafted)}
    models = {}
    for name, (train_cfg, start) in runs.items():
        logger.info("part 2: model %s", LABELS[name])
        state, history = fit(train, test, train_cfg, workdir / name, **start, **flags)
        logits, probs = predict_probs(state, test.images, train_cfg.eval_batch_size)
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

def plot_curves(models: dict, key: str, ylabel: str, path: Path, labels: dict = LABELS) -> None:
    """``key`` (a per-seed history field) against epoch: the seeds' mean, their min-max as a band."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, result in models.items():
        epochs = [r["epoch"] for r in result["history"]]
        values = np.array([r[key] for r in result["history"]])
        line, = ax.plot(epochs, values.mean(1), marker="o", ms=3, label=labels[name])
        ax.fill_between(epochs, values.min(1), values.max(1), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_step_curves(models: dict, path: Path, ylabel: str, labels: dict = LABELS) -> None:
    """Test accuracy against optimiser steps (log scale), every validation including the first
    epoch's probes: where early convergence shows. Mean of the seeds, min-max band."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, result in models.items():
        points = validation_points(result["history"])
        steps = [p[0] for p in points]
        values = np.array([p[2] for p in points])
        line, = ax.plot(steps, values.mean(1), marker="o", ms=3, label=labels[name])
        ax.fill_between(steps, values.min(1), values.max(1), color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("optimiser steps")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_data_size(data_size: dict, path: Path) -> None:
    """Final test accuracy against training-set size (log scale), mean ± 95% CI over seeds."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in data_size.items():
        sizes = sorted(points, key=int)
        means = [points[s]["final_test_accuracy"]["mean"] for s in sizes]
        errors = [points[s]["final_test_accuracy"]["ci95"] or 0.0 for s in sizes]
        ax.errorbar([int(s) for s in sizes], means, yerr=errors, marker="o", capsize=3, label=LABELS[name])
    ax.set_xscale("log")
    ax.set_ylim(top=min(ax.get_ylim()[1], 1.005))  # a wide CI over few seeds may pass 1
    ax.set_xlabel("MNIST training images")
    ax.set_ylabel("final test accuracy")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_plots(results: dict, class_names, workdir: Path) -> None:
    """learning_curves.png, step_curves.png, test_loss_curves.png, data_size_curve.png, confusion_B.png,
    confusion_C.png."""
    models = results["models"]
    plot_curves(models, "val_accuracy", "MNIST test accuracy", workdir / "learning_curves.png")
    plot_step_curves(models, workdir / "step_curves.png", "MNIST test accuracy")
    plot_curves(models, "val_loss", "MNIST test loss (NLL)", workdir / "test_loss_curves.png")
    plot_data_size(results["data_size"], workdir / "data_size_curve.png")
    for name in CURVE_MODELS:
        plot_confusion(models[name]["ensemble"]["confusion"], class_names, workdir / f"confusion_{name}.png",
                       f"part 2: {LABELS[name]}, MNIST test (ensemble, last epoch)")


# --- summary ----------------------------------------------------------------------------------

def format_stat(summary: dict, digits: int = 4) -> str:
    """``mean ± ci`` ("not reached" when no seed has a value; "(n/K seeds)" when only some do)."""
    if summary["n"] == 0:
        return "not reached"
    text = f"{summary['mean']:.{digits}f}"
    if summary["ci95"] is not None:
        text += f" ± {summary['ci95']:.{digits}f}"
    if summary["n"] < len(summary["values"]):
        text += f" ({summary['n']}/{len(summary['values'])} seeds)"
    return text


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
