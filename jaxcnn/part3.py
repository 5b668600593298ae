"""Part 3: an MNIST-like set whose folders carry the wrong labels; find out how, and undo it.

The study trains on the folder labels from scratch and from the part-1 trunk, scores every model
on the *clean* MNIST test set, then diagnoses the folders: a model trained on clean MNIST (the
oracle) names the true digit of every image, which estimates the transition matrix
T[i, j] = P(folder j | digit i). The estimate is drawn as a heat map, read as a permutation
(cycle notation) plus a noise rate, and acted on: retraining on relabelled folders, forward
correction with T (Patrini et al. 2017), and GCE (Zhang & Sabuncu 2018). The truth file that
``make_noisy_mnist`` writes beside a folder is read once, at the very end, to score the estimate;
nothing is estimated or trained from it. See ``docs/part3.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from jaxcnn import part1  # noqa: E402
from jaxcnn.augment import AugmentConfig  # noqa: E402
from jaxcnn.classfolders import load_class_folders  # noqa: E402
from jaxcnn.config import ModelConfig, TrainConfig, to_dict  # noqa: E402
from jaxcnn.dataset import ArrayDataset  # noqa: E402
from jaxcnn.errors import CheckpointError, DataError  # noqa: E402
from jaxcnn.evaluate import checkpoint_dir, load_run, plot_confusion, predict_probs  # noqa: E402
from jaxcnn.fit import fit, softmax_mean, write_json  # noqa: E402
from jaxcnn.mnist import CLASS_NAMES as DIGITS, load_mnist  # noqa: E402
from jaxcnn.noise import (  # noqa: E402
    correct_labels, cycle_notation, describe_transition, estimate_transition, make_noisy_mnist,
    parse_corruption, transition_error, truth_path,
)
from jaxcnn.part2 import (  # noqa: E402
    MNIST_AUGMENT, balanced_subset, format_stat, graft_init, pretrained_variables, stat, summarise_history,
    plot_curves, plot_step_curves, summarise_predictions, threshold_key,
)

logger = logging.getLogger("jaxcnn")

LABELS = {
    "scratch": "scratch, folder labels",
    "pretrained": "part-1 trunk, folder labels",
    "relabel": "relabelled by the estimated mapping",
    "forward": "forward correction with estimated T",
    "relabel_gce": "relabelled, GCE loss",
    "gce": "GCE loss, folder labels",
}
# Each correction: which labels it trains on ("folder" or "relabelled") and with which loss.
CORRECTIONS = {
    "relabel": ("relabelled", "cross_entropy"),
    "forward": ("folder", "forward"),
    "relabel_gce": ("relabelled", "gce"),
    "gce": ("folder", "gce"),
}
MADE_DIR = "noisy-mnist"  # made as WORKDIR/noisy-mnist.zip, in the original's form
MNIST_TRAIN = TrainConfig(seeds=(0, 1, 2, 3, 4), epochs=15, batch_size=128, learning_rate=2e-3, weight_decay=5e-4,
                          warmup_epochs=1, label_smoothing=0.0, augment=MNIST_AUGMENT, probe_every=50)


@dataclasses.dataclass(frozen=True)
class Part3Config:
    """What part 3 trains on and how.

    ``data``: the corrupted class-folder set (folder or zip); empty means make one under
    ``WORKDIR/noisy-mnist`` from MNIST train with ``corruption`` and ``corruption_seed``.
    ``noisy_size``/``test_size``/``reference_size``: 0 uses everything, else a class-balanced subset
    (of the folders by folder label, of MNIST test, of MNIST train for the oracle) drawn with ``draw_seed``.
    ``part1_ckpt``: part 1's work directory, whose trunk is grafted; if it holds no checkpoint
    whose trunk fits ``model``, ``train_part1_if_missing`` (quick mode) trains a quick part 1 in
    ``WORKDIR/part1-quick``, else it is an error.
    ``clean_ckpt``: a model trained on clean MNIST (part 2's B) used as the oracle; empty or
    missing, a reference is trained on clean MNIST train with ``reference`` in ``WORKDIR/reference``.
    ``min_confidence``: oracle predictions below it are left out of the estimate.
    ``corrections``: keys of ``CORRECTIONS``, trained from ``correction_init`` ("scratch" or "pretrained").
    ``model`` replaces ``train.model`` and ``reference.model`` (the part-1 trunk must fit it).
    """

    data: str = ""
    corruption: str = "complementary"
    corruption_seed: int = 0
    noisy_size: int = 0
    test_size: int = 0
    reference_size: int = 0
    draw_seed: int = 0
    part1_ckpt: str = "ckpts/part1"
    train_part1_if_missing: bool = False
    clean_ckpt: str = "ckpts/part2/B"
    model: ModelConfig = ModelConfig()
    train: TrainConfig = MNIST_TRAIN
    reference: TrainConfig = dataclasses.replace(MNIST_TRAIN, seeds=(0,), epochs=10, probe_every=0)
    min_confidence: float = 0.9
    corrections: tuple[str, ...] = ("relabel", "forward", "relabel_gce")
    correction_init: str = "scratch"
    thresholds: tuple[float, ...] = (0.98, 0.99)
    samples_per_folder: int = 8

    def __post_init__(self):
        object.__setattr__(self, "train", dataclasses.replace(self.train, model=self.model))
        object.__setattr__(self, "reference", dataclasses.replace(self.reference, model=self.model))
        unknown = set(self.corrections) - set(CORRECTIONS)
        if unknown:
            raise ValueError(f"unknown corrections {sorted(unknown)}: choose from {sorted(CORRECTIONS)}")
        if self.correction_init not in ("scratch", "pretrained"):
            raise ValueError(f"correction_init must be 'scratch' or 'pretrained', got {self.correction_init!r}")


def get_config(quick: bool = False) -> Part3Config:
    """The study's configuration; ``quick`` is the same pipeline, tiny (a minute or two on a CPU)."""
    cfg = Part3Config()
    if not quick:
        return cfg
    return dataclasses.replace(
        cfg, model=ModelConfig(widths=(8, 16, 32), hidden=32),
        train=dataclasses.replace(cfg.train, seeds=(0, 1), epochs=2, batch_size=32, warmup_epochs=0),
        reference=dataclasses.replace(cfg.reference, epochs=2, batch_size=32, warmup_epochs=0,
                                      augment=AugmentConfig(0.0, 0.0, 0.0, 0.0)),
        noisy_size=3000, test_size=1000, reference_size=3000, clean_ckpt="", train_part1_if_missing=True,
        min_confidence=0.5)


# --- data -------------------------------------------------------------------------------------

def has_checkpoints(path: str | Path) -> bool:
    """Whether ``path`` (a run's work directory or its ``checkpoints/``) holds a saved epoch."""
    folder = checkpoint_dir(path)
    return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


def make_default_set(cfg: Part3Config, data_root: Path, workdir: Path, *, overwrite=False) -> Path:
    """``WORKDIR/noisy-mnist.zip``: MNIST train (or a balanced subset) with ``cfg.corruption`` planted,
    in the original's form (JPEGs under ``mnistTask/``, a Mac zip).

    An existing set is reused when it was made with the same settings (``noisy-mnist.made.json``
    records them, not the truth). The returned summary of ``make_noisy_mnist`` is not kept: it
    holds the planted corruption, which the study must find for itself.
    """
    out = workdir / f"{MADE_DIR}.zip"
    record = workdir / f"{MADE_DIR}.made.json"
    settings = {"corruption": str(parse_corruption(cfg.corruption)), "seed": cfg.corruption_seed,
                "size": cfg.noisy_size, "draw_seed": cfg.draw_seed}
    if out.exists() and not overwrite:
        if record.is_file() and json.loads(record.read_text()) == settings:
            logger.info("part 3: reusing the corrupted set made earlier in %s", out)
            return out
        raise DataError(f"{out}: holds a corrupted set made with other settings; pass --overwrite to remake it")
    train = load_mnist(data_root, "train")
    if cfg.noisy_size:
        train = train.subset(balanced_subset(train.labels, cfg.noisy_size, cfg.draw_seed))
    logger.info("part 3: no --data given, so making the default corrupted set: %d MNIST training images, "
                "corruption %s, seed %d, in %s", len(train), settings["corruption"], cfg.corruption_seed, out)
    make_noisy_mnist(train.images, train.labels, out, cfg.corruption, cfg.corruption_seed, overwrite=True, as_zip=True)
    write_json(record, settings)
    return out


def load_noisy(cfg: Part3Config, source: Path, cache_dir=None) -> ArrayDataset:
    """The corrupted set's images with their folder labels (a balanced subset if ``noisy_size``)."""
    data = load_class_folders(source, class_names=DIGITS, cache_dir=cache_dir, exact=True)
    if cfg.noisy_size and cfg.noisy_size < len(data):
        data = data.subset(balanced_subset(data.labels, cfg.noisy_size, cfg.draw_seed))
    return data


def load_mnist_split(data_root: Path, split: str, size: int, seed: int) -> ArrayDataset:
    """A clean MNIST split, whole or as a class-balanced subset of ``size``."""
    data = load_mnist(data_root, split)
    return data.subset(balanced_subset(data.labels, size, seed)) if size else data


def with_labels(data: ArrayDataset, labels) -> ArrayDataset:
    """The same images with other labels (a corrected copy of the folder labels)."""
    return ArrayDataset(data.images, np.asarray(labels, np.int32), data.groups, data.class_names)


# --- the two models the study starts from -----------------------------------------------------

def trunk_widths(variables: dict) -> tuple[int, ...]:
    """The output channels of each conv block of a model's trunk, from its parameters."""
    trunk = variables["params"]["trunk"]
    firsts = sorted((k for k in trunk if k.startswith("conv") and k.endswith("_0")), key=lambda k: int(k[4:-2]))
    return tuple(int(trunk[k]["kernel"].shape[-1]) for k in firsts)


def part1_variables(cfg: Part3Config, data_root: Path, workdir: Path, *, resume=False, overwrite=False,
                    cache_dir=None) -> tuple[dict, str]:
    """Part 1's best checkpoint (its first seed) and where it came from.

    With ``train_part1_if_missing``, a missing checkpoint, or one whose trunk does not fit
    ``cfg.model`` (a full part 1 for a quick part 3), is replaced by a quick part 1 trained in
    ``WORKDIR/part1-quick``; without it, either is an error that says what to do.
    """
    source = Path(cfg.part1_ckpt)
    if has_checkpoints(source):
        variables = pretrained_variables(source, "best")
        if trunk_widths(variables) == tuple(cfg.model.widths):
            return variables, str(source)
        problem = (f"{source}: its trunk has widths {trunk_widths(variables)}, part 3's model "
                   f"{tuple(cfg.model.widths)}; set model.widths to match")
    else:
        problem = (f"{source}: no part-1 checkpoint; run part 1 first (python experiments/part1.py) "
                   "or point --set part1_ckpt=DIR at its work directory")
    if not cfg.train_part1_if_missing:
        raise CheckpointError(problem)
    source = workdir / "part1-quick"
    logger.info("part 3: %s; training a quick part 1 in %s instead", problem.split(";")[0], source)
    p1 = part1.get_config(quick=True)
    p1 = dataclasses.replace(p1, train=dataclasses.replace(p1.train, model=cfg.model))
    part1.run(p1, data_root, source, resume=resume, overwrite=overwrite, cache_dir=cache_dir)
    return pretrained_variables(source, "best"), str(source)


def clean_oracle(cfg: Part3Config, data_root: Path, test: ArrayDataset, workdir: Path, *, resume=False,
                 overwrite=False):
    """A model of clean MNIST: ``(state, eval_batch_size, description)``.

    ``cfg.clean_ckpt`` (its last epoch) if it holds a run, else a reference trained here on
    clean MNIST train; the test set only draws its learning curve.
    """
    if cfg.clean_ckpt and has_checkpoints(cfg.clean_ckpt):
        state, ref_cfg, class_names, epoch = load_run(cfg.clean_ckpt, "latest")
        if tuple(class_names) != DIGITS:
            raise CheckpointError(f"{cfg.clean_ckpt}: classifies {class_names}, not the digits 0-9")
        return state, ref_cfg.eval_batch_size, f"{cfg.clean_ckpt} (epoch {epoch})"
    train = load_mnist_split(data_root, "train", cfg.reference_size, cfg.draw_seed + 1)
    logger.info("part 3: training a clean reference (the oracle) on %d MNIST training images", len(train))
    state, _ = fit(train, test, cfg.reference, workdir / "reference", resume=resume, overwrite=overwrite)
    return state, cfg.reference.eval_batch_size, f"trained here on {len(train)} clean MNIST training images"


# --- the diagnosis ----------------------------------------------------------------------------

def diagnose(folder_labels, oracle_probs, min_confidence: float) -> dict:
    """The estimated T (rows: the oracle's digit, columns: the folder) and what it says.

    ``prior`` for the noise rate is the oracle's class frequencies among the images it kept.
    """
    T_est = estimate_transition(folder_labels, oracle_probs, num_classes=len(DIGITS), min_confidence=min_confidence)
    kept = oracle_probs.max(1) >= min_confidence
    prior = np.bincount(oracle_probs.argmax(1)[kept], minlength=len(DIGITS))
    return {"transition": T_est.tolist(), "min_confidence": min_confidence, "kept_fraction": float(kept.mean()),
            **describe_transition(T_est, prior)}


def renamed_accuracy(logits, labels, mapping) -> dict:
    """A model of the folder labels, its outputs renamed to digits by the estimated mapping.

    ``logits`` [K, N, C]; folder ``mapping[i]`` holds digit i, so digit i's score is ``logits[..., mapping[i]]``.
    """
    renamed = np.asarray(logits)[..., np.asarray(mapping)]
    return {"final_test_accuracy": stat((renamed.argmax(-1) == labels).mean(1).tolist()),
            "ensemble_accuracy": float(np.mean(softmax_mean(renamed).argmax(-1) == labels))}


def score_estimate(data_dir: Path, diagnosis: dict) -> dict | None:
    """The estimate against the truth file beside the data, if there is one. Call only after training."""
    path = truth_path(data_dir)
    if not path.is_file():
        return None
    truth = json.loads(path.read_text())
    planted = [int(x) for x in truth["permutation"]]
    return {"truth_file": str(path), "read_after_training": True,
            "planted_permutation": planted, "planted_cycles": cycle_notation(planted),
            "mapping_matches": diagnosis["mapping"] == planted,
            "planted_noise_rate": truth["measured_noise_rate"], "estimated_noise_rate": diagnosis["noise_rate"],
            "vs_expected_T": transition_error(diagnosis["transition"], truth["transition_matrix"]),
            "vs_measured_T": transition_error(diagnosis["transition"], truth["measured_transition"])}


# --- the experiment ---------------------------------------------------------------------------

def training_runs(cfg: Part3Config, folder: np.ndarray, diagnosis: dict, pretrained_init) -> dict:
    """``{name: (labels, TrainConfig, init, outputs_folders)}``: the two baselines, then each feasible
    correction. ``outputs_folders``: the model's classes are folder labels, not digits."""
    runs = {"scratch": (folder, cfg.train, None, True), "pretrained": (folder, cfg.train, pretrained_init, True)}
    init = pretrained_init if cfg.correction_init == "pretrained" else None
    for name in cfg.corrections:
        labels_from, loss = CORRECTIONS[name]
        if labels_from == "relabelled" and not diagnosis["is_permutation"]:
            logger.warning("part 3: skipping %s: the estimated mapping %s is not a permutation",
                           name, diagnosis["mapping"])
            continue
        labels = correct_labels(folder, diagnosis["mapping"]) if labels_from == "relabelled" else folder
        train_cfg = dataclasses.replace(cfg.train, loss=loss, label_transition=(
            tuple(map(tuple, diagnosis["transition"])) if loss == "forward" else ()))
        runs[name] = (labels, train_cfg, init, labels_from == "folder" and loss != "forward")
    return runs


def run(cfg: Part3Config, data_root: Path, workdir: Path, *, resume=False, overwrite=False, cache_dir=None) -> dict:
    """Diagnoses the corrupted folders, trains every model, scores them on clean MNIST test; writes
    results.json and the figures."""
    workdir = Path(workdir)
    flags = {"resume": resume, "overwrite": overwrite}
    workdir.mkdir(parents=True, exist_ok=True)
    source = Path(cfg.data) if cfg.data else make_default_set(cfg, data_root, workdir, overwrite=overwrite)
    noisy = load_noisy(cfg, source, cache_dir)
    test = load_mnist_split(data_root, "test", cfg.test_size, cfg.draw_seed)
    logger.info("part 3: %d corrupted images from %s, clean MNIST test %d", len(noisy), source, len(test))

    variables, part1_source = part1_variables(cfg, data_root, workdir, cache_dir=cache_dir, **flags)
    oracle, batch, oracle_source = clean_oracle(cfg, data_root, test, workdir, **flags)
    _, oracle_probs = predict_probs(oracle, noisy.images, batch)
    _, oracle_test_probs = predict_probs(oracle, test.images, batch)
    diagnosis = diagnose(noisy.labels, oracle_probs, cfg.min_confidence)
    logger.info("part 3: estimated folder mapping %s (cycles %s), noise rate %.3f (%s)", diagnosis["mapping"],
                diagnosis["cycles"], diagnosis["noise_rate"], diagnosis["pattern"])

    models = {}
    runs = training_runs(cfg, noisy.labels, diagnosis, graft_init(variables))
    for name, (labels, train_cfg, init, outputs_folders) in runs.items():
        logger.info("part 3: model %s", LABELS[name])
        state, history = fit(with_labels(noisy, labels), test, train_cfg, workdir / name, init=init, **flags)
        logits, probs = predict_probs(state, test.images, train_cfg.eval_batch_size)
        models[name] = {"history": history, **summarise_history(history, cfg.thresholds),
                        **summarise_predictions(logits, probs, test.labels, DIGITS)}
        if outputs_folders and diagnosis["is_permutation"]:
            models[name]["renamed"] = renamed_accuracy(logits, test.labels, diagnosis["mapping"])

    results = {
        "config": to_dict(cfg),
        "data": {"source": str(source), "made_here": not cfg.data,
                 **({"corruption": str(parse_corruption(cfg.corruption)), "seed": cfg.corruption_seed}
                    if not cfg.data else {}),
                 "noisy_images": len(noisy), "folder_counts": np.bincount(noisy.labels, minlength=10).tolist(),
                 "mnist_test": len(test)},
        "part1_checkpoint": part1_source,
        "oracle": {"source": oracle_source,
                   "test_accuracy": float(np.mean(oracle_test_probs.argmax(1) == test.labels))},
        "estimate": diagnosis,
        "models": models,
    }
    write_figures(results, noisy, oracle_probs, workdir, cfg.samples_per_folder)
    results["truth_check"] = score_estimate(source, diagnosis)
    write_json(workdir / "results.json", results)
    return results


# --- figures ----------------------------------------------------------------------------------

def plot_transition(T, path: Path, title: str = "") -> None:
    """The estimated T as an annotated heat map: rows the true digit, columns the folder label."""
    T = np.asarray(T)
    fig, ax = plt.subplots(figsize=(6, 5.4))
    image = ax.imshow(T, cmap="viridis", vmin=0, vmax=1)
    for i, j in zip(*np.nonzero(T >= 0.005)):
        ax.text(j, i, f"{T[i, j]:.2f}", ha="center", va="center", fontsize=7,
                color="black" if T[i, j] > 0.5 else "white")
    ticks = np.arange(len(T))
    ax.set_xticks(ticks, DIGITS)
    ax.set_yticks(ticks, DIGITS)
    ax.set_xlabel("folder label (observed)")
    ax.set_ylabel("digit (clean oracle)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_folder_samples(data: ArrayDataset, oracle_digits, path: Path, per_folder: int = 8, seed: int = 0) -> None:
    """A grid: one row per folder, ``per_folder`` random images of it, each titled with the oracle's digit."""
    rng = np.random.default_rng(seed)
    folders = range(data.num_classes)
    fig, axes = plt.subplots(len(folders), per_folder, figsize=(per_folder * 0.9, len(folders) * 1.0), squeeze=False)
    for row, folder in zip(axes, folders):
        members = np.flatnonzero(data.labels == folder)
        chosen = rng.choice(members, min(per_folder, len(members)), replace=False) if len(members) else []
        for col, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(chosen):
                ax.imshow(data.images[chosen[col]], cmap="gray", vmin=0, vmax=255)
                ax.set_title(f"oracle {oracle_digits[chosen[col]]}", fontsize=6, pad=2)
        row[0].set_ylabel(f"folder {data.class_names[folder]}", fontsize=8)
    fig.suptitle("images per folder; title: the clean oracle's digit", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_figures(results: dict, noisy: ArrayDataset, oracle_probs, workdir: Path, per_folder: int) -> None:
    """transition_estimate.png, folder_samples.png, learning_curves.png, test_loss_curves.png and
    confusion_<model>.png (clean test, ensemble) for every model."""
    est = results["estimate"]
    plot_transition(est["transition"], workdir / "transition_estimate.png",
                    f"estimated P(folder | digit): {est['cycles'] or 'not a permutation'}, "
                    f"noise rate {est['noise_rate']:.3f} ({est['pattern']})")
    plot_folder_samples(noisy, oracle_probs.argmax(1), workdir / "folder_samples.png", per_folder)
    models = results["models"]
    plot_curves(models, "val_accuracy", "clean MNIST test accuracy", workdir / "learning_curves.png", LABELS)
    plot_step_curves(models, workdir / "step_curves.png", "clean MNIST test accuracy", LABELS)
    plot_curves(models, "val_loss", "clean MNIST test loss (NLL)", workdir / "test_loss_curves.png", LABELS)
    for name, result in models.items():
        plot_confusion(result["ensemble"]["confusion"], DIGITS, workdir / f"confusion_{name}.png",
                       f"part 3, {name}: clean MNIST test (ensemble)")


# --- summary ----------------------------------------------------------------------------------

def summary_lines(results: dict) -> list[str]:
    """The diagnosis, the clean-test table (mean ± 95% CI over seeds, last epoch) and the truth check."""
    data, est, models, oracle = results["data"], results["estimate"], results["models"], results["oracle"]
    made = (f"; made here: corruption {data['corruption']}, seed {data['seed']}" if data["made_here"] else "")
    lines = [f"part 3: {data['noisy_images']} corrupted images from {data['source']}{made}",
             f"clean oracle: {oracle['source']}, MNIST test accuracy {oracle['test_accuracy']:.4f}; "
             f"estimate from {est['kept_fraction']:.1%} of the images (confidence >= {est['min_confidence']})",
             f"estimated folder mapping (digit -> folder): {est['mapping']}, "
             + (f"permutation {est['cycles']}" if est["is_permutation"] else "not a permutation")
             + f", noise rate {est['noise_rate']:.3f} off the mapping ({est['pattern']})"]
    rows = [("final test accuracy", "final_test_accuracy", 4), ("final test NLL", "final_test_nll", 4),
            ("final test ECE", "final_test_ece", 4), ("first-epoch test acc.", "first_epoch_test_accuracy", 4)]
    rows += [row for t in results["config"]["thresholds"]
             for row in ((f"epochs to {threshold_key(t)}%", f"epochs_to_{threshold_key(t)}", 1),
                         (f"steps to {threshold_key(t)}%", f"steps_to_{threshold_key(t)}", 0))]
    width = 24
    lines += [f"clean MNIST test set ({data['mnist_test']} images), mean ± 95% CI over seeds, last epoch:",
              "".join(f"{h:<{width}}" for h in ("", *models))]
    for label, key, digits in rows:
        lines.append("".join(f"{c:<{width}}" for c in (label, *(format_stat(m[key], digits) for m in models.values()))))
    lines.append("".join(f"{c:<{width}}" for c in ("ensemble accuracy", *(f"{m['ensemble']['accuracy']:.4f}"
                                                                          for m in models.values()))))
    for name, m in models.items():
        if "renamed" in m:
            lines.append(f"{name}, outputs renamed by the estimated mapping: "
                         f"{format_stat(m['renamed']['final_test_accuracy'])} "
                         f"(ensemble {m['renamed']['ensemble_accuracy']:.4f})")
    truth = results.get("truth_check")
    if truth is None:
        lines.append("truth check: no truth file beside the data")
    else:
        lines.append(f"truth check (truth file read after training): planted {truth['planted_cycles']}, "
                     f"estimate {'matches' if truth['mapping_matches'] else 'DIFFERS'}; planted noise rate "
                     f"{truth['planted_noise_rate']:.3f} vs estimated {truth['estimated_noise_rate']:.3f}; "
                     f"max |T_est - T_measured| {truth['vs_measured_T']['max_abs_error']:.3f}")
    return lines
