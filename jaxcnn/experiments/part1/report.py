"""Part 1's report: the expected accuracy first, the folds of the ``cv`` run (fold by fold, writers,
confusions, case pairs, other scorings), how the final model trained, and the ablation's table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxcnn.data.chars74k import CLASS_NAMES
from jaxcnn.document import Figure, Section, Table, Text, rate, seconds, stat_text
from jaxcnn.evaluation.plots import plot_learning_curves
from jaxcnn.experiments.common import not_run, part_figures
from jaxcnn.experiments.part1.folds import estimate, folds_protocol

TITLE = "Part 1: characters from scratch"
PROTOCOLS = {"class": "class-stratified folds, as the task's test", "writer": "writer folds"}
SHOWN_GROUPS = 10  # confusable groups shown, most confused first
LEAD = f"**Part 1, {len(CLASS_NAMES)} characters**"  # the glance's line


def sections(results: dict | None, part_dir: Path, cv: dict | None = None, ablation: dict | None = None,
             figure_dir: Path | None = None, evaluations: dict[str, float] | None = None) -> list[Section]:
    """Part 1's report, the answer first: the expected accuracy, the test score of each evaluation
    (``evaluations``: data set name -> accuracy), the folds of the ``cv`` run (case pairs, errors
    every member made), then how the final model trained (its learning curves drawn into
    ``figure_dir``), every 10th epoch, and the ``ablation``'s table."""
    if results is None:
        return [Section(TITLE, [not_run("part1")]), folds_section(cv), ablation_section(ablation)]
    train = results["config"]["train"]
    scores = [Text("Test score: " + "; ".join(f"{rate(accuracy)} on `{name}`" for name, accuracy in evaluations.items())
                   + " (the evaluations below).")] if evaluations else []
    overview = Text(
        f"The final model learns from all {results['num_train']} training images ({len(results['writers'])} writers; "
        f"none held out, so its last epoch is kept): {len(train['seeds'])} seeds {train['seeds']} trained side "
        f"by side and ensembled; {train['epochs']} epochs of batch {train['batch_size']}, peak learning rate "
        f"{train['learning_rate']}, model widths {train['model']['widths']} and hidden "
        f"{train['model']['hidden']}; training took {seconds(results['train_seconds'])} s.")
    figures = [*([learning_curve_figure(results["history"], figure_dir / "part1_learning_curves.png")]
                 if figure_dir else []), *part_figures(part_dir, {})]
    return [Section(TITLE, [expected_text(results["expected_new_writers"]), *scores]), folds_section(cv),
            Section("Part 1: the final model", [overview, *figures, history_table(results["history"])], 3),
            ablation_section(ablation)]


def history_table(history: list[dict], every: int = 10) -> Table:
    """Every ``every``-th epoch and the last, per-seed figures averaged over the seeds (validation
    columns if validated); the other epochs are in metrics.jsonl and TensorBoard."""
    keys = [k for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy") if k in history[0]]
    ensemble = "val_accuracy_ensemble" in history[0]
    shown = [r for r in history if r["epoch"] % every == 0 or r is history[-1]]
    rows = [[str(r["epoch"]), *(rate(np.mean(r[k])) for k in keys),
             *([rate(r["val_accuracy_ensemble"])] if ensemble else []), seconds(r["seconds"])] for r in shown]
    return Table(["epoch", *(k.replace("_", " ") for k in keys),
                  *(["val accuracy (ensemble)"] if ensemble else []), "seconds"], rows,
                 f"Every {every}th epoch and the last, mean over seeds; train figures are running means over the "
                 "augmented batches; every epoch is in the run's metrics.jsonl and TensorBoard.")


def learning_curve_figure(history: list[dict], path: Path) -> Figure:
    plot_learning_curves(history, path)
    return Figure(path, "Part 1 learning curves of the final model (augmented training batches; no writer held out).")


def fold_estimate(results: dict, cv: dict | None) -> dict | None:
    """Part 1's fold estimate: the one its results carry (a cv run of the same recipe), else the
    ``cv`` run's, else None."""
    if results.get("expected_new_writers"):
        return {"folds_by": "writer", **results["expected_new_writers"]}  # writer: before class folds
    return estimate(cv, "the study's cv run") if cv else None


def headline(results: dict | None, cv: dict | None = None, evaluations: dict[str, float] | None = None) -> str:
    """Part 1's answer in a sentence: the expected accuracy (folds) and any scored evaluation
    (``evaluations``: data set name -> accuracy)."""
    if results is None:
        return f"{LEAD}: not run yet"
    expected = fold_estimate(results, cv)
    answers = [estimate_line(expected)] if expected else []
    answers += [f"{rate(accuracy)} on `{name}`" for name, accuracy in (evaluations or {}).items()]
    return f"{LEAD}: {'; '.join(answers) or 'no score recorded'}"


def expected_text(expected: dict | None) -> Text:
    if expected is None:
        return Text("Expected accuracy: not measured for this recipe (run `python -m jaxcnn cv`).")
    return Text(f"Expected accuracy ({PROTOCOLS[expected.get('folds_by', 'writer')]}, `{expected['source']}`): "
                f"{stat_text(expected['accuracy'])} case-sensitive, {stat_text(expected['accuracy_casefold'])} "
                f"case-folded, {stat_text(expected['top3_accuracy'])} top-3 (fold mean ± 95% CI).")


def estimate_line(expected: dict) -> str:
    """An ``estimate`` in a few words, for the report's glance."""
    count = f"{expected['folds']} " if "folds" in expected else ""
    folded = f", {stat_text(expected['accuracy_casefold'])} case-folded" if "accuracy_casefold" in expected else ""
    return f"{stat_text(expected['accuracy'])}{folded} expected ({count}{PROTOCOLS[expected['folds_by']]})"


def folds_section(cv: dict | None) -> Section:
    """The ``cv`` run's results: the expected accuracy fold by fold, writers, confusions."""
    return Section("Part 1: folds", cv_blocks(cv["cv"], folds_protocol(cv["config"])) if cv else [
        Text("Not run yet: run `python -m jaxcnn cv` (the recipe under class-stratified folds, as the task's "
             "test: the expected accuracy).")], 3)


def ablation_section(ablation: dict | None) -> Section:
    return Section("Part 1: ablation", [ablation_table(ablation)] if ablation else [
        Text("Not run yet: run `python -m jaxcnn ablate` (each variant changes one choice of part 1, "
             "judged by the folds).")], 3)


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
                    for g in cv["confusable_groups"] if g["confused"]][:SHOWN_GROUPS],
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


def ablation_table(ablation: dict) -> Table:
    """One row per variant; the paired differences read "n/a" where no default was trained beside it."""
    paired = lambda row, key: stat_text(row[key]) if key in row else "n/a"
    rows = [[name, ", ".join(f"`{c}`" for c in row["changes"]) or "(none)", stat_text(row["accuracy"]),
             stat_text(row["accuracy_casefold"]), paired(row, "vs_default"), paired(row, "vs_default_per_fold"),
             f"{row['folds']} / {row['epochs']} / {row['seeds']}", seconds(row["train_seconds"])]
            for name, row in ablation["variants"].items()]
    folds_by = folds_protocol(ablation["config"])
    return Table(["variant", "changes", "accuracy", "case-folded", "vs default (per writer)",
                  "vs default (per fold)", "folds / epochs / seeds", "train seconds"], rows,
                 f"{folds_by.capitalize()} folds, last epoch: fold mean ± 95% CI; the difference to the default is "
                 "paired per writer and per fold (mean ± 95% CI). Evaluation-only variants reuse the default's "
                 "fold models.")
