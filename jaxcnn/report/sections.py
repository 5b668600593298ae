"""The report's sections, built from the results files alone: the task, the design choices (from
``docs/``), each part's tables and figures, the evaluations, the environment and the bibliography."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from jaxcnn.errors import JaxcnnError
from jaxcnn.evaluation.plots import plot_learning_curves
from jaxcnn.experiments import PARTS, STUDY_RUNS
from jaxcnn.experiments.part1 import PROTOCOLS, folds_protocol
from jaxcnn.experiments.part3_config import TRUNK
from jaxcnn.report.document import (
    RATE, SECONDS, Bullets, Figure, Section, Table, Text, evaluation_files, paired_text, rate, read_json, seconds,
    stat_text,
)
from jaxcnn.report.glance import ORIGINS, glance_section


DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"
WEAKEST_CLASSES = 10


# Each part's figures, in the order shown, with their captions; other PNGs follow, named by file.
FIGURE_CAPTIONS = {
    "part2": {
        "learning_curves.png": "MNIST test accuracy per epoch (mean of seeds, min-max band).",
        "step_curves.png": "MNIST test accuracy against optimiser steps, first-epoch probes included (log scale).",
        "test_loss_curves.png": "MNIST test loss per epoch (mean of seeds, min-max band).",
        "test_ece_curves.png": "MNIST test calibration error (ECE, 15 bins) per epoch (mean of seeds, min-max band).",
        "data_size_curve.png": "Final MNIST test accuracy against training-set size (mean ± 95% CI over seeds).",
        "confusion_B.png": "Confusion matrix of B (scratch) on the MNIST test set (ensemble, rows normalised).",
        "confusion_C.png": "Confusion matrix of C (A's trunk, fine-tuned) on the MNIST test set (ensemble, rows normalised).",
    },
    "part3": {
        "audit_samples.png": "Images of each folder, as they are.",
        "transition_estimate.png": "The oracle view: P(folder | digit), rows the clean oracle's digit, columns the folder.",
        "transition_free.png": "The oracle-free view: P(folder | anchor), rows the held-out folder model's anchor.",
        "folder_samples.png": "Images of each folder, titled with the clean oracle's digit.",
        "learning_curves.png": "Clean MNIST test accuracy per epoch (mean of seeds, min-max band).",
        "step_curves.png": "Clean MNIST test accuracy against optimiser steps, first-epoch probes included (log scale).",
        "test_loss_curves.png": "Clean MNIST test loss per epoch (mean of seeds, min-max band).",
        "test_ece_curves.png": "Clean MNIST test calibration error (ECE, 15 bins) per epoch (mean of seeds, min-max band).",
    },
}


def not_run(part: str) -> Text:
    return Text(f"Not run yet: run `python experiments/{part}.py` (or `python -m jaxcnn study` for the whole study).")


def part_figures(part_dir: Path, part: str) -> list[Figure]:
    """The PNGs a part wrote in its work directory (evaluation figures excepted), known ones first."""
    known = FIGURE_CAPTIONS.get(part, {})
    paths = sorted((p for p in part_dir.glob("*.png") if not p.name.startswith("eval_")),
                   key=lambda p: (list(known).index(p.name) if p.name in known else len(known), p.name))
    return [Figure(p, known.get(p.name) or figure_caption(p)) for p in paths]


def figure_caption(path: Path) -> str:
    if path.stem.startswith("confusion_"):
        return f"Confusion matrix of {path.stem.removeprefix('confusion_')} (ensemble, rows normalised)."
    return path.stem.replace("_", " ").capitalize() + "."


def task_section() -> Section:
    return Section("The task", [
        Text("A reproducible transfer-learning study on handwritten characters in JAX/Flax, in three parts:"),
        Bullets(list(PARTS.values())),
        Text("Every number below is read from the results files the parts wrote; "
             "`python -m jaxcnn report` rebuilds this page without training anything."),
    ])


def design_section(docs_dir: Path, out_dir: Path) -> Section:
    """Links each part's design document and lists what it covers."""
    blocks = []
    for part in PARTS:
        doc = docs_dir / f"{part}.md"
        if not doc.is_file():
            blocks.append(Text(f"{part}: no design document yet (`docs/{part}.md`)."))
            continue
        lines = doc.read_text().splitlines()
        title = next((line.lstrip("# ") for line in lines if line.startswith("# ")), part)
        headings = [line[3:] for line in lines if line.startswith("## ") and not is_bibliography(line[3:])]
        blocks.append(Text(f"[{title}]({os.path.relpath(doc, out_dir)}) covers:"))
        blocks.append(Bullets(headings))
    return Section("Design choices", blocks)


def part1_sections(part_dir: Path, cv_dir: Path, ablation_dir: Path, figure_dir: Path) -> list[Section]:
    results = read_json(part_dir / "results.json")
    cv = read_json(cv_dir / "results.json")
    title = "Part 1: characters from scratch"
    sections = [Section(title, [not_run("part1")])]
    if results is not None:
        train = results["config"]["train"]
        overview = Text(
            f"The final model learns from all {results['num_train']} training images ({len(results['writers'])} writers; "
            f"none held out, so its last epoch is kept): {len(train['seeds'])} seeds {train['seeds']} trained side "
            f"by side and ensembled; {train['epochs']} epochs of batch {train['batch_size']}, peak learning rate "
            f"{train['learning_rate']}, model widths {train['model']['widths']} and hidden "
            f"{train['model']['hidden']}; training took {seconds(results['train_seconds'])} s.")
        figures = [learning_curve_figure(results["history"], figure_dir / "part1_learning_curves.png"),
                   *part_figures(part_dir, "part1")]
        sections = [Section(title, [overview, expected_text(results["expected_new_writers"]), *figures]),
                    Section("Part 1: per epoch", [history_table(results["history"])], 3)]
    sections.append(Section("Part 1: folds", cv_blocks(cv["cv"], folds_protocol(cv["config"])) if cv else [
        Text("Not run yet: run `python -m jaxcnn cv` (the recipe under class-stratified folds, as the task's "
             "test: the expected accuracy).")], 3))
    ablation = read_json(ablation_dir / "ablation.json")
    sections.append(Section("Part 1: ablation", [ablation_table(ablation)] if ablation else [
        Text("Not run yet: run `python -m jaxcnn ablate` (each variant changes one choice of part 1, "
             "judged by the folds).")], 3))
    return sections


def expected_text(expected: dict | None) -> Text:
    if expected is None:
        return Text("Expected accuracy: not measured for this recipe (run `python -m jaxcnn cv`).")
    return Text(f"Expected accuracy ({PROTOCOLS[expected.get('folds_by', 'writer')]}, `{expected['source']}`): "
                f"{stat_text(expected['accuracy'])} case-sensitive, {stat_text(expected['accuracy_casefold'])} "
                f"case-folded, {stat_text(expected['top3_accuracy'])} top-3 (fold mean ± 95% CI).")


def cv_blocks(cv: dict, protocol: str) -> list:
    """The fold estimate: a row per fold and the mean, the writers' spread, the confusable groups."""
    rows = [[f.get("held_out") or "writers " + "-".join(map(str, (f["writers"][0], f["writers"][-1]))), str(f["n"]),
             str(f["epoch"]), rate(f["accuracy"]), rate(f["accuracy_casefold"]), rate(f["top3_accuracy"])]
            for f in cv["folds"]]
    rows.append(["mean ± 95% CI", "", "", stat_text(cv["accuracy"]), stat_text(cv["accuracy_casefold"]),
                 stat_text(cv["top3_accuracy"])])
    folds = Table(["held out", "images", "epoch", "accuracy", "case-folded", "top-3"], rows,
                  f"Protocol: {PROTOCOLS[protocol]}. Each fold's model (last epoch) on the images it never saw; "
                  "Student-t interval over folds.")
    w = cv["writer_accuracy_spread"]
    wrong = cv.get("wrong_for_every_member") or {"members": 0}
    unanimous = (f" Images that every one of the {wrong['members']} members got wrong: {wrong['n']} "
                 f"({rate(wrong['share'])}); even a member chosen by hand for each image would score at most "
                 f"{rate(1 - wrong['share'])}. More seeds cannot vote these errors away.") if wrong["members"] > 1 else ""
    writers = Text(f"Accuracy per writer ({w['n']} writers, each scored by the fold model that never saw it): "
                   f"mean {rate(w['mean'])}, standard deviation {rate(w['std'])}, from {rate(w['min'])} "
                   f"to {rate(w['max'])}.{unanimous}")
    groups = Table(["group", "images", "taken for another member", "rate", "which way"],
                   [[f"`{g['group']}`", str(g["n"]), str(g["confused"]), rate(g["rate"]),
                     ", ".join(f"`{k}` x{v}" for k, v in g["pairs"].items())]
                    for g in cv["confusable_groups"] if g["confused"]][:WEAKEST_CLASSES],
                   "Confusions inside case pairs and look-alike groups, all folds pooled.")
    scorings = Table(["scored as", "accuracy", "case-folded", "top-3", "vs the recipe (per writer)"],
                     [[name.replace("_", " "), stat_text(row["accuracy"]), stat_text(row["accuracy_casefold"]),
                       stat_text(row["top3_accuracy"]), stat_text(row["vs_recipe"])]
                      for name, row in cv.get("scorings", {}).items()],
                     "The same fold models scored other ways (no training): ensembles of fewer seeds, and "
                     "test-time augmentation; the difference is paired per writer.")
    pairs = Table(["case pair", "images", "taken for the other case", "resolved", "page geometry alone"],
                  [[f"`{pair}`", str(row["n"]), str(row["crossed"]), rate(row["resolved"]),
                    rate(row.get("resolved_by_geometry_alone"))]
                   for pair, row in cv.get("case_pairs", {}).items() if row["n"]],
                  "Case pairs that differ mostly by size: the share of their images given the right case, "
                  "by the model and by a linear discriminant on the page geometry alone (the same folds).")
    return [folds, writers, groups, *([pairs] if cv.get("case_pairs") else []),
            *([scorings] if cv.get("scorings") else [])]


def validation_table(report: dict, seeds, what: str) -> Table:
    """The headline figures of an ``evaluate_run`` report: ensemble, then each seed."""
    rows = [["images", str(report["n"])],
            ["ensemble accuracy", rate(report["accuracy"])],
            ["ensemble accuracy, case-folded", rate(report["accuracy_casefold"])],
            ["ensemble NLL", rate(report["nll"])],
            ["ensemble ECE", rate(report["ece"])]]
    rows += [[f"seed {seed} accuracy", rate(a)] for seed, a in zip(seeds, report["members_accuracy"])]
    epoch = f", checkpoint of epoch {report['epoch']}" if "epoch" in report else ""
    return Table(["metric", "value"], rows, f"Scores on the {what}{epoch}.")


def history_table(history: list[dict]) -> Table:
    """One row per epoch, per-seed figures averaged over the seeds (validation columns if validated)."""
    keys = [k for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy") if k in history[0]]
    ensemble = "val_accuracy_ensemble" in history[0]
    rows = [[str(r["epoch"]), *(rate(np.mean(r[k])) for k in keys),
             *([rate(r["val_accuracy_ensemble"])] if ensemble else []), seconds(r["seconds"])] for r in history]
    return Table(["epoch", *(k.replace("_", " ") for k in keys),
                  *(["val accuracy (ensemble)"] if ensemble else []), "seconds"], rows,
                 "Mean over seeds; train figures are running means over the augmented batches.")


def weakest_classes_table(report: dict) -> Table:
    worst = sorted(report["per_class_accuracy"].items(), key=lambda kv: kv[1])[:WEAKEST_CLASSES]
    rows = [[f"`{name}`", rate(acc), rate(report["per_class_f1"][name])] for name, acc in worst]
    return Table(["class", "accuracy", "F1"], rows, f"The {len(rows)} classes with the lowest accuracy (ensemble).")


def confused_table(report: dict) -> Table:
    rows = [[f"`{p['true']}`", f"`{p['predicted']}`", str(p["count"])] for p in report["most_confused"]]
    return Table(["true", "predicted", "count"], rows, "The most frequent confusions (ensemble).")


def ablation_table(ablation: dict) -> Table:
    """One row per variant; the paired differences read "n/a" where no default was trained beside it."""
    paired = lambda row, key: stat_text(row[key]) if key in row else "n/a"
    rows = [[name, ", ".join(f"`{c}`" for c in row["changes"]) or "(none)", stat_text(row["accuracy"]),
             stat_text(row["accuracy_casefold"]), paired(row, "vs_default"), paired(row, "vs_default_per_fold"),
             f"{row['folds']} / {row['epochs']} / {row['seeds']}", seconds(row["train_seconds"])]
            for name, row in ablation["variants"].items()]
    folds_by = ablation["config"].get("folds_by", "writer")
    return Table(["variant", "changes", "accuracy", "case-folded", "vs default (per writer)",
                  "vs default (per fold)", "folds / epochs / seeds", "train seconds"], rows,
                 f"{folds_by.capitalize()} folds, last epoch: fold mean ± 95% CI; the difference to the default is "
                 "paired per writer and per fold (mean ± 95% CI). Evaluation-only variants reuse the default's "
                 "fold models.")


def learning_curve_figure(history: list[dict], path: Path) -> Figure:
    plot_learning_curves(history, path)
    return Figure(path, "Part 1 learning curves of the final model (augmented training batches; no writer held out).")


MODEL_ROWS = [("first-epoch test accuracy", "first_epoch_test_accuracy", RATE),
              ("final test accuracy", "final_test_accuracy", RATE),
              ("final test NLL", "final_test_nll", RATE),
              ("final test ECE", "final_test_ece", RATE),
              ("train - test accuracy", "train_test_gap", RATE)]


def models_table(models: dict, thresholds, caption: str) -> Table:
    """Models side by side (parts 2 and 3 summarise each the same way): mean ± 95% CI over seeds."""
    keys = [f"{100 * t:g}" for t in thresholds]
    formats = {"epochs": SECONDS, "steps": "{:.0f}", "seconds": SECONDS}
    rows = [MODEL_ROWS[0],
            *((f"{what} to {key}%", f"{what}_to_{key}", fmt) for key in keys for what, fmt in formats.items()),
            *MODEL_ROWS[1:]]
    table = [[label, *(stat_text(m[key], fmt) for m in models.values())] for label, key, fmt in rows]
    table.append(["ensemble accuracy", *(rate(m["ensemble"]["accuracy"]) for m in models.values())])
    if any("renamed" in m for m in models.values()):
        table.append(["accuracy, outputs renamed by the estimate",
                      *(stat_text(m["renamed"]["final_test_accuracy"]) if "renamed" in m else "n/a"
                        for m in models.values())])
    table.append(["train seconds", *(seconds(m["train_seconds"]) for m in models.values())])
    return Table(["", *models], table, caption)


def paired_table(models: dict, thresholds, pairs: dict[str, str], caption: str) -> list[Table]:
    """Each model of ``pairs`` minus its partner (``{model: partner}``), seed by seed (the same seeds:
    the same data order and head initialisation), with what its 95% CI says; empty without pairs."""
    pairs = {a: b for a, b in pairs.items() if a in models and b in models}
    if not pairs:
        return []
    rows = [("first-epoch test accuracy", "first_epoch_test_accuracy", RATE, False),
            *((f"steps to {100 * t:g}%", f"steps_to_{100 * t:g}", "{:.0f}", True) for t in thresholds),
            ("final test accuracy", "final_test_accuracy", RATE, False), ("final test NLL", "final_test_nll", RATE, True),
            ("final test ECE", "final_test_ece", RATE, True)]
    table = [[label, *(paired_text(models[a][key], models[b][key], fmt, lower) for a, b in pairs.items())]
             for label, key, fmt, lower in rows]
    return [Table(["", *(f"{a} - {b}" for a, b in pairs.items())], table,
                  f"{caption}, paired over seeds (each seed's run minus its partner's of the same seed), mean ± "
                  "95% CI; 'no difference measured' where the interval holds 0.")]


def part2_sections(part_dir: Path) -> list[Section]:
    results = read_json(part_dir / "results.json")
    title = "Part 2: transfer to MNIST"
    if results is None:
        return [Section(title, [not_run("part2")])]
    data, models = results["data"], results["models"]
    a = results["A"]["validation"]
    overview = Text(
        f"A learns the ten digits of the part-1 data ({data['digits_train']} training, {data['digits_val']} "
        f"validation images{'' if a else ': every writer, last epoch'}); B (scratch), C (A's trunk, fine-tuned) "
        f"and C_frozen (A's trunk, frozen) learn "
        f"MNIST ({data['mnist_train']} training images) and are scored on the MNIST test set "
        f"({data['mnist_test']} images) at their last epoch.")
    table = models_table(models, results["config"]["thresholds"],
                         "MNIST test set, mean ± 95% CI over seeds (Student t), last epoch.")
    against_b = paired_table(models, results["config"]["thresholds"], {name: "B" for name in models if name != "B"},
                             "Each model against B")
    sizes = sorted({size for points in results["data_size"].values() for size in points}, key=int)
    curve = Table(["training images", *results["data_size"]],
                  [[size, *(stat_text(points[size]["final_test_accuracy"]) if size in points else "n/a"
                            for points in results["data_size"].values())] for size in sizes],
                  "Final MNIST test accuracy by training-set size, mean ± 95% CI over seeds.")
    return [Section(title, [overview, table, *against_b, *part_figures(part_dir, "part2")]),
            Section("Part 2: data size", [curve], 3),
            *([Section("Part 2: A, the digits model",
                       [validation_table(a, a.get("seeds", []), "validation writers' digits")], 3)] if a else [])]


def part3_sections(part_dir: Path) -> list[Section]:
    title = "Part 3: label-corrupted MNIST"
    results = read_json(part_dir / "results.json")
    if results is None:
        return [Section(title, [not_run("part3")])]
    data, diag, models, audited = results["data"], results["diagnosis"], results["models"], results["audit"]
    made = f", corruption `{data['corruption']}`, seed {data['seed']}" if data["origin"] == "replica" else ""
    overview = Text(f"{data['noisy_images']} images in class folders from `{data['source']}` "
                    f"({ORIGINS[data['origin']]}{made}); every model is "
                    f"scored on the clean MNIST test set ({data['mnist_test']} images) at its last epoch, and none "
                    "is selected on it.")
    files, pixels = audited["files"], audited["pixels"]
    audit_rows = [["image files", f"{files['image_files']} ({', '.join(f'{k}: {v}' for k, v in files['formats'].items())} "
                   f"of {files['header_sample']} read)"],
                  ["JPEG quality (estimated)", ", ".join(f"{q} ({n} files)" for q, n in files["jpeg_quality_estimate"].items())
                   or "not JPEG"],
                  ["folder sizes", ", ".join(f"{k}: {v}" for k, v in files["folder_sizes"].items())],
                  ["stray files skipped", f"{files['stray_files']['count']} ({files['stray_files']['mac']})"],
                  ["mean intensity, set / MNIST test", f"{pixels['set']['mean_intensity']:.1f} / "
                                                       f"{pixels['mnist_test']['mean_intensity']:.1f}"],
                  ["ink fraction, set / MNIST test", f"{pixels['set']['ink_fraction']:.4f} / "
                                                     f"{pixels['mnist_test']['ink_fraction']:.4f}"],
                  ["duplicates inside the set (exact / near)",
                   f"{audited['duplicates_inside']['exact']} / {audited['duplicates_inside']['near']}"],
                  ["duplicates in the MNIST test set (exact / near)",
                   f"{audited['duplicates_in_mnist_test']['exact']} / {audited['duplicates_in_mnist_test']['near']}"]]
    audit_table = Table(["what", "value"], audit_rows, "The images against clean MNIST (no label read).")
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
             f"a clean model ({results['oracle']['source']}, clean test accuracy "
             f"{rate(results['oracle']['test_accuracy'])}) names each digit",
             f"the folder model's {free['anchor']} folder names the digit (held-out folds)"]]
    truth = results.get("truth_check")
    if truth:
        rows.append(["planted (truth file, read after training)", f"{truth['planted_spec']} ({truth['planted_kind']})",
                     "", ""])
    diagnosis = Table(["", "matched view (clean labels)", "oracle view", "oracle-free view"], rows,
                      f"What the folders hold. {diag['note'].capitalize()}.")
    table = models_table(models, results["config"]["thresholds"],
                         "Clean MNIST test set, mean ± 95% CI over seeds (Student t), last epoch.")
    table.rows.insert(0, ["uses clean labels", *("yes" if m["uses_clean_labels"] else "no" for m in models.values())])
    if any("least_likely" in m for m in models.values()):
        table.rows.append(["accuracy, least likely folder as the digit",
                           *(stat_text(m["least_likely"]["final_test_accuracy"]) if "least_likely" in m else "n/a"
                             for m in models.values())])
    skipped = [Text(f"Not trained: {', '.join(f'`{n}` ({why})' for n, why in results['skipped'].items())}.")] \
        if results.get("skipped") else []
    trunk_pairs = {"pretrained": "scratch",
                   **{name: name.removesuffix(TRUNK) for name in models if name.endswith(TRUNK)}}
    against_scratch = paired_table(models, results["config"]["thresholds"], trunk_pairs,
                                   "The part-1 trunk against a random start, method by method")
    return [Section(title, [overview, audit_table, diagnosis, table, *against_scratch, *skipped,
                            *part_figures(part_dir, "part3")])]


def evaluation_sections(workdir: Path) -> list[Section]:
    title = "Hidden-test evaluation"
    files = evaluation_files(workdir)
    if not files:
        return [Section(title, [Text("No evaluation yet: run `python -m jaxcnn evaluate --ckpt ckpts/part1 "
                                     "--data DIR_OR_ZIP` once the held-out writers arrive.")])]
    sections = [Section(title, [Text(f"{len(files)} evaluation(s) by `python -m jaxcnn evaluate`, "
                                     "each of a saved run's ensemble.")])]
    for path in files:
        report = read_json(path)
        name = path.stem.removeprefix("eval_")
        blocks = [Text(f"`{path.relative_to(workdir)}`: the run in `{path.parent.relative_to(workdir)}` "
                       f"scored on `{name}`."),
                  validation_table(report, report.get("seeds", []), f"data set `{name}`"),
                  weakest_classes_table(report), confused_table(report)]
        if path.with_suffix(".png").is_file():
            blocks.append(Figure(path.with_suffix(".png"), f"Confusion matrix on `{name}` (rows normalised)."))
        sections.append(Section(f"{path.parent.relative_to(workdir).as_posix()} on {name}", blocks, 3))
    return sections


def environment_section(results: list[dict]) -> Section:
    """Versions and device: as recorded by a run if any recorded them, else this process's, labelled so."""
    recorded = next((r["environment"] for r in results if r and "environment" in r), None)
    if recorded:
        rows = [[key, str(value)] for key, value in recorded.items()]
        note = "As recorded by the training run."
    else:
        rows = [[key, str(value)] for key, value in environment().items()]
        note = ("The results files do not record their environment: these are of the process that wrote "
                "this report, which may differ from the one that trained.")
    return Section("Environment", [Text(note), Table(["what", "value"], rows)])


def environment() -> dict:
    """JAX, Flax and Python versions and the default device: what a run could record in its results."""
    import flax
    import jax
    device = jax.devices()[0]
    return {"jax": jax.__version__, "flax": flax.__version__, "backend": jax.default_backend(),
            "device_kind": device.device_kind, "device_count": jax.device_count(),
            "python": platform.python_version(), "platform": platform.platform()}


def is_bibliography(heading: str) -> bool:
    return heading.strip().lower() in ("bibliography", "references")


def bibliography(docs_dir: Path) -> list[str]:
    """The entries of every design document's Bibliography (or References) section, merged and sorted."""
    entries = []
    for doc in sorted(docs_dir.glob("*.md")):
        inside = False
        for line in doc.read_text().splitlines():
            if line.startswith("## "):
                inside = is_bibliography(line[3:])
            elif inside and line.startswith("- "):
                entries.append(line[2:].strip())
            elif inside and entries and line.startswith("  ") and line.strip():  # an entry's next line
                entries[-1] += " " + line.strip()
    return sorted(set(entries), key=str.casefold)


def readable(part_dir: Path, sections, *args):
    """``sections(part_dir, *args)``, with a one-line error when a results file lacks a field."""
    try:
        return sections(part_dir, *args)
    except KeyError as err:
        raise JaxcnnError(f"{part_dir}: a results file has no field {err} (written by another version? "
                          "run the part again)") from err


def build_sections(workdir: Path, out_dir: Path, docs_dir: Path = DOCS_DIR) -> list[Section]:
    """Every section, in order; writes the figures the report draws itself under ``out_dir/report``."""
    workdir, out_dir = Path(workdir), Path(out_dir)
    parts = [read_json(workdir / part / "results.json") for part in PARTS]
    return [readable(workdir, glance_section), task_section(), design_section(docs_dir, out_dir),
            *readable(workdir / "part1", part1_sections, workdir / STUDY_RUNS["cv"], workdir / STUDY_RUNS["ablation"],
                      out_dir / "report"),
            *readable(workdir / "part2", part2_sections), *readable(workdir / "part3", part3_sections),
            *evaluation_sections(workdir), environment_section(parts),
            Section("Bibliography", [Bullets(bibliography(docs_dir))] if docs_dir.is_dir()
                    else [Text("The design documents (`docs/`) are not installed here.")])]
