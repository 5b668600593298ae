"""Part 3: an MNIST-like set whose folders carry the wrong labels; find out how, and learn anyway.

The default set is a replica of the original task's ``mnistTask3.zip``: MNIST train as JPEGs in
``mnistTask/<k>/``, zipped on a Mac, with **complementary labels** (folder k holds every digit but
k). The study audits the images against clean MNIST, diagnoses the labels twice, trains on them as
they are and with methods that fit the diagnosed kind, and scores every model on the *clean*
MNIST test set at its last epoch.

- The oracle view: a model of clean MNIST names the digit of every image, which estimates the
  transition matrix T[i, j] = P(folder j | digit i); ``transitions.classify_transition`` names its kind.
- The oracle-free view: a model trained on the folder labels alone, cross-validated over the
  folders, gives held-out posteriors whose shape tells the kind (a hole for complementary labels,
  a peak for clean or renamed ones); it cannot tell a renaming from clean data.
- Learning without any clean label (``uses_clean_labels`` false): forward correction with the
  known form T = (J - I)/(K - 1) (Yu et al. 2018), the non-negative complementary-label risk
  (Ishida et al. 2019), and self-training on a teacher's confident pseudo-labels. Methods that use
  the oracle (relabelling by its mapping, forward correction with its T, its own labels as an
  upper bound) are marked ``uses_clean_labels`` true. No model is selected on the test set.

The truth file that ``make_noisy_mnist`` writes beside a set is read once, at the very end, to
score the estimate; nothing is estimated or trained from it. See ``docs/part3.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from jaxcnn.config import AugmentConfig, ModelConfig, TrainConfig, to_dict
from jaxcnn.data import audit
from jaxcnn.data.classfolders import load_class_folders
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.data.imagefiles import list_images
from jaxcnn.data.mnist import CLASS_NAMES as DIGITS, load_mnist
from jaxcnn.data.noise import make_noisy_mnist, parse_corruption, truth_path
from jaxcnn.errors import CheckpointError, DataError
from jaxcnn.evaluation.convergence import format_stat, stat, summarise_history, summarise_predictions, threshold_key
from jaxcnn.evaluation.evaluate import predict_probs
from jaxcnn.evaluation.plots import (
    plot_confusion, plot_curves, plot_folder_samples, plot_step_curves, plot_transition,
)
from jaxcnn.evaluation.transitions import (
    classify_transition, correct_labels, cycle_notation, estimate_transition, transition_error,
)
from jaxcnn.experiments import part1
from jaxcnn.experiments.common import MNIST_AUGMENT, balanced_subset
from jaxcnn.rundir import claim
from jaxcnn.training.checkpoint import has_checkpoints, load_run
from jaxcnn.training.loop import fit, softmax_mean, write_json
from jaxcnn.training.transfer import graft_init, pretrained_variables, transfer_record

logger = logging.getLogger("jaxcnn")

K = len(DIGITS)
COMPLEMENTARY_T = tuple(tuple((1.0 - np.eye(K)[i]) / (K - 1)) for i in range(K))  # (J - I)/(K - 1)
TRUNK = "_trunk"  # a model name ending in it starts from the part-1 trunk, else from scratch


@dataclasses.dataclass(frozen=True)
class Method:
    """How a model learns: its labels (``folder``, ``relabelled`` by the oracle's mapping,
    ``oracle`` predictions, ``pseudo`` labels of a teacher), its loss, and what it needs."""

    label: str
    labels: str
    loss: str
    uses_clean_labels: bool
    fits: tuple[str, ...] = ()  # the diagnosed kinds it is meant for (empty: any)
    view: str = "oracle_free"  # whose diagnosis decides whether it fits


METHODS = {
    "folder": Method("folder labels, cross-entropy", "folder", "cross_entropy", False),
    "comp_forward": Method("complementary: forward correction, T = (J - I)/9", "folder", "forward", False,
                           ("complementary",)),
    "comp_nn": Method("complementary: non-negative risk (Ishida et al.)", "folder", "complementary_nn", False,
                      ("complementary",)),
    "self_train": Method("self-training on the teacher's pseudo-labels", "pseudo", "cross_entropy", False),
    "relabel": Method("relabelled by the oracle's mapping", "relabelled", "cross_entropy", True,
                      ("permutation", "clean", "symmetric", "pair_flip"), "oracle"),
    "forward": Method("forward correction with the oracle's T", "folder", "forward", True, (), "oracle"),
    "oracle_relabel": Method("the oracle's labels (upper bound)", "oracle", "cross_entropy", True, (), "oracle"),
}
MADE_DIR = "noisy-mnist"  # made as WORKDIR/noisy-mnist.zip, in the original's form
MNIST_TRAIN = TrainConfig(seeds=(0, 1, 2, 3, 4), epochs=15, batch_size=128, learning_rate=2e-3, weight_decay=5e-4,
                          warmup_epochs=1, label_smoothing=0.0, augment=MNIST_AUGMENT, probe_every=50)


def method_of(name: str) -> tuple[Method, bool]:
    """A model name -> (its method, whether it starts from the part-1 trunk): ``comp_forward_trunk``."""
    base = name.removesuffix(TRUNK)
    if base not in METHODS or base == "folder":
        raise ValueError(f"unknown model {name!r}: a method of {sorted(set(METHODS) - {'folder'})}, "
                         f"optionally with '{TRUNK}' (from the part-1 trunk)")
    return METHODS[base], name.endswith(TRUNK)


@dataclasses.dataclass(frozen=True)
class Part3Config:
    """What part 3 trains on and how.

    ``data``: the corrupted class-folder set (folder or zip); empty means make one,
    ``WORKDIR/noisy-mnist.zip``, from MNIST train with ``corruption`` and ``corruption_seed``.
    ``noisy_size``/``test_size``/``reference_size``: 0 uses everything, else a class-balanced subset
    (of the folders by folder label, of MNIST test, of MNIST train for the oracle) drawn with ``draw_seed``.
    ``part1_ckpt``: part 1's work directory, whose trunk is grafted; if it holds no checkpoint
    whose trunk fits ``model``, ``train_part1_if_missing`` trains a quick part 1 in
    ``WORKDIR/part1-quick``, else it is an error.
    ``clean_ckpt``: a model trained on clean MNIST (part 2's B) used as the oracle; empty or
    missing, a reference is trained on clean MNIST train with ``reference`` in ``WORKDIR/reference``.
    ``min_confidence``: oracle predictions below it are left out of the estimate.
    ``free_size``/``free_folds``/``free_train``: the oracle-free diagnosis, a ``free_folds``-fold
    cross-validation of a model of the folder labels on ``free_size`` images (0: all).
    ``baseline_epochs``: epochs of ``scratch`` and ``pretrained``, the models of the folder labels
    (0: ``train.epochs``), trained last. ``models``: the other models, each a key of ``METHODS`` (``_trunk``: from the
    part-1 trunk), trained with ``train`` when their method fits the diagnosed kind.
    ``teacher``: the method whose model (same start) labels the data for ``self_train``; pseudo-labels
    are the teacher's posterior given the image and its folder, kept at ``self_train_confidence``;
    the student trains ``self_train_epochs`` (0: ``train.epochs``), from its own start.
    ``model`` replaces ``train.model``, ``reference.model`` and ``free_train.model``.
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
    free_size: int = 12000
    free_folds: int = 2
    free_train: TrainConfig = dataclasses.replace(MNIST_TRAIN, seeds=(0,), epochs=3, probe_every=0)
    baseline_epochs: int = 0
    models: tuple[str, ...] = ("comp_forward", "comp_forward_trunk", "comp_nn", "comp_nn_trunk", "self_train",
                               "self_train_trunk", "relabel", "forward", "oracle_relabel")
    teacher: str = "comp_forward"
    self_train_confidence: float = 0.9
    self_train_epochs: int = 0
    thresholds: tuple[float, ...] = (0.98, 0.99)
    samples_per_folder: int = 8

    def __post_init__(self):
        for field in ("train", "reference", "free_train"):
            object.__setattr__(self, field, dataclasses.replace(getattr(self, field), model=self.model))
        for name in self.models:
            method_of(name)
        method_of(self.teacher)
        if self.teacher.endswith(TRUNK) or METHODS[self.teacher].labels == "pseudo":
            raise ValueError(f"teacher must be a method without '{TRUNK}' and not self_train, got {self.teacher!r}")
        for i, name in enumerate(self.models):
            if method_of(name)[0].labels == "pseudo" and teacher_of(self, name) not in self.models[:i]:
                raise ValueError(f"{name} learns from {teacher_of(self, name)}: list it before {name} in models")
        if self.free_folds < 2:
            raise ValueError(f"free_folds must be at least 2, got {self.free_folds}")


def get_config(quick: bool = False) -> Part3Config:
    """The study's configuration; ``quick`` is the same pipeline, tiny (a few minutes on a CPU)."""
    cfg = Part3Config()
    if not quick:
        return cfg
    return dataclasses.replace(
        cfg, model=ModelConfig(widths=(8, 16, 32), hidden=32),
        train=dataclasses.replace(cfg.train, seeds=(0, 1), epochs=2, batch_size=32, warmup_epochs=0),
        reference=dataclasses.replace(cfg.reference, epochs=2, batch_size=32, warmup_epochs=0,
                                      augment=AugmentConfig(0.0, 0.0, 0.0, 0.0)),
        free_train=dataclasses.replace(cfg.free_train, epochs=8, batch_size=32, warmup_epochs=0),
        noisy_size=3000, test_size=1000, reference_size=3000, free_size=3000, clean_ckpt="",
        train_part1_if_missing=True, min_confidence=0.5,
        models=("comp_forward", "comp_forward_trunk", "comp_nn", "self_train", "relabel", "forward",
                "oracle_relabel"))


# --- data -------------------------------------------------------------------------------------


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
                    cache_dir=None) -> tuple[dict, dict]:
    """Part 1's best checkpoint (its first seed) and where it came from (see ``pretrained_variables``).

    With ``train_part1_if_missing``, a missing checkpoint, or one whose trunk does not fit
    ``cfg.model`` (a full part 1 for a quick part 3), is replaced by a quick part 1 trained in
    ``WORKDIR/part1-quick``; without it, either is an error that says what to do.
    """
    source = Path(cfg.part1_ckpt)
    if has_checkpoints(source):
        variables, record = pretrained_variables(source, "best")
        if trunk_widths(variables) == tuple(cfg.model.widths):
            return variables, record
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
    return pretrained_variables(source, "best")


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


# --- the diagnosis ---------------------------------------------------------------------------

def diagnose(folder_labels, oracle_probs, min_confidence: float) -> dict:
    """The oracle view: T estimated from a clean model's digits (rows) and the folders (columns),
    and its kind (``classify_transition``). The prior of the noise rate is the oracle's class
    frequencies among the images it kept."""
    T_est = estimate_transition(folder_labels, oracle_probs, num_classes=K, min_confidence=min_confidence)
    kept = oracle_probs.max(1) >= min_confidence
    rows_seen = np.bincount(oracle_probs.argmax(1)[kept], minlength=K)
    return {"transition": T_est.tolist(), "min_confidence": min_confidence, "kept_fraction": float(kept.mean()),
            "rows_seen": rows_seen.tolist(), **classify_transition(T_est, rows_seen, rows_seen)}


FREE_Z = 3.0  # standard errors a folder frequency must lie from 1/K to count as signal (one-sided 0.13% each)


def free_diagnosis(folder_labels, posteriors) -> dict:
    """The oracle-free view, from held-out posteriors ``q[n, j]`` = P(folder j | image n) of a model
    trained on the other folds' folder labels.

    Clean (or renamed) folders make an image's folder its most likely one far more often than 1/K
    (``folder_is_most_likely``); complementary folders make it its least likely one far *less* often
    than 1/K (``folder_is_least_likely``: the model learnt "not the digit", and the folder never is
    the digit); uninformative folders do neither. Whichever deviation from 1/K is larger, in standard
    errors sqrt((1/K)(1 - 1/K)/n), decides, if it reaches ``FREE_Z``: these frequencies are unbiased,
    so a weak folder model (a blurred, shallow hole) still reads right. Each image's *anchor* is then
    its most (least) likely folder, T is estimated with the anchor as the row (``estimate_transition``)
    and read by ``classify_transition``, which names a peaked kind (clean, symmetric, pair_flip).
    The view assumes the anchor names the digit: a renaming of the folders leaves q peaked at the
    folder itself, so a permutation reads as ``clean``.
    """
    q, folders = np.asarray(posteriors, np.float64), np.asarray(folder_labels)
    n = len(folders)
    most, least = float(np.mean(q.argmax(1) == folders)), float(np.mean(q.argmin(1) == folders))
    se = np.sqrt((1 / K) * (1 - 1 / K) / n)
    z_peak, z_hole = (most - 1 / K) / se, (1 / K - least) / se
    holed = z_hole > z_peak
    anchor = q.argmin(1) if holed else q.argmax(1)
    rows_seen = np.bincount(anchor, minlength=K)
    figures = {"anchor": "least likely" if holed else "most likely", "images": n,
               "folder_is_most_likely": most, "folder_is_least_likely": least, "z_peak": float(z_peak),
               "z_hole": float(z_hole), "posterior_profile": np.sort(q, axis=1)[:, ::-1].mean(0).tolist(),
               "rows_seen": rows_seen.tolist()}
    T_free = estimate_transition(folders, anchor, num_classes=K) if np.all(rows_seen) else None
    reading = classify_transition(T_free, rows_seen) if T_free is not None else {}
    if max(z_peak, z_hole) < FREE_Z:
        verdict = {"kind": "uninformative", "reason": f"the folders are neither the images' most nor their least "
                   f"likely ones more than chance says ({max(z_peak, z_hole):.1f} standard errors)"}
    elif holed:
        # noise rate: images whose folder is their anchor, an upper bound (the model's mistakes count)
        verdict = {"kind": "complementary", "mapping": list(range(K)), "noise_rate": least,
                   "reason": f"an image's folder is its least likely one in {least:.1%} of the held-out images, "
                             f"{z_hole:.1f} standard errors below chance: the folder is the digit it is not"}
    else:
        verdict = {"kind": reading["kind"], "reason": f"an image's folder is its most likely one in {most:.1%} "
                   f"of the held-out images; read from T: {reading['reason']}"}
    return {**reading, **figures, "transition": None if T_free is None else T_free.tolist(), **verdict,
            "transition_reading": reading.get("kind")}


def free_posteriors(cfg: Part3Config, noisy: ArrayDataset, workdir: Path, flags: dict) -> tuple[np.ndarray, np.ndarray]:
    """Cross-validated P(folder | image): ``(indices, q)`` for ``free_size`` images, each scored by a
    model trained on the other folds' folder labels (validated on its own held-out fold's folders)."""
    rng = np.random.default_rng(cfg.draw_seed + 2)
    chosen = np.sort(rng.permutation(len(noisy))[:cfg.free_size or len(noisy)])
    folds = np.arange(len(chosen)) % cfg.free_folds
    rng.shuffle(folds)
    q = np.zeros((len(chosen), K))
    for fold in range(cfg.free_folds):
        train, held = noisy.subset(chosen[folds != fold]), noisy.subset(chosen[folds == fold])
        logger.info("part 3: oracle-free diagnosis, fold %d/%d: %d images train, %d held out",
                    fold + 1, cfg.free_folds, len(train), len(held))
        state, _ = fit(train, held, cfg.free_train, workdir / "free" / f"fold{fold}", **flags)
        q[folds == fold] = predict_probs(state, held.images, cfg.free_train.eval_batch_size)[1]
    return chosen, q


def compare_views(oracle: dict, free: dict) -> dict:
    """Whether the two views agree, and if not, what each rests on."""
    agree = oracle["kind"] == free["kind"]
    note = "the two views agree" if agree else (
        f"the oracle reads {oracle['kind']}, the folders alone {free['kind']}: the oracle view assumes a "
        "model of clean MNIST names each digit rightly (its own errors count as noise); the oracle-free "
        "view assumes the folder model's most (or least) likely folder names the digit, which holds up to "
        "a renaming, so it cannot see a permutation" + (" (as here)" if oracle["kind"] == "permutation" else ""))
    return {"agree": agree, "note": note}


def renamed_accuracy(logits, labels, mapping) -> dict:
    """A model of the folder labels, its outputs renamed to digits by the estimated mapping.

    ``logits`` [K, N, C]; folder ``mapping[i]`` holds digit i, so digit i's score is ``logits[..., mapping[i]]``.
    """
    renamed = np.asarray(logits)[..., np.asarray(mapping)]
    return {"final_test_accuracy": stat((renamed.argmax(-1) == labels).mean(1).tolist()),
            "ensemble_accuracy": float(np.mean(softmax_mean(renamed).argmax(-1) == labels))}


def least_likely_accuracy(logits, labels) -> dict:
    """A model of complementary folder labels read the other way: its least likely folder as the digit."""
    logits = np.asarray(logits)
    return {"final_test_accuracy": stat((logits.argmin(-1) == labels).mean(1).tolist()),
            "ensemble_accuracy": float(np.mean(softmax_mean(logits).argmin(-1) == labels))}


def score_estimate(data_dir: Path, diagnosis: dict) -> dict | None:
    """The estimate against the truth file beside the data, if there is one. Call only after training."""
    path = truth_path(data_dir)
    if not path.is_file():
        return None
    truth = json.loads(path.read_text())
    planted_T = np.asarray(truth["transition_matrix"])
    return {"truth_file": str(path), "read_after_training": True, "planted_spec": truth["spec"],
            "planted_kind": classify_transition(planted_T)["kind"], "kind_matches":
                classify_transition(planted_T)["kind"] == diagnosis["kind"],
            "planted_permutation": truth["permutation"], "planted_cycles": cycle_notation(truth["permutation"]),
            "planted_noise_rate": truth["measured_noise_rate"],
            "vs_expected_T": transition_error(diagnosis["transition"], planted_T),
            "vs_measured_T": transition_error(diagnosis["transition"], truth["measured_transition"])}


def audit_images(source: Path, noisy: ArrayDataset, test: ArrayDataset, data_root: Path, size: int, seed: int) -> dict:
    """``results["audit"]``: the files, pixel statistics beside clean MNIST train and test, and exact
    and near duplicates inside the set and against the MNIST test set (the whole test set, whatever
    ``test_size``: a leaked image voids any test score)."""
    listing = list_images(source)
    counts = np.bincount(noisy.labels, minlength=K)
    clean_train = load_mnist_split(data_root, "train", size, seed)
    clean_test = load_mnist(data_root, "test")
    return {"files": audit.file_audit(listing, {d: int(c) for d, c in zip(DIGITS, counts)}),
            "pixels": {"set": audit.pixel_stats(noisy.images), "mnist_train": audit.pixel_stats(clean_train.images),
                       "mnist_test": audit.pixel_stats(clean_test.images)},
            "duplicates_inside": audit.duplicates(noisy.images),
            "duplicates_in_mnist_test": audit.duplicates(noisy.images, clean_test.images)}


# --- the experiment ---------------------------------------------------------------------------

def fits(method: Method, diagnoses: dict) -> str | None:
    """Why ``method`` does not fit the diagnosis (None if it does)."""
    kind = diagnoses[method.view]["kind"]
    if method.fits and kind not in method.fits:
        return f"meant for {' or '.join(method.fits)} labels; the {method.view.replace('_', '-')} view reads {kind}"
    if method.labels == "relabelled" and not diagnoses["oracle"]["is_permutation"]:
        return f"the oracle's mapping {diagnoses['oracle']['mapping']} is not a permutation"
    return None


def labels_for(method: Method, folder, diagnosis: dict, oracle_digits) -> np.ndarray:
    """The labels a method trains on (``pseudo`` ones come from the teacher, later)."""
    if method.labels == "relabelled":
        return correct_labels(folder, diagnosis["mapping"])
    return np.asarray(oracle_digits if method.labels == "oracle" else folder, np.int32)


def train_config(cfg: Part3Config, method: Method, diagnosis: dict, epochs: int = 0) -> TrainConfig:
    """``cfg.train`` with the method's loss (and T for forward correction) and ``epochs`` (0: as it is)."""
    transition = ()
    if method.loss == "forward":
        transition = COMPLEMENTARY_T if method.labels == "folder" and not method.uses_clean_labels else \
            tuple(map(tuple, diagnosis["transition"]))
    return dataclasses.replace(cfg.train, loss=method.loss, label_transition=transition,
                               epochs=epochs or cfg.train.epochs)


def pseudo_labels(teacher_state, cfg: Part3Config, teacher: Method, noisy: ArrayDataset,
                  diagnosis: dict) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's labels for the training images: ``(indices kept, labels)``.

    The posterior given the image *and* its folder, P(y | x, folder) ∝ p(y | x) T[y, folder] with
    the T of the teacher's label model (the known complementary form for a complementary method,
    the forward-corrected T, else none), so a complementary folder rules its own digit out; images
    whose posterior is below ``self_train_confidence`` are left out. A teacher without clean labels
    makes a student without them.
    """
    _, probs = predict_probs(teacher_state, noisy.images, cfg.train.eval_batch_size)
    T = np.asarray(COMPLEMENTARY_T if "complementary" in teacher.fits else
                   train_config(cfg, teacher, diagnosis).label_transition or np.eye(K))
    posterior = probs * T[:, noisy.labels].T
    posterior /= np.maximum(posterior.sum(1, keepdims=True), 1e-12)
    keep = np.flatnonzero(posterior.max(1) >= cfg.self_train_confidence)
    return keep, posterior.argmax(1)[keep].astype(np.int32)


def teacher_of(cfg: Part3Config, name: str) -> str:
    """The teacher of a self-training model: ``cfg.teacher`` from the same start."""
    return cfg.teacher + (TRUNK if name.endswith(TRUNK) else "")


def run(cfg: Part3Config, data_root: Path, workdir: Path, *, resume=False, overwrite=False, cache_dir=None) -> dict:
    """Audits and diagnoses the corrupted folders (with and without the oracle), trains every model,
    scores them on clean MNIST test; writes diagnosis.json (the audit and the diagnosis, before any
    model trains), then results.json and the figures."""
    workdir = claim(workdir, "part3", to_dict(cfg), resume=resume, overwrite=overwrite)
    flags = {"resume": resume, "overwrite": overwrite}
    source = Path(cfg.data) if cfg.data else make_default_set(cfg, data_root, workdir, overwrite=overwrite)
    noisy = load_noisy(cfg, source, cache_dir)
    test = load_mnist_split(data_root, "test", cfg.test_size, cfg.draw_seed)
    logger.info("part 3: %d corrupted images from %s, clean MNIST test %d", len(noisy), source, len(test))
    audited = audit_images(source, noisy, test, data_root, cfg.reference_size, cfg.draw_seed + 1)
    logger.info("part 3: audit: %d near-duplicates of MNIST test images, %d inside the set, %d stray files",
                audited["duplicates_in_mnist_test"]["near"], audited["duplicates_inside"]["near"],
                audited["files"]["stray_files"]["count"])

    variables, part1_source = part1_variables(cfg, data_root, workdir, cache_dir=cache_dir, **flags)
    trunk_init = graft_init(variables)
    oracle, batch, oracle_source = clean_oracle(cfg, data_root, test, workdir, **flags)
    _, oracle_probs = predict_probs(oracle, noisy.images, batch)
    _, oracle_test_probs = predict_probs(oracle, test.images, batch)
    chosen, q = free_posteriors(cfg, noisy, workdir, flags)
    diagnoses = {"oracle": diagnose(noisy.labels, oracle_probs, cfg.min_confidence),
                 "oracle_free": free_diagnosis(noisy.labels[chosen], q)}
    diagnosis = {"kind": diagnoses["oracle"]["kind"], **diagnoses, **compare_views(*diagnoses.values())}
    for view, d in diagnoses.items():
        logger.info("part 3: %s view: %s (%s); mapping %s, noise rate %s", view, d["kind"], d["reason"],
                    d.get("mapping"), d.get("noise_rate"))
    write_json(workdir / "diagnosis.json", {"audit": audited, "diagnosis": diagnosis})  # before the long part

    plan, skipped = {}, {}
    for name in cfg.models:
        method, from_trunk = method_of(name)
        why = fits(METHODS[cfg.teacher], diagnoses) if method.labels == "pseudo" else fits(method, diagnoses)
        if why:
            skipped[name] = why
            logger.warning("part 3: skipping %s: %s", name, why)
            continue
        epochs = cfg.self_train_epochs if method.labels == "pseudo" else 0
        plan[name] = (method, trunk_init if from_trunk else None, train_config(cfg, method, diagnoses["oracle"], epochs))
    baseline = dataclasses.replace(cfg.train, epochs=cfg.baseline_epochs or cfg.train.epochs)
    plan |= {"scratch": (METHODS["folder"], None, baseline), "pretrained": (METHODS["folder"], trunk_init, baseline)}
    teachers = {teacher_of(cfg, name) for name, (method, _, _) in plan.items() if method.labels == "pseudo"}
    models, states = {}, {}
    for name, (method, init, train_cfg) in plan.items():
        logger.info("part 3: model %s: %s", name, method.label)
        train = noisy
        if method.labels == "pseudo":
            teacher = teacher_of(cfg, name)
            keep, labels = pseudo_labels(states[teacher], cfg, METHODS[cfg.teacher], noisy, diagnoses["oracle"])
            if len(keep) < train_cfg.batch_size:
                skipped[name] = (f"its teacher {teacher} is confident (>= {cfg.self_train_confidence}) about "
                                 f"only {len(keep)} images")
                logger.warning("part 3: skipping %s: %s", name, skipped[name])
                continue
            train = with_labels(noisy.subset(keep), labels)
        else:
            train = with_labels(noisy, labels_for(method, noisy.labels, diagnoses["oracle"], oracle_probs.argmax(1)))
        state, history = fit(train, test, train_cfg, workdir / name, init=init,
                             meta={"transfer": part1_source} if init else {}, **flags)
        if name in teachers:
            states[name] = state
        logits, probs = predict_probs(state, test.images, train_cfg.eval_batch_size)
        uses_clean = method.uses_clean_labels or (method.labels == "pseudo" and METHODS[cfg.teacher].uses_clean_labels)
        models[name] = {"method": method.label, "uses_clean_labels": uses_clean,
                        "init": "part-1 trunk" if init else "scratch", "train_images": len(train),
                        "history": history, **summarise_history(history, cfg.thresholds),
                        **summarise_predictions(logits, probs, test.labels, DIGITS),
                        "transfer": transfer_record(part1_source, variables, state) if init else None}
        if method.labels == "pseudo":
            models[name]["pseudo_labels"] = {"teacher": teacher, "kept": len(train), "of": len(noisy)}
        if method is METHODS["folder"]:
            if diagnoses["oracle"]["is_permutation"] and diagnoses["oracle"]["kind"] != "complementary":
                models[name]["renamed"] = renamed_accuracy(logits, test.labels, diagnoses["oracle"]["mapping"])
            if diagnoses["oracle_free"]["kind"] == "complementary":
                models[name]["least_likely"] = least_likely_accuracy(logits, test.labels)

    models = {name: models[name] for name in ("scratch", "pretrained", *cfg.models) if name in models}
    results = {
        "config": to_dict(cfg),
        "data": {"source": str(source), "made_here": not cfg.data,
                 **({"corruption": str(parse_corruption(cfg.corruption)), "seed": cfg.corruption_seed}
                    if not cfg.data else {}),
                 "noisy_images": len(noisy), "folder_counts": np.bincount(noisy.labels, minlength=K).tolist(),
                 "mnist_test": len(test)},
        "audit": audited,
        "part1_checkpoint": part1_source,
        "oracle": {"source": oracle_source,
                   "test_accuracy": float(np.mean(oracle_test_probs.argmax(1) == test.labels))},
        "diagnosis": diagnosis,
        "models": models,
        "skipped": skipped,
    }
    write_figures(results, noisy, oracle_probs, workdir, cfg.samples_per_folder)
    results["truth_check"] = score_estimate(source, diagnoses["oracle"])
    write_json(workdir / "results.json", results)
    return results


# --- figures ----------------------------------------------------------------------------------


def view_title(d: dict, what: str) -> str:
    rate = d.get("noise_rate")
    return f"{what}: {d['kind']}, mapping {d.get('mapping')}" + (f", noise rate {rate:.3f}" if rate is not None else "")


def write_figures(results: dict, noisy: ArrayDataset, oracle_probs, workdir: Path, per_folder: int) -> None:
    """transition_estimate.png (oracle view), transition_free.png (oracle-free view), audit_samples.png
    (images per folder, no label), folder_samples.png (the same, titled with the oracle's digit),
    learning_curves.png, step_curves.png, test_loss_curves.png and confusion_<model>.png."""
    oracle, free = results["diagnosis"]["oracle"], results["diagnosis"]["oracle_free"]
    plot_transition(oracle["transition"], workdir / "transition_estimate.png", view_title(oracle, "oracle view"))
    if free.get("transition") is not None:
        plot_transition(free["transition"], workdir / "transition_free.png", view_title(free, "oracle-free view"),
                        ylabel=f"the folder model's {free['anchor']} folder (held out)")
    plot_folder_samples(noisy, None, workdir / "audit_samples.png", per_folder,
                        suptitle="images per folder, as they are")
    plot_folder_samples(noisy, [f"oracle {d}" for d in oracle_probs.argmax(1)], workdir / "folder_samples.png",
                        per_folder, suptitle="images per folder; title: the clean oracle's digit")
    models = results["models"]
    labels = {name: f"{name}{' (clean labels)' if m['uses_clean_labels'] else ''}" for name, m in models.items()}
    plot_curves(models, "val_accuracy", "clean MNIST test accuracy", workdir / "learning_curves.png", labels)
    plot_step_curves(models, workdir / "step_curves.png", "clean MNIST test accuracy", labels)
    plot_curves(models, "val_loss", "clean MNIST test loss (NLL)", workdir / "test_loss_curves.png", labels)
    for name, result in models.items():
        plot_confusion(result["ensemble"]["confusion"], DIGITS, workdir / f"confusion_{name}.png",
                       f"part 3, {name}: clean MNIST test (ensemble)")


# --- summary ----------------------------------------------------------------------------------

def view_line(name: str, d: dict) -> str:
    figures = (f"peak mass {d['peak_mass']:.3f}, hole mass {d['hole_mass']:.3f}, diagonal mass {d['diagonal_mass']:.3f}"
               if "peak_mass" in d else "")
    rate = d.get("noise_rate")
    return (f"{name}: {d['kind']} ({d['reason']}); mapping {d.get('mapping')}, noise rate "
            f"{'n/a' if rate is None else f'{rate:.3f}'}; {figures}")


def summary_lines(results: dict) -> list[str]:
    """The audit, both diagnoses, the clean-test table (mean ± 95% CI over seeds, last epoch) and the truth check."""
    data, diag, models, oracle = results["data"], results["diagnosis"], results["models"], results["oracle"]
    audited = results["audit"]
    made = (f"; made here: corruption {data['corruption']}, seed {data['seed']}" if data["made_here"] else "")
    files = audited["files"]
    lines = [f"part 3: {data['noisy_images']} corrupted images from {data['source']}{made}",
             f"audit: {files['image_files']} image files ({', '.join(files['formats'])}; JPEG quality "
             f"{files['jpeg_quality_estimate'] or 'n/a'}), {files['stray_files']['count']} stray files "
             f"({files['stray_files']['by_reason']}); folder sizes {list(files['folder_sizes'].values())}; "
             f"mean intensity {audited['pixels']['set']['mean_intensity']:.1f} (MNIST test "
             f"{audited['pixels']['mnist_test']['mean_intensity']:.1f}); duplicates: "
             f"{audited['duplicates_inside']['exact']} exact / {audited['duplicates_inside']['near']} near inside, "
             f"{audited['duplicates_in_mnist_test']['exact']} exact / {audited['duplicates_in_mnist_test']['near']} "
             f"near in MNIST test",
             f"clean oracle: {oracle['source']}, MNIST test accuracy {oracle['test_accuracy']:.4f}; "
             f"estimate from {diag['oracle']['kept_fraction']:.1%} of the images (confidence >= "
             f"{diag['oracle']['min_confidence']})",
             view_line("oracle view", diag["oracle"]),
             view_line("oracle-free view", diag["oracle_free"]),
             f"views: {diag['note']}"]
    rows = [("final test accuracy", "final_test_accuracy", 4), ("final test NLL", "final_test_nll", 4),
            ("final test ECE", "final_test_ece", 4), ("first-epoch test acc.", "first_epoch_test_accuracy", 4)]
    rows += [row for t in results["config"]["thresholds"]
             for row in ((f"epochs to {threshold_key(t)}%", f"epochs_to_{threshold_key(t)}", 1),
                         (f"steps to {threshold_key(t)}%", f"steps_to_{threshold_key(t)}", 0))]
    width = 24
    cells = lambda row: "".join(f"{c:<{width}}" for c in row)
    lines += [f"clean MNIST test set ({data['mnist_test']} images), mean ± 95% CI over seeds, last epoch:",
              cells(("", *models)),
              cells(("uses clean labels", *("yes" if m["uses_clean_labels"] else "no" for m in models.values()))),
              cells(("epochs", *(str(len(m["history"])) for m in models.values())))]
    for label, key, digits in rows:
        lines.append(cells((label, *(format_stat(m[key], digits) for m in models.values()))))
    lines.append(cells(("ensemble accuracy", *(f"{m['ensemble']['accuracy']:.4f}" for m in models.values()))))
    for name, m in models.items():
        for key, what in (("renamed", "outputs renamed by the oracle's mapping"),
                          ("least_likely", "its least likely folder taken as the digit")):
            if key in m:
                lines.append(f"{name}, {what}: {format_stat(m[key]['final_test_accuracy'])} "
                             f"(ensemble {m[key]['ensemble_accuracy']:.4f})")
    free = [(name, m) for name, m in models.items() if not m["uses_clean_labels"]]
    if free:
        name, best = max(free, key=lambda item: item[1]["final_test_accuracy"]["mean"])
        lines.append(f"best model without any clean label: {name}, {format_stat(best['final_test_accuracy'])}")
    for name, why in results["skipped"].items():
        lines.append(f"skipped {name}: {why}")
    truth = results.get("truth_check")
    if truth is None:
        lines.append("truth check: no truth file beside the data")
    else:
        lines.append(f"truth check (truth file read after training): planted {truth['planted_spec']} "
                     f"({truth['planted_kind']}), the oracle view's kind {'matches' if truth['kind_matches'] else 'DIFFERS'}; "
                     f"planted noise rate {truth['planted_noise_rate']:.3f}; max |T_est - T_measured| "
                     f"{truth['vs_measured_T']['max_abs_error']:.3f}")
    return lines
