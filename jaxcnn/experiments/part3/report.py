"""Part 3's report: its section (the set, its audit, the three views of its labels, the models
on clean MNIST test, each trunk model against its random start and what training changed inside
it, the figures with their captions) and its headline, read from a run's results alone."""

from __future__ import annotations

from pathlib import Path

from jaxcnn.document import Figure, Section, Table, Text, rate
from jaxcnn.experiments.common import drawn_figures, not_run, seeds_epochs
from jaxcnn.experiments.part3.figures import write_figures
from jaxcnn.experiments.part3.methods import METHODS, trunk_pairs
from jaxcnn.experiments.records import (
    best_of, final_accuracy_text, models_table, paired_table, point_text, transfer_reading,
)

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


def audit_table(audited: dict) -> Table:
    """What the images are, against clean MNIST, before any label is read."""
    files, pixels = audited["files"], audited["pixels"]
    inside, in_test = audited["duplicates_inside"], audited["duplicates_in_mnist_test"]
    rows = [["image files", f"{files['image_files']} ({', '.join(f'{k}: {v}' for k, v in files['formats'].items())} "
             f"of {files['header_sample']} read)"],
            ["JPEG quality (estimated)", ", ".join(f"{q} ({n} files)" for q, n in files["jpeg_quality_estimate"].items())
             or "not JPEG"],
            ["folder sizes", ", ".join(f"{k}: {v}" for k, v in files["folder_sizes"].items())],
            ["stray files skipped", f"{files['stray_files']['count']} ({files['stray_files']['mac']})"],
            ["mean intensity, set / MNIST test",
             f"{pixels['set']['mean_intensity']:.1f} / {pixels['mnist_test']['mean_intensity']:.1f}"],
            ["ink fraction, set / MNIST test", f"{pixels['set']['ink_fraction']:.4f} / {pixels['mnist_test']['ink_fraction']:.4f}"],
            ["duplicates inside the set (exact / near)", f"{inside['exact']} / {inside['near']}"],
            ["duplicates in the MNIST test set (exact / near)", f"{in_test['exact']} / {in_test['near']}"]]
    return Table(["what", "value"], rows, "The images against clean MNIST (no label read).")


def views_table(diag: dict, oracle_source: str, oracle_accuracy: float, truth: dict | None) -> Table:
    """The three views of the folders side by side: MNIST's own labels, the oracle's (a clean model
    from ``oracle_source``, of clean test accuracy ``oracle_accuracy``), the folders'; ``truth``:
    ``score_estimate``'s."""
    oracle, free, matched = diag["oracle"], diag["oracle_free"], diag["matched"]
    views = (matched, oracle, free)
    view = lambda key, fmt=str: [fmt(d[key]) if d.get(key) is not None else "n/a" for d in views]
    own = matched["own_folder"]
    rows = [["kind", *view("kind")], ["why", *view("reason")], ["mapping (digit -> folder)", *view("mapping")],
            ["noise rate", *view("noise_rate", rate)], ["peak mass", *view("peak_mass", rate)],
            ["hole mass", *view("hole_mass", rate)],
            ["images in their own digit's folder", f"{own['images']} ({rate(own['share'])}); per digit "
                                                   f"{', '.join(map(str, own['per_digit']))}", "", ""],
            ["rests on", f"each image's nearest {matched['pool']} image ({matched['near_copies']} of "
                         f"{matched['images']} near copies, {matched['distinct_nearest']} distinct): MNIST's labels",
             f"a clean model ({oracle_source}, clean test accuracy {rate(oracle_accuracy)}) names each digit",
             f"the folder model's {free['anchor']} folder names the digit (held-out folds)"]]
    if truth:
        rows.append(["planted (truth file, read after training)", f"{truth['planted_spec']} ({truth['planted_kind']})",
                     "", ""])
    return Table(["", "matched view (clean labels)", "oracle view", "oracle-free view"], rows,
                 f"What the folders hold. {diag['note'].capitalize()}.")


def diagnosis_findings(diagnosis: dict, audited: dict, truth: dict | None) -> str:
    """What the diagnosis found, in a sentence: the kind by each view, where the images come from,
    and the planted truth (read after training) where there is one."""
    found = f"{diagnosis['kind']}: {diagnosis['oracle']['reason']} (clean model's view)"
    free = diagnosis.get("oracle_free")
    if free:
        found += f"; from the folders alone: {free['kind']} ({diagnosis['note']})"
    matched = diagnosis.get("matched")
    if matched:
        leaked = audited["duplicates_in_mnist_test"]["near"]
        found += (f"; {matched['near_copies']} of {matched['images']} images are near copies of "
                  f"{matched['distinct_nearest']} distinct images of {matched['pool']}, {leaked} of MNIST test; "
                  f"by MNIST's labels {matched['own_folder']['images']} sit in their own digit's folder")
    if truth:
        found += f"; the truth file (read after training) planted {truth['planted_spec']} ({truth['planted_kind']})"
    return found


READINGS = {"renamed": "accuracy, outputs renamed by the estimate",
            "least_likely": "accuracy, least likely folder as the digit"}


def reading_rows(models: dict) -> list[list[str]]:
    """The rows of the models table for the readings any model has (``folder_model_readings``)."""
    return [[label, *(point_text(m[key]) if key in m else "n/a" for m in models.values())]
            for key, label in READINGS.items() if any(key in m for m in models.values())]


FIGURE_CAPTIONS = {
    "audit_samples.png": "Images of each folder, as they are.",
    "transition_estimate.png": "The oracle view: P(folder | digit), rows the clean oracle's digit, columns the folder.",
    "transition_free.png": "The oracle-free view: P(folder | anchor), rows the held-out folder model's anchor.",
    "folder_samples.png": "Images of each folder, titled with the clean oracle's digit.",
    "learning_curves.png": "Clean MNIST test accuracy per epoch (mean of seeds, min-max band).",
    "step_curves.png": "Clean MNIST test accuracy against optimiser steps, first-epoch probes included (log scale).",
    "test_loss_curves.png": "Clean MNIST test loss per epoch (mean of seeds, min-max band).",
    "test_ece_curves.png": "Clean MNIST test calibration error (ECE, 15 bins) per epoch (mean of seeds, min-max band).",
    "transfer_changes.png": "Per trunk layer: linear CKA of each trunk model's features with the part-1 trunk's and "
                            "with its scratch partner's (same seed), and its relative weight distance from the part-1 "
                            "trunk (mean of seeds).",
}
SAMPLE_FIGURES = ("audit_samples.png", "folder_samples.png")


def figures(results: dict, part_dir: Path, figure_dir: Path) -> list:
    """Part 3's figures: the run's image samples (from ``part_dir``, where it left them) and those
    ``write_figures`` draws from ``results`` into ``figure_dir``; a missing one is named."""
    missing = write_figures(results, figure_dir)
    captions = {**FIGURE_CAPTIONS, **{f"confusion_{name}.png": f"Confusion matrix of {name} on the clean MNIST "
                                      "test set (ensemble, rows normalised)." for name in results["models"]}}
    blocks = []
    for name, caption in captions.items():
        if name in SAMPLE_FIGURES:
            found = (Path(part_dir) / name).is_file()
            blocks += [Figure(Path(part_dir) / name, caption)] if found else [Text(
                f"Figure `{name}` ({caption.rstrip('.')}) is missing: it is drawn from the images at run time, "
                "and the run's folder does not hold it.")]
        else:
            blocks += drawn_figures(figure_dir, {name: caption}, missing, trained_text(results["config"]))
    return blocks


def trained_text(cfg: dict) -> str:
    """What part 3's models trained, from its saved config: the methods, the students, the baselines
    ("" where the config does not say)."""
    if "train" not in cfg:
        return ""
    train = cfg["train"]
    return (f"methods: {seeds_epochs(train)}; self-training students: {seeds_epochs(train, cfg.get('self_train_epochs', 0))}; "
            f"folder-label baselines: {seeds_epochs(train, cfg.get('baseline_epochs', 0))}")
