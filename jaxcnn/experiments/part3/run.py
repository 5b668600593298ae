"""Part 3's run, one pass through its stages: the corrupted set and clean MNIST test (``sources``),
the audit and the matched view (``diagnosis.examine``), the part-1 trunk and the clean oracle
(``sources``), the oracle-free view's folds (trained here, ``free_posteriors``) and both views
(``diagnosis``), the plan (``plan_models``), its models (``train_models``, each recorded by
``record_model``), what training changed inside the trunk models, the figures (``figures``) and, last,
the estimate scored against the truth file."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from jaxcnn.config import TrainConfig, defaults_of, to_dict
from jaxcnn.data.dataset import ArrayDataset, balanced_subset
from jaxcnn.data.mnist import load_mnist_split
from jaxcnn.data.noise import parse_corruption
from jaxcnn.evaluation.cka import transfer_changes
from jaxcnn.evaluation.evaluate import predict_probs
from jaxcnn.experiments.part3.config import Part3Config
from jaxcnn.experiments.part3.diagnosis import diagnose_views, examine, folder_model_readings, score_estimate
from jaxcnn.experiments.part3.figures import write_figures, write_samples
from jaxcnn.experiments.part3.methods import (
    K, METHODS, Method, Reading, fits, labels_for, method_of, pseudo_labels, teacher_of, train_config, trunk_pairs,
)
from jaxcnn.experiments.part3.sources import Part1Trunk, Place, clean_oracle, load_noisy, noisy_source, part1_trunk
from jaxcnn.experiments.records import model_record
from jaxcnn.experiments.results import RESULTS_FILE, Stamped, write_results
from jaxcnn.rundir import claim, write_json
from jaxcnn.training.transfer import graft_init, transfer_record

logger = logging.getLogger("jaxcnn")


class Part3Results(Stamped):
    """``run``'s results.json (``diagnosis.json`` holds its audit and diagnosis before any model trains)."""

    config: dict  # to_dict(Part3Config)
    data: dict  # where the set came from (its origin: task, replica or given) and its size
    audit: dict  # diagnosis.audit_images
    part1_checkpoint: dict  # where the grafted trunk came from
    oracle: dict  # the clean model's source and clean test accuracy
    diagnosis: dict  # diagnosis.diagnose_views, with the matched view
    models: dict[str, dict]  # records.model_record, with its method, start, labels and readings
    skipped: dict[str, str]  # model -> why it was not trained
    truth_check: dict | None  # diagnosis.score_estimate, read after training (None: no truth file)
    representations: dict[str, dict]  # trunk model -> cka.transfer_changes (absent in results written before it)


def run(cfg: Part3Config, data_root: Path, workdir: Path, *, part1_run: Path | None = None,
        oracle_run: Path | None = None, resume=False, overwrite=False, cache_dir=None) -> dict:
    """Audits and diagnoses the corrupted folders (with and without the oracle), trains every model
    of the plan, scores them on clean MNIST test; writes diagnosis.json (the audit and the diagnosis,
    before any model trains), then results.json and the figures."""
    workdir = claim(workdir, "part3", to_dict(cfg), defaults=defaults_of(cfg), resume=resume,
                    overwrite=overwrite)
    place = Place(data_root, workdir, resume=resume, overwrite=overwrite, cache_dir=cache_dir)
    source, origin = noisy_source(cfg, place)
    noisy = load_noisy(cfg, source, cache_dir)
    test = load_mnist_split(data_root, "test", cfg.test_size, cfg.draw_seed)
    logger.info("part 3: %d corrupted images from %s, clean MNIST test %d", len(noisy), source, len(test))
    audited, matched = examine(cfg, source, noisy, test, data_root)
    trunk = part1_trunk(cfg, part1_run, place)
    oracle = clean_oracle(cfg, oracle_run, test, place)
    _, oracle_probs = predict_probs(oracle.state, noisy.inputs(), oracle.eval_batch_size)
    _, oracle_test_probs = predict_probs(oracle.state, test.inputs(), oracle.eval_batch_size)
    held_out = free_posteriors(cfg, noisy, place)
    reading, diagnosis = diagnose_views(cfg, noisy, oracle_probs, matched, held_out)
    write_json(workdir / "diagnosis.json", {"audit": audited, "diagnosis": diagnosis})  # before the long part

    plan, skipped = plan_models(cfg, reading)
    for name, why in skipped.items():
        logger.warning("part 3: skipping %s: %s", name, why)
    trained = train_models(cfg, plan, Inputs(noisy, oracle_probs.argmax(1), test, trunk, reading, place))
    results = Part3Results(
        config=to_dict(cfg), data=data_record(cfg, source, origin, noisy, test), audit=audited,
        part1_checkpoint=trunk.source,
        oracle={"source": oracle.source, "test_accuracy": float(np.mean(oracle_test_probs.argmax(1) == test.labels))},
        diagnosis=diagnosis,
        models={name: trained.models[name] for name in ("scratch", "pretrained", *cfg.models) if name in trained.models},
        skipped=skipped | trained.skipped, truth_check=None,
        representations=representations(cfg, trained.states, trunk.variables, test))
    write_samples(noisy, oracle_probs, workdir, cfg.samples_per_folder)
    write_figures(results, workdir)
    results["truth_check"] = score_estimate(source, diagnosis)
    return write_results(workdir / RESULTS_FILE, results)


def data_record(cfg: Part3Config, source: Path, origin: str, noisy: ArrayDataset, test: ArrayDataset) -> dict:
    """``results["data"]``: where the set came from (with the corruption planted in a replica), its
    size and folder counts, and the size of the clean test set."""
    made = {"corruption": str(parse_corruption(cfg.corruption)), "seed": cfg.corruption_seed} \
        if origin == "replica" else {}
    return {"source": str(source), "origin": origin, **made, "noisy_images": len(noisy),
            "folder_counts": np.bincount(noisy.labels, minlength=K).tolist(), "mnist_test": len(test)}


def free_posteriors(cfg: Part3Config, noisy: ArrayDataset, place: Place) -> tuple[np.ndarray, np.ndarray]:
    """The oracle-free view's folds: cross-validated P(folder | image), ``(indices, q)`` for
    ``free_size`` images, each scored by a model trained on the other folds' folder labels (validated
    on its own held-out fold's folders) in ``WORKDIR/free/fold<k>``."""
    rng = np.random.default_rng(cfg.draw_seed + 2)
    chosen = np.sort(rng.permutation(len(noisy))[:cfg.free_size or len(noisy)])
    folds = np.arange(len(chosen)) % cfg.free_folds
    rng.shuffle(folds)
    q = np.zeros((len(chosen), K))
    for fold in range(cfg.free_folds):
        train, held = noisy.subset(chosen[folds != fold]), noisy.subset(chosen[folds == fold])
        logger.info("part 3: oracle-free diagnosis, fold %d/%d: %d images train, %d held out",
                    fold + 1, cfg.free_folds, len(train), len(held))
        state, _ = place.fit(f"free/fold{fold}", train, held, cfg.free_train)
        q[folds == fold] = predict_probs(state, held.inputs(), cfg.free_train.eval_batch_size)[1]
    return chosen, q


# --- the plan ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Step:
    """One model of the plan: how it learns, whether from the part-1 trunk, its training config, and
    (self-training) the model whose pseudo-labels it learns."""

    method: Method
    from_trunk: bool
    train: TrainConfig
    teacher: str | None = None


def plan_models(cfg: Part3Config, reading: Reading) -> tuple[dict[str, Step], dict[str, str]]:
    """Which models to train, in order, and why the others are not: ``(plan, skipped)``.

    A model of ``cfg.models`` is planned when its method (a self-trained one: its teacher's) fits
    the diagnosed kind; ``scratch`` and ``pretrained``, the models of the folder labels, come last.
    Pure: a test can check it without training anything.
    """
    plan, skipped = {}, {}
    for name in cfg.models:
        method, from_trunk = method_of(name)
        pseudo = method.labels == "pseudo"
        why = fits(METHODS[cfg.teacher] if pseudo else method, reading)
        if why:
            skipped[name] = why
            continue
        epochs = cfg.self_train_epochs if pseudo else 0
        plan[name] = Step(method, from_trunk, train_config(cfg, method, reading, epochs),
                          teacher_of(cfg, name) if pseudo else None)
    baseline = dataclasses.replace(cfg.train, epochs=cfg.baseline_epochs or cfg.train.epochs)
    plan |= {"scratch": Step(METHODS["folder"], False, baseline), "pretrained": Step(METHODS["folder"], True, baseline)}
    return plan, skipped


# --- the models -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What every model of the plan trains and is scored with: the corrupted set (its folder labels)
    and the oracle's digit of each of its images, clean MNIST test, the part-1 trunk, what the
    methods read of the diagnosis, and where the models train."""

    noisy: ArrayDataset
    oracle_digits: np.ndarray
    test: ArrayDataset
    trunk: Part1Trunk
    reading: Reading
    place: Place


@dataclasses.dataclass(frozen=True)
class Trained:
    """What ``train_models`` found: each model's record and final state, and the students it did
    not train (model -> why)."""

    models: dict[str, dict]
    states: dict
    skipped: dict[str, str]


def train_models(cfg: Part3Config, plan: dict[str, Step], inputs: Inputs) -> Trained:
    """Trains the plan in order and records each model; a self-trained model whose teacher is
    confident about too few images is not trained, and says why."""
    models, states, skipped = {}, {}, {}
    for name, step in plan.items():
        logger.info("part 3: model %s: %s", name, step.method.label)
        if step.teacher:
            train = student_set(cfg, states[step.teacher], inputs)
            if len(train) < step.train.batch_size:
                skipped[name] = (f"its teacher {step.teacher} is confident (>= {cfg.self_train_confidence}) about "
                                 f"only {len(train)} images")
                logger.warning("part 3: skipping %s: %s", name, skipped[name])
                continue
        else:
            train = with_labels(inputs.noisy, labels_for(step.method, inputs.noisy.labels, inputs.reading,
                                                         inputs.oracle_digits))
        init = graft_init(inputs.trunk.variables, cfg.keep_fresh) if step.from_trunk else None
        state, history = inputs.place.fit(name, train, inputs.test, step.train, init=init,
                                          meta={"transfer": inputs.trunk.source} if init else {})
        states[name] = state
        models[name] = record_model(cfg, step, state, history, train, inputs)
    return Trained(models, states, skipped)


def with_labels(data: ArrayDataset, labels) -> ArrayDataset:
    """The same images with other labels (a corrected copy of the folder labels)."""
    return ArrayDataset(data.images, np.asarray(labels, np.int32), data.groups, data.class_names)


def student_set(cfg: Part3Config, teacher_state, inputs: Inputs) -> ArrayDataset:
    """The images the teacher (``cfg.teacher``'s model, ``teacher_state``) is confident about, with
    its pseudo-labels (``methods.pseudo_labels``)."""
    noisy = inputs.noisy
    _, probs = predict_probs(teacher_state, noisy.inputs(), cfg.train.eval_batch_size)
    keep, labels = pseudo_labels(probs, noisy.labels, cfg, METHODS[cfg.teacher], inputs.reading)
    return with_labels(noisy.subset(keep), labels)


def record_model(cfg: Part3Config, step: Step, state, history: list[dict], train: ArrayDataset,
                 inputs: Inputs) -> dict:
    """A part-3 model's record: ``model_record`` with its method, start, labels and the readings of
    its outputs that the diagnosis suggests (renamed by the mapping, least likely folder)."""
    method, trunk, test = step.method, inputs.trunk, inputs.test
    uses_clean = method.uses_clean_labels or (step.teacher is not None and METHODS[cfg.teacher].uses_clean_labels)
    logits, probs = predict_probs(state, test.inputs(), step.train.eval_batch_size)
    transfer = transfer_record(trunk.source, trunk.variables, state, cfg.keep_fresh) if step.from_trunk else None
    record = model_record(history, (logits, probs), test, cfg.thresholds, method=method.label,
                          uses_clean_labels=uses_clean, init="part-1 trunk" if step.from_trunk else "scratch",
                          train_images=len(train), transfer=transfer)
    if step.teacher:
        record["pseudo_labels"] = {"teacher": step.teacher, "kept": len(train), "of": len(inputs.noisy)}
    if method is METHODS["folder"]:
        record |= folder_model_readings(logits, test.labels, inputs.reading)
    return record


def representations(cfg: Part3Config, states: dict, trunk: dict, test: ArrayDataset) -> dict:
    """What training changed inside each trunk model: ``cka.transfer_changes`` against the part-1
    trunk and its scratch partner, on ``cfg.cka_images`` class-balanced clean MNIST test images."""
    if not cfg.cka_images:
        return {}
    images = test.subset(balanced_subset(test.labels, min(cfg.cka_images, len(test)), cfg.draw_seed)).images
    return {a: transfer_changes(states[a], trunk, states[b], images) for a, b in trunk_pairs(states).items()}
