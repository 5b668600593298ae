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

from jaxcnn.config import TrainConfig, defaults_of, to_dict
from jaxcnn.data.chars74k import load_chars74k
from jaxcnn.data.classfolders import load_class_folders
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.data.mnist import CLASS_NAMES as DIGITS, load_mnist
from jaxcnn.data.noise import make_noisy_mnist, parse_corruption
from jaxcnn.document import Section, Text
from jaxcnn.errors import CheckpointError, DataError
from jaxcnn.evaluation.cka import transfer_changes
from jaxcnn.evaluation.evaluate import predict_probs
from jaxcnn.experiments.common import balanced_subset, load_mnist_split, not_run
from jaxcnn.experiments.part3_config import (
    COMPLEMENTARY_T, K, MADE_DIR, METHODS, PART1_DATA, PART1_PREPROCESS, REPLICA, TASK_SET, TRUNK, Method, Part3Config,
    Reading, fits, get_config, labels_for, method_of, planned_images, teacher_of, train_config,
)
from jaxcnn.experiments.part3_diagnosis import (
    audit_table, diagnose_views, diagnosis_findings, examine, folder_model_readings, reading_rows,
    score_estimate, views_table,
)
from jaxcnn.experiments.part3_figures import figures, write_figures, write_samples
from jaxcnn.experiments.records import (
    best_of, final_accuracy_text, model_record, models_table, paired_table, transfer_reading,
)
from jaxcnn.experiments.results import RESULTS_FILE, Stamped, write_results
from jaxcnn.processes import on_primary
from jaxcnn.rundir import claim, write_json
from jaxcnn.training.checkpoint import has_checkpoints, load_run
from jaxcnn.training.loop import fit
from jaxcnn.training.transfer import graft_init, pretrained_variables, transfer_record

__all__ = ["Part3Config", "get_config", "planned_images", "run", "sections", "headline"]  # the part protocol (jaxcnn.experiments)

logger = logging.getLogger("jaxcnn")


# --- data -------------------------------------------------------------------------------------


def noisy_source(cfg: Part3Config, data_root: Path, workdir: Path, *, overwrite=False) -> tuple[Path, str]:
    """Where the corrupted set is, and its origin: ``given`` (``cfg.data``, a folder or zip), ``task``
    (the task's own set in the data root, ``mnistTask3.zip`` or ``mnistTask3/``), or ``replica``
    (made here: ``cfg.data == "replica"``, or no task set in the data root)."""
    if cfg.data and cfg.data != REPLICA:
        return Path(cfg.data), "given"
    found = [] if cfg.data == REPLICA else [data_root / name for name in TASK_SET if (data_root / name).exists()]
    if found:
        return found[0], "task"
    if cfg.data != REPLICA:
        logger.info("part 3: no %s in %s, so part 3 runs on a replica made here", " or ".join(TASK_SET), data_root)
    return make_default_set(cfg, data_root, workdir, overwrite=overwrite), "replica"


def make_default_set(cfg: Part3Config, data_root: Path, workdir: Path, *, overwrite=False) -> Path:
    """``WORKDIR/noisy-mnist.zip``: MNIST train (or a balanced subset) with ``cfg.corruption`` planted,
    in the original's form (JPEGs under ``mnistTask/``, a Mac zip). Made by process 0 alone.

    An existing set is reused when it was made with the same settings (``noisy-mnist.made.json``
    records them, not the truth). The returned summary of ``make_noisy_mnist`` is not kept: it
    holds the planted corruption, which the study must find for itself.
    """
    on_primary(lambda: _make_default_set(cfg, data_root, workdir, overwrite), f"{workdir / MADE_DIR}.zip: making it")
    return workdir / f"{MADE_DIR}.zip"


def _make_default_set(cfg: Part3Config, data_root: Path, workdir: Path, overwrite: bool) -> Path:
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
    logger.info("part 3: making the replica: %d MNIST training images, "
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


def with_labels(data: ArrayDataset, labels) -> ArrayDataset:
    """The same images with other labels (a corrected copy of the folder labels)."""
    return ArrayDataset(data.images, np.asarray(labels, np.int32), data.groups, data.class_names)


# --- the two models the study starts from -----------------------------------------------------

def trunk_widths(variables: dict) -> tuple[int, ...]:
    """The output channels of each conv block of a model's trunk, from its parameters."""
    trunk = variables["params"]["trunk"]
    firsts = sorted((k for k in trunk if k.startswith("conv") and k.endswith("_0")), key=lambda k: int(k[4:-2]))
    return tuple(int(trunk[k]["kernel"].shape[-1]) for k in firsts)


def part1_variables(cfg: Part3Config, part1_run: Path | None, data_root: Path, workdir: Path, *, resume=False,
                    overwrite=False, cache_dir=None) -> tuple[dict, dict]:
    """Part 1's best checkpoint (its first seed) and where it came from (see ``pretrained_variables``).

    With ``train_part1_if_missing``, a missing checkpoint, or one whose trunk does not fit
    ``cfg.model`` (a full part 1 for a quick part 3), is replaced by a quick part 1 trained in
    ``WORKDIR/part1-quick`` (``cfg.part1_fallback`` on part 1's characters); without it, either is
    an error that says what to do.
    """
    if part1_run and has_checkpoints(part1_run):
        variables, record = pretrained_variables(part1_run, "best")
        if trunk_widths(variables) == tuple(cfg.model.widths):
            return variables, record
        problem = (f"{part1_run}: its trunk has widths {trunk_widths(variables)}, part 3's model "
                   f"{tuple(cfg.model.widths)}; set model.widths to match")
    else:
        problem = (f"{part1_run or 'no part-1 run given'}: no part-1 checkpoint; run part 1 first "
                   "(python experiments/part1.py) or point --part1-run at its work directory")
    if not cfg.train_part1_if_missing:
        raise CheckpointError(problem)
    source = workdir / "part1-quick"
    logger.info("part 3: %s; training a quick part 1 in %s instead", problem.split(";")[0], source)
    characters = load_chars74k(data_root / PART1_DATA, cache_dir=cache_dir, preprocess=PART1_PREPROCESS)
    fit(characters, None, cfg.part1_fallback, source, resume=resume, overwrite=overwrite,
        meta={"preprocess": PART1_PREPROCESS})
    return pretrained_variables(source, "best")


def clean_oracle(cfg: Part3Config, oracle_run: Path | None, data_root: Path, test: ArrayDataset, workdir: Path, *,
                 resume=False, overwrite=False):
    """A model of clean MNIST: ``(state, eval_batch_size, description)``.

    ``oracle_run`` (its last epoch) if it holds a run and ``cfg.use_oracle_run``, else a reference
    trained here on clean MNIST train; the test set only draws its learning curve.
    """
    if cfg.use_oracle_run and oracle_run and has_checkpoints(oracle_run):
        state, ref_cfg, class_names, epoch = load_run(oracle_run, "latest")
        if tuple(class_names) != DIGITS:
            raise CheckpointError(f"{oracle_run}: classifies {class_names}, not the digits 0-9")
        return state, ref_cfg.eval_batch_size, f"{oracle_run} (epoch {epoch})"
    train = load_mnist_split(data_root, "train", cfg.reference_size, cfg.draw_seed + 1)
    logger.info("part 3: training a clean reference (the oracle) on %d MNIST training images", len(train))
    state, _ = fit(train, test, cfg.reference, workdir / "reference", resume=resume, overwrite=overwrite)
    return state, cfg.reference.eval_batch_size, f"trained here on {len(train)} clean MNIST training images"


class Part3Results(Stamped):
    """``run``'s results.json (``diagnosis.json`` holds its audit and diagnosis before any model trains)."""

    config: dict  # to_dict(Part3Config)
    data: dict  # where the set came from (its origin: task, replica or given) and its size
    audit: dict  # part3_diagnosis.audit_images
    part1_checkpoint: dict  # where the grafted trunk came from
    oracle: dict  # the clean model's source and clean test accuracy
    diagnosis: dict  # part3_diagnosis.diagnose_views, with the matched view
    models: dict[str, dict]  # records.model_record, with its method, start, labels and readings
    skipped: dict[str, str]  # model -> why it was not trained
    truth_check: dict | None  # part3_diagnosis.score_estimate, read after training (None: no truth file)
    representations: dict[str, dict]  # trunk model -> cka.transfer_changes (absent in results written before it)


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


# --- the experiment ---------------------------------------------------------------------------


def run(cfg: Part3Config, data_root: Path, workdir: Path, *, part1_run: Path | None = None,
        oracle_run: Path | None = None, resume=False, overwrite=False, cache_dir=None) -> dict:
    """Audits and diagnoses the corrupted folders (with and without the oracle), trains every model
    of the plan, scores them on clean MNIST test; writes diagnosis.json (the audit and the diagnosis,
    before any model trains), then results.json and the figures."""
    workdir = claim(workdir, "part3", to_dict(cfg), defaults=defaults_of(cfg), resume=resume,
                    overwrite=overwrite)
    flags = {"resume": resume, "overwrite": overwrite}
    source, origin = noisy_source(cfg, data_root, workdir, overwrite=overwrite)
    noisy = load_noisy(cfg, source, cache_dir)
    test = load_mnist_split(data_root, "test", cfg.test_size, cfg.draw_seed)
    logger.info("part 3: %d corrupted images from %s, clean MNIST test %d", len(noisy), source, len(test))
    audited, matched = examine(cfg, source, noisy, test, data_root)
    part1_trunk = part1_variables(cfg, part1_run, data_root, workdir, cache_dir=cache_dir, **flags)
    oracle, batch, oracle_source = clean_oracle(cfg, oracle_run, data_root, test, workdir, **flags)
    _, oracle_probs = predict_probs(oracle, noisy.inputs(), batch)
    _, oracle_test_probs = predict_probs(oracle, test.inputs(), batch)
    reading, diagnosis = diagnose_views(cfg, noisy, oracle_probs, matched, workdir, flags)
    write_json(workdir / "diagnosis.json", {"audit": audited, "diagnosis": diagnosis})  # before the long part

    plan, skipped = plan_models(cfg, reading)
    for name, why in skipped.items():
        logger.warning("part 3: skipping %s: %s", name, why)
    labelled = {name: with_labels(noisy, labels_for(step.method, noisy.labels, reading, oracle_probs.argmax(1)))
                for name, step in plan.items() if step.teacher is None}
    models, states = train_models(cfg, plan, labelled, noisy, test, part1_trunk, reading, workdir, flags, skipped)
    results = Part3Results(
        config=to_dict(cfg),
        data={"source": str(source), "origin": origin,
              **({"corruption": str(parse_corruption(cfg.corruption)), "seed": cfg.corruption_seed}
                 if origin == "replica" else {}),
              "noisy_images": len(noisy), "folder_counts": np.bincount(noisy.labels, minlength=K).tolist(),
              "mnist_test": len(test)},
        audit=audited, part1_checkpoint=part1_trunk[1],
        oracle={"source": oracle_source, "test_accuracy": float(np.mean(oracle_test_probs.argmax(1) == test.labels))},
        diagnosis=diagnosis,
        models={name: models[name] for name in ("scratch", "pretrained", *cfg.models) if name in models},
        skipped=skipped, truth_check=None, representations=representations(cfg, states, part1_trunk[0], test))
    write_samples(noisy, oracle_probs, workdir, cfg.samples_per_folder)
    write_figures(results, workdir)
    results["truth_check"] = score_estimate(source, diagnosis)
    return write_results(workdir / RESULTS_FILE, results)


def train_models(cfg: Part3Config, plan: dict[str, Step], labelled: dict, noisy: ArrayDataset, test: ArrayDataset,
                 part1_trunk: tuple[dict, dict], reading: Reading, workdir: Path, flags: dict, skipped: dict) -> dict:
    """Trains the plan in order and records each model: ``(records, final states)``; a self-trained
    model whose teacher is confident about too few images joins ``skipped``."""
    variables, source = part1_trunk
    models, states = {}, {}
    for name, step in plan.items():
        logger.info("part 3: model %s: %s", name, step.method.label)
        train = labelled.get(name)
        if step.teacher:
            keep, labels = pseudo_labels(states[step.teacher], cfg, METHODS[cfg.teacher], noisy, reading)
            if len(keep) < step.train.batch_size:
                skipped[name] = (f"its teacher {step.teacher} is confident (>= {cfg.self_train_confidence}) about "
                                 f"only {len(keep)} images")
                logger.warning("part 3: skipping %s: %s", name, skipped[name])
                continue
            train = with_labels(noisy.subset(keep), labels)
        init = graft_init(variables, cfg.keep_fresh) if step.from_trunk else None
        state, history = fit(train, test, step.train, workdir / name, init=init,
                             meta={"transfer": source} if init else {}, **flags)
        states[name] = state
        models[name] = record_model(cfg, name, step, state, history, train, test, part1_trunk, reading, len(noisy))
    return models, states


def trunk_pairs(models) -> dict[str, str]:
    """Each model from the part-1 trunk and its partner from scratch (same method), where both are in ``models``."""
    pairs = {"pretrained": "scratch", **{name: name.removesuffix(TRUNK) for name in models if name.endswith(TRUNK)}}
    return {a: b for a, b in pairs.items() if a in models and b in models}


def representations(cfg: Part3Config, states: dict, trunk: dict, test: ArrayDataset) -> dict:
    """What training changed inside each trunk model: ``cka.transfer_changes`` against the part-1
    trunk and its scratch partner, on ``cfg.cka_images`` class-balanced clean MNIST test images."""
    if not cfg.cka_images:
        return {}
    images = test.subset(balanced_subset(test.labels, min(cfg.cka_images, len(test)), cfg.draw_seed)).images
    return {a: transfer_changes(states[a], trunk, states[b], images) for a, b in trunk_pairs(states).items()}


def record_model(cfg: Part3Config, name: str, step: Step, state, history: list[dict], train: ArrayDataset,
                 test: ArrayDataset, part1_trunk: tuple[dict, dict], reading: Reading, images: int) -> dict:
    """A part-3 model's record: ``model_record`` with its method, start, labels and the readings of
    its outputs that the diagnosis suggests (renamed by the mapping, least likely folder)."""
    method = step.method
    variables, source = part1_trunk
    uses_clean = method.uses_clean_labels or (step.teacher is not None and METHODS[cfg.teacher].uses_clean_labels)
    logits, probs = predict_probs(state, test.inputs(), step.train.eval_batch_size)
    record = model_record(history, (logits, probs), test, cfg.thresholds, method=method.label,
                          uses_clean_labels=uses_clean, init="part-1 trunk" if step.from_trunk else "scratch",
                          train_images=len(train),
                          transfer=transfer_record(source, variables, state, cfg.keep_fresh) if step.from_trunk else None)
    if step.teacher:
        record["pseudo_labels"] = {"teacher": step.teacher, "kept": len(train), "of": images}
    if method is METHODS["folder"]:
        record |= folder_model_readings(logits, test.labels, reading)
    return record


# --- the report -------------------------------------------------------------------------------

TITLE = "Part 3: label-corrupted MNIST"
ORIGINS = {"task": "the task's own set", "replica": "a replica made here", "given": "a set given with --data"}


def sections(results: dict | None, part_dir: Path, figure_dir: Path | None = None) -> list[Section]:
    """Part 3's report: the set, its audit, the three views of its labels, the models on clean
    MNIST test, each trunk model against its random start and what training changed inside it, and
    the figures, drawn from ``results`` into ``figure_dir`` (default ``part_dir``)."""
    if results is None:
        return [Section(TITLE, [not_run("part3")])]
    data, models, thresholds = results["data"], results["models"], results["config"]["thresholds"]
    made = f", corruption `{data['corruption']}`, seed {data['seed']}" if data["origin"] == "replica" else ""
    overview = Text(f"{data['noisy_images']} images in class folders from `{data['source']}` "
                    f"({ORIGINS[data['origin']]}{made}); every model is "
                    f"scored on the clean MNIST test set ({data['mnist_test']} images) at its last epoch, and none "
                    "is selected on it.")
    uses_clean = ["uses clean labels", *("yes" if m["uses_clean_labels"] else "no" for m in models.values())]
    table = models_table(models, thresholds, "Clean MNIST test set, mean ± 95% CI over seeds (Student t), last epoch; "
                         "train - test accuracy only for models whose training labels are taken as the digits.",
                         [uses_clean], gap_models=labels_as_truth(models, results["diagnosis"]["kind"]))
    table.rows += reading_rows(models)
    skipped = [Text(f"Not trained: {', '.join(f'`{n}` ({why})' for n, why in results['skipped'].items())}.")] \
        if results.get("skipped") else []
    against_scratch = paired_table(models, thresholds, trunk_pairs(models),
                                   "The part-1 trunk against a random start, method by method")
    oracle = results["oracle"]
    views = views_table(results["diagnosis"], oracle["source"], oracle["test_accuracy"], results.get("truth_check"))
    pairs = trunk_pairs(models)
    inside = [Text(transfer_reading(name, change, "the part-1 trunk", pairs.get(name, "scratch")))
              for name, change in results.get("representations", {}).items()]
    return [Section(TITLE, [overview, audit_table(results["audit"]), views, table, *against_scratch, *inside,
                            *skipped, *figures(results, part_dir, Path(figure_dir or part_dir))])]


def labels_as_truth(models: dict, kind: str) -> list[str]:
    """The models whose training labels are meant as the digits, so that their train accuracy and
    the clean test accuracy compare: cross-entropy on corrected, oracle or pseudo labels, and on the
    folder labels only where the diagnosis reads them clean."""
    by_label = {m.label: m for m in METHODS.values()}
    return [name for name, record in models.items() if (method := by_label.get(record.get("method"))) is not None
            and method.loss == "cross_entropy" and (method.labels != "folder" or kind == "clean")]


def headline(results: dict | None) -> str:
    """Part 3's answer in a sentence: what the set is and holds, and the best model with and without clean labels."""
    head = "**Part 3, what is wrong with the corrupted set?**"
    if results is None:
        return f"{head} not run yet"
    findings = diagnosis_findings(results["diagnosis"], results["audit"], results.get("truth_check"))
    answers = [f"{ORIGINS[results['data']['origin']]}, {findings}"]
    for clean, what in ((False, "without clean labels"), (True, "with the clean oracle's labels")):
        best = best_model(results["models"], clean)
        if best:
            answers.append(f"best recovery {what}: {best[0]}, {final_accuracy_text(best[1])} "
                           "on clean MNIST test")
    return f"{head} {'; '.join(answers)}"


def best_model(models: dict, clean: bool) -> tuple[str, dict] | None:
    """The most accurate model among those that do (or do not) use clean labels."""
    return best_of({name: m for name, m in models.items() if m["uses_clean_labels"] == clean})


def pseudo_labels(teacher_state, cfg: Part3Config, teacher: Method, noisy: ArrayDataset,
                  reading: Reading) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's labels for the training images: ``(indices kept, labels)``.

    The posterior given the image *and* its folder, P(y | x, folder) ∝ p(y | x) T[y, folder] with
    the T of the teacher's label model (the known complementary form for a complementary method,
    the forward-corrected T, else none), so a complementary folder rules its own digit out; images
    whose posterior is below ``self_train_confidence`` are left out. A teacher without clean labels
    makes a student without them.
    """
    _, probs = predict_probs(teacher_state, noisy.inputs(), cfg.train.eval_batch_size)
    T = np.asarray(COMPLEMENTARY_T if "complementary" in teacher.fits else
                   train_config(cfg, teacher, reading).label_transition or np.eye(K))
    posterior = probs * T[:, noisy.labels].T
    posterior /= np.maximum(posterior.sum(1, keepdims=True), 1e-12)
    keep = np.flatnonzero(posterior.max(1) >= cfg.self_train_confidence)
    return keep, posterior.argmax(1)[keep].astype(np.int32)
