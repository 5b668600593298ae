"""The report's first section: each part's answer in a sentence, with links to its details."""

from __future__ import annotations

from pathlib import Path

from jaxcnn.experiments import PARTS, STUDY_RUNS
from jaxcnn.experiments.part1 import PROTOCOLS, folds_protocol
from jaxcnn.report.document import Bullets, Section, evaluation_files, paired_text, rate, read_json, stat_text
from jaxcnn.report.render import anchor


GLANCE_TITLE = "Results at a glance"


def glance_section(workdir: Path) -> Section:
    """The three answers first, each read from its part's results and linked to its section."""
    parts = {part: read_json(workdir / part / "results.json") for part in PARTS}
    return Section(GLANCE_TITLE, [Bullets([
        part1_glance(parts["part1"], workdir),
        part2_glance(parts["part2"]),
        part3_glance(parts["part3"]),
    ])])


def see(title: str) -> str:
    return f"([details](#{anchor(title)}))"


def fold_estimate(results: dict, workdir: Path) -> dict | None:
    """Part 1's writer-fold estimate, wherever this version of part 1 keeps it (``cv`` or
    ``expected_new_writers`` in its results, or the study's cv run), else None."""
    cv_run = read_json(workdir / STUDY_RUNS["cv"] / "results.json") or {}
    found = results.get("cv") or results.get("expected_new_writers") or cv_run.get("cv")
    if isinstance(found, dict) and "accuracy" in found:
        return {"folds_by": folds_protocol(cv_run.get("config", {})), **found}
    return None


def figure_of(value) -> str:
    """A summary (``mean ± ci``) or a plain rate."""
    return stat_text(value) if isinstance(value, dict) else rate(value)


def part1_glance(results: dict | None, workdir: Path) -> str:
    title = "Part 1: characters from scratch"
    if results is None:
        return f"**Part 1, 62 characters**: not run yet {see(title)}."
    answers = []
    cv = fold_estimate(results, workdir)
    if cv:
        folds = cv.get("folds")
        count = f"{len(folds)} " if isinstance(folds, list) else ""
        folded = f", {figure_of(cv['accuracy_casefold'])} case-folded" if "accuracy_casefold" in cv else ""
        answers.append(f"{figure_of(cv['accuracy'])}{folded} expected ({count}{PROTOCOLS[cv['folds_by']]})")
    for path in evaluation_files(workdir):
        if path.parent.name == "part1" or path.parent.parent.name == "part1":
            answers.append(f"{rate(read_json(path)['accuracy'])} on `{path.stem.removeprefix('eval_')}`")
    return f"**Part 1, 62 characters**: {'; '.join(answers) or 'no score recorded'} {see(title)}."


def part2_glance(results: dict | None) -> str:
    title = "Part 2: transfer to MNIST"
    head = "**Part 2, does A's trunk help on MNIST (C) against scratch (B)?**"
    models = (results or {}).get("models", {})
    if "B" not in models or "C" not in models:
        return f"{head} not run yet {see(title)}."
    b, c = models["B"], models["C"]
    answers = [f"final test accuracy C {stat_text(c['final_test_accuracy'])} vs B "
               f"{stat_text(b['final_test_accuracy'])}, C - B paired over seeds "
               f"{paired_text(c['final_test_accuracy'], b['final_test_accuracy'])}",
               f"test NLL C - B {paired_text(c['final_test_nll'], b['final_test_nll'], lower_is_better=True)}"]
    for key in sorted((k for k in b if k.startswith("steps_to_") and k in c),
                      key=lambda k: float(k.removeprefix("steps_to_"))):
        answers.append(f"steps to {key.removeprefix('steps_to_')}%: C {stat_text(c[key], '{:.0f}')} vs "
                       f"B {stat_text(b[key], '{:.0f}')}, C - B {paired_text(c[key], b[key], '{:.0f}', True)}")
    sizes = results.get("data_size", {})
    common = sorted(set(sizes.get("B", {})) & set(sizes.get("C", {})), key=int)
    shown = [f"{n}: {paired_text(sizes['C'][n]['final_test_accuracy'], sizes['B'][n]['final_test_accuracy'])}"
             for n in common]
    if shown:
        answers.append("C - B by training images, paired over seeds, " + ", ".join(shown))
    return f"{head} {'; '.join(answers)} {see(title)}."


def part3_glance(results: dict | None) -> str:
    title = "Part 3: label-corrupted MNIST"
    head = "**Part 3, what is wrong with the corrupted set?**"
    if results is None:
        return f"{head} not run yet {see(title)}."
    diagnosis, data = results["diagnosis"], results["data"]
    found = f"{ORIGINS[data['origin']]}, {diagnosis['kind']}: {diagnosis['oracle']['reason']} (clean model's view)"
    free = diagnosis.get("oracle_free")
    if free:
        found += f"; from the folders alone: {free['kind']} ({diagnosis['note']})"
    matched = diagnosis.get("matched")
    if matched:
        leaked = results["audit"]["duplicates_in_mnist_test"]["near"]
        found += (f"; {matched['near_copies']} of {matched['images']} images are near copies of "
                  f"{matched['distinct_nearest']} distinct images of {matched['pool']}, {leaked} of MNIST test; "
                  f"by MNIST's labels {matched['own_folder']['images']} sit in their own digit's folder")
    truth = results.get("truth_check")
    if truth:
        found += f"; the truth file (read after training) planted {truth['planted_spec']} ({truth['planted_kind']})"
    answers = [found]
    for clean, what in ((False, "without clean labels"), (True, "with the clean oracle's labels")):
        best = best_model(results["models"], clean)
        if best:
            answers.append(f"best recovery {what}: {best[0]}, {stat_text(best[1]['final_test_accuracy'])} "
                           "on clean MNIST test")
    return f"{head} {'; '.join(answers)} {see(title)}."


ORIGINS = {"task": "the task's own set", "replica": "a replica made here", "given": "a set given with --data"}


def best_model(models: dict, clean: bool) -> tuple[str, dict] | None:
    """The model with the highest mean final test accuracy among those that do (or do not) use clean labels."""
    chosen = [(name, m) for name, m in models.items() if m["uses_clean_labels"] == clean
              and m["final_test_accuracy"].get("mean") is not None]
    return max(chosen, key=lambda item: item[1]["final_test_accuracy"]["mean"], default=None)
