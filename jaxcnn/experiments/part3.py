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

from jaxcnn.config import defaults_of, to_dict
from jaxcnn.data.classfolders import load_class_folders
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.data.mnist import CLASS_NAMES as DIGITS, load_mnist
from jaxcnn.data.noise import make_noisy_mnist, parse_corruption
from jaxcnn.errors import CheckpointError, DataError
from jaxcnn.evaluation.convergence import format_stat, summarise_history, summarise_predictions, threshold_key
from jaxcnn.evaluation.evaluate import predict_probs
from jaxcnn.evaluation.plots import (
    plot_confusion, plot_curves, plot_folder_samples, plot_step_curves, plot_transition,
)
from jaxcnn.evaluation.transitions import transition_error
from jaxcnn.experiments import part1
from jaxcnn.experiments.common import balanced_subset, load_mnist_split
from jaxcnn.experiments.part3_config import (
    COMPLEMENTARY_T, K, MADE_DIR, METHODS, REPLICA, TASK_SET, Method, Part3Config, fits, get_config, labels_for,
    method_of, teacher_of, train_config,
)
from jaxcnn.experiments.part3_diagnosis import (
    audit_images, compare_views, diagnose, free_diagnosis, free_posteriors, least_likely_accuracy, matched_view,
    renamed_accuracy, score_estimate,
)
from jaxcnn.processes import on_primary
from jaxcnn.rundir import claim
from jaxcnn.rundir import write_json
from jaxcnn.training.checkpoint import has_checkpoints, load_run
from jaxcnn.training.loop import fit
from jaxcnn.training.transfer import graft_init, pretrained_variables, transfer_record

__all__ = ["Part3Config", "get_config", "run", "summary_lines"]  # the part protocol (jaxcnn.experiments)

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
    ``WORKDIR/part1-quick``; without it, either is an error that says what to do.
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
    p1 = part1.get_config(quick=True)
    p1 = dataclasses.replace(p1, train=dataclasses.replace(p1.train, model=cfg.model))
    part1.run(p1, data_root, source, resume=resume, overwrite=overwrite, cache_dir=cache_dir)
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


# --- the experiment ---------------------------------------------------------------------------


def run(cfg: Part3Config, data_root: Path, workdir: Path, *, part1_run: Path | None = None,
        oracle_run: Path | None = None, resume=False, overwrite=False, cache_dir=None) -> dict:
    """Audits and diagnoses the corrupted folders (with and without the oracle), trains every model,
    scores them on clean MNIST test; writes diagnosis.json (the audit and the diagnosis, before any
    model trains), then results.json and the figures."""
    workdir = claim(workdir, "part3", to_dict(cfg), defaults=defaults_of(cfg), resume=resume,
                    overwrite=overwrite)
    flags = {"resume": resume, "overwrite": overwrite}
    source, origin = noisy_source(cfg, data_root, workdir, overwrite=overwrite)
    noisy = load_noisy(cfg, source, cache_dir)
    test = load_mnist_split(data_root, "test", cfg.test_size, cfg.draw_seed)
    logger.info("part 3: %d corrupted images from %s, clean MNIST test %d", len(noisy), source, len(test))
    audited = audit_images(source, noisy, test, data_root, cfg.reference_size, cfg.draw_seed + 1)
    logger.info("part 3: audit: %d near-duplicates of MNIST test images, %d inside the set, %d stray files",
                audited["duplicates_in_mnist_test"]["near"], audited["duplicates_inside"]["near"],
                audited["files"]["stray_files"]["count"])
    matched = matched_view(noisy.labels, noisy.images, load_mnist(data_root, "train"))
    logger.info("part 3: %s", matched_line(matched))

    variables, part1_source = part1_variables(cfg, part1_run, data_root, workdir, cache_dir=cache_dir, **flags)
    trunk_init = graft_init(variables)
    oracle, batch, oracle_source = clean_oracle(cfg, oracle_run, data_root, test, workdir, **flags)
    _, oracle_probs = predict_probs(oracle, noisy.inputs(), batch)
    _, oracle_test_probs = predict_probs(oracle, test.inputs(), batch)
    chosen, q = free_posteriors(cfg, noisy, workdir, flags)
    diagnoses = {"oracle": diagnose(noisy.labels, oracle_probs, cfg.min_confidence),
                 "oracle_free": free_diagnosis(noisy.labels[chosen], q)}
    diagnosis = {"kind": diagnoses["oracle"]["kind"], **diagnoses, **compare_views(*diagnoses.values()),
                 "matched": matched}
    if matched.get("transition"):
        diagnosis["oracle"]["vs_matched_T"] = transition_error(diagnoses["oracle"]["transition"], matched["transition"])
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
        logits, probs = predict_probs(state, test.inputs(), train_cfg.eval_batch_size)
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
        "data": {"source": str(source), "origin": origin,
                 **({"corruption": str(parse_corruption(cfg.corruption)), "seed": cfg.corruption_seed}
                    if origin == "replica" else {}),
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
    learning_curves.png, step_curves.png, test_loss_curves.png, test_ece_curves.png and confusion_<model>.png."""
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
    plot_curves(models, "val_ece", "clean MNIST test calibration error (ECE)", workdir / "test_ece_curves.png", labels)
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


def matched_line(matched: dict) -> str:
    """Where the images come from and how many sit in their own digit's folder (the matched view)."""
    own, spread = matched["own_folder"], matched["nearest_difference"]
    line = (f"matched view (MNIST's labels of each image's nearest {matched['pool']} image): "
            f"{matched['near_copies']} of {matched['images']} images are near copies (difference <= "
            f"{matched['near_threshold']}; median {spread['median']:.3f}, max {spread['max']:.3f}), of "
            f"{matched['distinct_nearest']} distinct images; {own['images']} ({own['share']:.2%}) sit in their own "
            f"digit's folder, per digit {own['per_digit']}")
    return line + (f"; {matched['kind']} ({matched['reason']})" if matched["kind"] else f"; no reading: {matched['reason']}")


def summary_lines(results: dict) -> list[str]:
    """The audit, both diagnoses, the clean-test table (mean ± 95% CI over seeds, last epoch) and the truth check."""
    data, diag, models, oracle = results["data"], results["diagnosis"], results["models"], results["oracle"]
    audited = results["audit"]
    made = (f"; made here: corruption {data['corruption']}, seed {data['seed']}" if data["origin"] == "replica" else "")
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
             matched_line(diag["matched"]),
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


def pseudo_labels(teacher_state, cfg: Part3Config, teacher: Method, noisy: ArrayDataset,
                  diagnosis: dict) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's labels for the training images: ``(indices kept, labels)``.

    The posterior given the image *and* its folder, P(y | x, folder) ∝ p(y | x) T[y, folder] with
    the T of the teacher's label model (the known complementary form for a complementary method,
    the forward-corrected T, else none), so a complementary folder rules its own digit out; images
    whose posterior is below ``self_train_confidence`` are left out. A teacher without clean labels
    makes a student without them.
    """
    _, probs = predict_probs(teacher_state, noisy.inputs(), cfg.train.eval_batch_size)
    T = np.asarray(COMPLEMENTARY_T if "complementary" in teacher.fits else
                   train_config(cfg, teacher, diagnosis).label_transition or np.eye(K))
    posterior = probs * T[:, noisy.labels].T
    posterior /= np.maximum(posterior.sum(1, keepdims=True), 1e-12)
    keep = np.flatnonzero(posterior.max(1) >= cfg.self_train_confidence)
    return keep, posterior.argmax(1)[keep].astype(np.int32)
