"""The report (from hand-made and real results), the study command, the progress bar and TensorBoard writer."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import re
import shutil
import struct
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxcnn import report, study
from jaxcnn.report import render, sections
from jaxcnn.cli import main
from jaxcnn.config import to_dict
from jaxcnn.errors import JaxcnnError
from jaxcnn.evaluation.convergence import stat as summary_of
from jaxcnn.experiments import PARTS, PROFILES, part2, part_module, profiles_of, records
from jaxcnn.experiments.part1.final import Part1Results
from jaxcnn.experiments.part1.folds import AblationResults, CvResults
from jaxcnn.experiments.part3.run import Part3Results
from jaxcnn.experiments.results import write_results
from jaxcnn.progress import MetricWriter, count_trained, epoch_scalars, format_duration, progress_bar, study_meter
from tests import browser

SECTIONS = ("## Results at a glance", "## The task", "## Design choices", "## Part 1: characters from scratch", "## Part 2: transfer to MNIST",
            "## Part 3: label-corrupted MNIST", "## Hidden-test evaluation", "## Environment", "## Bibliography")
CLASSES = ["0", "1", "a"]


# --- hand-made results ------------------------------------------------------------------------

def write_png(path, seed=0):
    """A small noisy PNG, so a blank render could not pass for it."""
    pixels = np.random.default_rng(seed).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def classification(accuracy, members, epoch=2):
    return {"n": 6, "accuracy": accuracy, "accuracy_casefold": accuracy + 0.1, "nll": 0.912345, "ece": 0.054321,
            "per_class_accuracy": {"0": 1.0, "1": 0.5, "a": 0.25}, "per_class_f1": {"0": 0.8, "1": 0.6, "a": 0.3},
            "most_confused": [{"true": "a", "predicted": "0", "count": 3}], "confusion": np.eye(3, dtype=int).tolist(),
            "members_accuracy": members, "checkpoint": "run", "epoch": epoch, "seeds": [0, 1]}


def history(epochs=2):
    return [{"epoch": e, "step": 10 * e, "seconds": 3.25 * e, "train_loss": [1.5 / e, 1.4 / e],
             "train_accuracy": [0.3 * e, 0.35 * e], "val_loss": [1.2 / e, 1.1 / e],
             "val_accuracy": [0.25 * e, 0.3 * e], "val_accuracy_ensemble": 0.3 * e} for e in range(1, epochs + 1)]


def stat(mean, ci=0.0123):
    return {"mean": mean, "ci95": ci, "n": 2, "values": [mean - 0.01, mean + 0.01]}


def part1_results():
    plain = [{k: v for k, v in r.items() if not k.startswith("val_")} for r in history()]  # nothing held out
    return Part1Results(
        config={"train": {"seeds": [0, 1], "epochs": 2, "batch_size": 64, "learning_rate": 0.002,
                          "model": {"widths": [8, 16, 32], "hidden": 32}}, "folds": 2},
        writers=list(range(1, 41)), num_train=2459, history=plain, epoch=2, train_seconds=9.75,
        expected_new_writers={"source": "ckpts/part1-cv/results.json", "accuracy": stat(0.654321),
                              "accuracy_casefold": stat(0.7), "top3_accuracy": stat(0.9)})


def cv_summary(accuracy):
    fold = lambda writers, a: {"writers": writers, "epoch": 2, "n": 1230, "accuracy": a, "accuracy_casefold": a + 0.05,
                               "top3_accuracy": a + 0.2, "members_accuracy": [a], "train_seconds": 5.0}
    return {"accuracy": stat(accuracy, 0.05), "accuracy_casefold": stat(accuracy + 0.05), "top3_accuracy": stat(0.9),
            "folds": [fold(list(range(1, 21)), accuracy - 0.01), fold(list(range(21, 41)), accuracy + 0.01)],
            "writer_accuracy_spread": {"min": 0.3125, "max": 0.875, "mean": accuracy, "std": 0.1, "n": 40},
            "confusable_groups": [{"group": "0Oo", "n": 120, "confused": 31, "rate": 0.2583, "pairs": {"o->0": 31}},
                                  {"group": "Xx", "n": 80, "confused": 0, "rate": 0.0, "pairs": {}}],
            "wrong_for_every_member": {"n": 123, "share": 0.05, "members": 3}, "train_seconds": 10.0}


def ablation_row(changes, accuracy, vs_default):
    return {"changes": changes, "accuracy": stat(accuracy, 0.03), "accuracy_casefold": stat(accuracy + 0.05),
            "vs_default": stat(vs_default, 0.02), "vs_default_per_fold": stat(vs_default + 0.01, 0.04), "folds": 2, "epochs": 5, "seeds": 1, "train_seconds": 10.0}


def part2_results():
    unreached = {"mean": None, "ci95": None, "n": 0, "values": [None, None]}
    model = {"history": history(), "first_epoch_test_accuracy": stat(0.5), "epochs_to_98": unreached,
             "seconds_to_98": unreached, "steps_to_98": unreached,
             "final_test_accuracy": stat(0.9712), "final_train_accuracy": stat(0.95), "train_test_gap": stat(-0.02),
             "final_test_nll": stat(0.11), "final_test_ece": stat(0.02), "train_seconds": 12.5,
             "ensemble": classification(0.9801, [0.97, 0.972])}
    curve = {"100": records.accuracy_point(stat(0.61), 0.62), "2000": records.accuracy_point(stat(0.9712), 0.98)}
    return part2.Part2Results(
        config={"thresholds": [0.98]}, data={"digits_train": 320, "digits_val": 80, "mnist_train": 2000, "mnist_test": 1000},
        A={"history": history(), "validation": classification(0.7125, [0.7, 0.69])},
        models={"B": model, "C": {**model, "final_test_accuracy": stat(0.9833)}}, data_size={"B": curve, "C": curve})


def part3_results():
    model = part2_results()["models"]["B"]
    view = {"kind": "complementary", "reason": "every digit is missing from one folder", "mapping": [0, 1, 2],
            "noise_rate": 0.0034, "peak_mass": 0.1234, "hole_mass": 0.0034}
    pixels = {"mean_intensity": 33.3, "ink_fraction": 0.1912}
    return Part3Results(
        config={"thresholds": [0.98]},
        data={"source": "ckpts/part3/noisy-mnist.zip", "origin": "replica", "corruption": "complementary",
              "seed": 0, "noisy_images": 3000, "mnist_test": 1000},
        part1_checkpoint={"checkpoint": "ckpts/part1", "epoch": 60, "member": 0},
        audit={"files": {"image_files": 3000, "formats": {"JPEG L 28x28": 500}, "header_sample": 500,
                         "jpeg_quality_estimate": {"75": 500}, "folder_sizes": {"0": 300, "1": 300},
                         "stray_files": {"count": 1, "mac": {"__MACOSX": 3000}}},
               "pixels": {"set": pixels, "mnist_test": pixels},
               "duplicates_inside": {"exact": 0, "near": 2}, "duplicates_in_mnist_test": {"exact": 0, "near": 0}},
        oracle={"source": "ckpts/part3/reference", "test_accuracy": 0.9456},
        diagnosis={"kind": "complementary", "oracle": {**view, "transition": (1 - np.eye(3)).tolist()}, "agree": True,
                   "note": "the two views agree",
                   "oracle_free": {**view, "anchor": "least likely", "noise_rate": 0.0456},
                   "matched": {**view, "noise_rate": 0.0011, "pool": "MNIST train (60000 images)",
                               "images": 3000, "near_copies": 2990, "distinct_nearest": 3000,
                               "own_folder": {"images": 3, "share": 0.001, "per_digit": [1, 2, 0]}}},
        models={"scratch": {**model, "uses_clean_labels": False, "method": "folder labels, cross-entropy",
                            "least_likely": records.accuracy_point(stat(0.9111), 0.92)},
                "oracle_relabel": {**model, "uses_clean_labels": True, "final_test_accuracy": stat(0.9622),
                                   "method": "the oracle's labels (upper bound)"},
                "pretrained": {**model, "uses_clean_labels": False, "final_test_accuracy": stat(0.9612),
                               "method": "folder labels, cross-entropy"}},
        skipped={"relabel": "the mapping is not a permutation"},
        truth_check={"planted_spec": "complementary", "planted_kind": "complementary"})


@pytest.fixture
def study_dir(tmp_path):
    """A work directory as a study leaves it: parts 1 and 2 done, an ablation, an evaluation; no part 3."""
    root = tmp_path / "ckpts"
    for part, results in (("part1", part1_results()), ("part2", part2_results())):
        (root / part).mkdir(parents=True)
        write_results(root / part / "results.json", results)
    write_png(root / "part1" / "confusion_val.png", 1)
    write_png(root / "part2" / "learning_curves.png", 2)
    (root / "part1-cv").mkdir()
    write_results(root / "part1-cv" / "results.json", CvResults(config={}, cv=cv_summary(0.64)))
    (root / "part1-ablation").mkdir()
    write_results(root / "part1-ablation" / "ablation.json", AblationResults(config={}, variants={
        "default": ablation_row([], 0.6543, 0.0),
        "no_augmentation": ablation_row(["train.augment.rotate_deg=0"], 0.5012, -0.1531)}))
    (root / "part1" / "eval_testPart1.json").write_text(json.dumps(classification(0.4321, [0.4, 0.41], epoch=7)))
    write_png(root / "part1" / "eval_testPart1.png", 3)
    return root


def table_value(markdown: str, label: str, column: int = 1) -> str:
    """The ``column``-th cell of the first table row whose first cell is ``label``."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            return cells[column]
    raise AssertionError(f"no table row {label!r}")


def section(markdown: str, heading: str) -> str:
    """The text from ``heading`` to the next heading of the same level."""
    start = markdown.index(f"\n{heading}\n")
    end = markdown.find("\n## ", start + len(heading) + 2)
    return markdown[start:] if end < 0 else markdown[start:end]


def test_report_from_handmade_results_shows_every_section_and_number(study_dir, tmp_path):
    markdown_path, html_path = report.write_report(study_dir, tmp_path / "out" / "REPORT.md")
    markdown = markdown_path.read_text()
    for heading in SECTIONS:
        assert f"\n{heading}\n" in markdown
    part1 = section(markdown, "## Part 1: characters from scratch")
    assert "learns from all 2459 training images (40 writers" in part1 and "training took 9.8 s" in part1
    assert "0.6543 ± 0.0123 case-sensitive, 0.7000 ± 0.0123 case-folded" in part1  # expected on new writers
    assert table_value(part1, "mean ± 95% CI", 3) == "0.6400 ± 0.0500"  # the writer folds
    assert table_value(part1, "writers 1-20", 3) == "0.6300"
    assert "from 0.3125 to 0.8750" in part1
    assert "every one of the 3 members got wrong: 123 (0.0500)" in part1 and "score at most 0.9500" in part1
    assert table_value(part1, "`0Oo`", 2) == "31" and "`Xx`" not in part1  # groups never confused are left out
    assert table_value(part1, "no_augmentation", 2) == "0.5012 ± 0.0300"
    assert table_value(part1, "no_augmentation", 4) == "-0.1531 ± 0.0200"
    assert table_value(part1, "no_augmentation", 5) == "-0.1431 ± 0.0400"  # paired per fold
    assert table_value(part1, "no_augmentation", 6) == "2 / 5 / 1"
    part2 = section(markdown, "## Part 2: transfer to MNIST")
    assert table_value(part2, "final test accuracy", 1) == "0.9712 ± 0.0123"
    assert table_value(part2, "final test accuracy", 2) == "0.9833 ± 0.0123"
    assert table_value(part2, "ensemble accuracy", 1) == "0.9801"
    assert table_value(markdown, "epochs to 98%", 1) == "not reached"
    assert "checkpoint of epoch 7" in markdown and "0.4321" in markdown
    assert "Not run yet: run `python experiments/part3.py`" in markdown
    assert "Kingma, Ba (2015)" in markdown  # from docs/part1.md's bibliography

    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    # drawn by the report from the results: part 1's learning curves, part 2's curves, data-size curve and
    # confusions, the evaluation's confusion; and the confusion part 1's run left in its folder
    assert len(figures) == 9 and "part1/confusion_val.png" in " ".join(figures)
    assert all((markdown_path.parent / f).is_file() for f in figures)
    assert "Figure `test_ece_curves.png` (MNIST test calibration error" in markdown  # no val_ece in the histories
    assert "Figure `transfer_changes.png` (Per trunk layer" in markdown and "is missing: this run did not" in markdown
    page = html_path.read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == len(figures) and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "0.9712 ± 0.0123" in page


def test_report_pairs_each_transferred_model_with_b_seed_by_seed(study_dir):
    part2 = section(report.write_report(study_dir)[0].read_text(), "## Part 2: transfer to MNIST")
    assert "| | C - B |" in part2.replace("|  |", "| |") and "| final test accuracy | +0.0121 ± 0.0000 (better) |" in part2
    assert "| final test NLL | +0.0000 ± 0.0000 (no difference measured) |" in part2
    assert "| steps to 98% | not reached |" in part2


def test_report_shows_part3_diagnosis_and_models(study_dir, tmp_path):
    (study_dir / "part3").mkdir()
    write_results(study_dir / "part3" / "results.json", part3_results())
    write_png(study_dir / "part3" / "transition_estimate.png", 4)
    markdown = report.write_report(study_dir, tmp_path / "REPORT.md")[0].read_text()
    part3 = section(markdown, "## Part 3: label-corrupted MNIST")
    assert table_value(part3, "kind") == "complementary" and table_value(part3, "noise rate", 3) == "0.0456"
    assert table_value(part3, "noise rate") == "0.0011"  # the matched view: MNIST's own labels
    assert table_value(part3, "images in their own digit's folder") == "3 (0.0010); per digit 1, 2, 0"
    assert table_value(part3, "duplicates in the MNIST test set (exact / near)") == "0 / 0"
    assert table_value(part3, "uses clean labels", 2) == "yes" and table_value(part3, "uses clean labels") == "no"
    assert table_value(part3, "final test accuracy", 2) == "0.9622 ± 0.0123"
    assert table_value(part3, "accuracy, least likely folder as the digit", 1) == "0.9111 ± 0.0123"
    assert table_value(part3, "accuracy, least likely folder as the digit", 2) == "n/a"
    assert "Not trained: `relabel`" in part3
    assert "| pretrained - scratch |" in part3 and "| final test accuracy | -0.0100 ± 0.0000 (worse) |" in part3
    assert "](report/part3/transition_estimate.png)" in part3  # redrawn from the diagnosis
    assert "Figure `transition_free.png` (The oracle-free view" in part3  # that view estimated no T
    assert "Figure `audit_samples.png` (Images of each folder, as they are) is missing" in part3  # no images kept
    # train - test accuracy compares with the digits only where the training labels are taken as them
    assert table_value(part3, "train - test accuracy", 2) == "-0.0200 ± 0.0123"  # oracle_relabel
    assert table_value(part3, "train - test accuracy", 1) == table_value(part3, "train - test accuracy", 3) == "-"


def glance(markdown: str) -> str:
    """The first section: it must come right after the title, before the list of contents."""
    assert markdown.split("\n## ")[1].startswith("Results at a glance\n")
    return section(markdown, "## Results at a glance")


def anchors_resolve(text: str, markdown: str) -> bool:
    """Every ``(#anchor)`` link in ``text`` names a heading of ``markdown``."""
    headings = {render.anchor(line.lstrip("#").strip()) for line in markdown.splitlines() if line.startswith("#")}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    return bool(links) and set(links) <= headings


def test_report_leads_with_the_three_answers_linked_to_their_sections(study_dir, tmp_path):
    (study_dir / "part3").mkdir()
    write_results(study_dir / "part3" / "results.json", part3_results())
    results = part2_results()
    results["data_size"]["C"] = {"100": {"final_test_accuracy": stat(0.70)},
                                 "2000": {"final_test_accuracy": stat(0.9833)}}
    write_results(study_dir / "part2" / "results.json", results)
    markdown = report.write_report(study_dir)[0].read_text()
    top = glance(markdown)
    assert "0.6543 ± 0.0123, 0.7000 ± 0.0123 case-folded expected (writer folds)" in top
    assert "0.4321 on `testPart1`" in top  # the hidden-test evaluation of part 1's run
    assert "final test accuracy C 0.9833 ± 0.0123 vs B 0.9712 ± 0.0123, C - B paired over seeds +0.0121" in top
    assert "steps to 98%: C not reached vs B not reached" in top
    assert ("C - B by training images, paired over seeds, 100: +0.0900 ± 0.0000 (better), "
            "2000: +0.0121 ± 0.0000 (better)") in top
    assert ("a replica made here, complementary: every digit is missing from one folder (clean model's view); "
            "from the folders alone: complementary (the two views agree); 2990 of 3000 images are near copies of "
            "3000 distinct images of MNIST train (60000 images), 0 of MNIST test; by MNIST's labels 3 sit in their "
            "own digit's folder") in top
    assert "the truth file (read after training) planted complementary (complementary)" in top
    assert "best recovery without clean labels: scratch, 0.9712 ± 0.0123" in top
    assert "best recovery with the clean oracle's labels: oracle_relabel, 0.9622 ± 0.0123" in top
    assert top.count("([details](#") == 3 and anchors_resolve(top, markdown)


def test_glance_reads_fold_estimates_and_which_models_used_clean_labels(study_dir):
    final = part1_results()
    final["expected_new_writers"] = None  # no cv of this recipe: the study's cv run answers
    write_results(study_dir / "part1" / "results.json", final)
    write_results(study_dir / "part1-cv" / "results.json", CvResults(config={}, cv=cv_summary(0.8123)))
    part3 = part3_results()
    part3["diagnosis"]["kind"] = "permutation"
    part3["models"]["oracle_relabel"]["uses_clean_labels"] = False
    part3["models"]["scratch"]["uses_clean_labels"] = True
    (study_dir / "part3").mkdir()
    write_results(study_dir / "part3" / "results.json", part3)
    top = render.render_markdown([sections.build_sections(study_dir, study_dir)[0]], study_dir, "glance only")
    assert "0.8123 ± 0.0500, 0.8623 ± 0.0123 case-folded expected (2 writer folds)" in top
    assert "permutation: every digit is missing from one folder" in top
    assert "without clean labels: oracle_relabel, 0.9622" in top and "with the clean oracle's labels: scratch, 0.9712" in top


def test_report_of_an_empty_workdir_says_what_to_run(tmp_path):
    markdown = report.write_report(tmp_path / "nothing", tmp_path / "REPORT.md")[0].read_text()
    for part in ("part1", "part2", "part3"):
        assert f"Not run yet: run `python experiments/{part}.py`" in markdown
    assert glance(markdown).count("not run yet") == 3
    assert "No evaluation yet" in markdown and "![" not in markdown


def test_report_uses_the_environment_a_run_recorded(study_dir, tmp_path):
    results = json.loads((study_dir / "part1" / "results.json").read_text())
    assert results["environment"]["backend"] == "cpu"  # write_results records the writer's
    results["environment"] = {"jax": "9.9.9", "device_kind": "TPU v9"}  # as a TPU run would have
    (study_dir / "part1" / "results.json").write_text(json.dumps(results))
    markdown = report.write_report(study_dir, tmp_path / "REPORT.md")[0].read_text()
    assert table_value(markdown, "device_kind") == "TPU v9" and "As recorded by the training run." in markdown


def test_report_labels_this_process_environment_when_none_recorded(tmp_path):
    markdown = report.write_report(tmp_path, tmp_path / "REPORT.md")[0].read_text()
    assert "of the process that wrote this report" in markdown
    assert table_value(markdown, "backend") == "cpu"


def test_report_names_the_file_whose_results_lack_a_field(tmp_path):
    (tmp_path / "part1").mkdir()
    (tmp_path / "part1" / "results.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(JaxcnnError, match="part1: a results file has no field"):
        report.write_report(tmp_path, tmp_path / "REPORT.md")


def test_the_bibliography_is_one_file_of_keyed_entries_and_a_key_given_twice_is_refused(tmp_path):
    (tmp_path / "bibliography.md").write_text("# Bibliography\nSome words.\n- [Zed2000] Zed (2000). Z.\n"
                                              "- [Abe1999] Abe (1999). A,\n  continued.\n")
    assert sections.bibliography(tmp_path) == ["[Zed2000] Zed (2000). Z.", "[Abe1999] Abe (1999). A, continued."]
    (tmp_path / "bibliography.md").write_text("- [Abe1999] Abe (1999). A.\n- [Abe1999] Abe (1999). B.\n")
    with pytest.raises(JaxcnnError, match=r"the keys \[Abe1999\] are given twice"):
        sections.bibliography(tmp_path)


def test_the_studys_bibliography_lists_each_work_once_in_one_format():
    entries = sections.bibliography(sections.DOCS_DIR)
    parsed = [re.fullmatch(r"\[(\w+)\] ([^,(]+?)(?:,| et al\.| \()[^()]*?\(?(\d{4})\)\. .+\.( \(\w+\))?", e)
              for e in entries]
    assert all(parsed), [e for e, m in zip(entries, parsed) if not m]  # "[Key] Authors (year). Title. Venue."
    works = [(m.group(2).split()[-1], m.group(3)) for m in parsed]  # first author's surname, year
    twice = {work for work in works if works.count(work) > 1}
    assert twice == {("Kornblith", "2019")} and len(works) >= 40  # two works of 2019: CKA, and transfer
    assert len({e.split("). ", 1)[1].split(".")[0] for e in entries}) == len(entries)  # no title twice
    for doc in ("part1.md", "part2.md", "part3.md"):  # the documents point to it, listing nothing themselves
        text = (sections.DOCS_DIR / doc).read_text()
        assert "(bibliography.md)" in text and "Kingma, Ba (2015)" not in text


REPO = Path(sections.DOCS_DIR).resolve().parent


def test_a_report_built_outside_the_repo_holds_no_path_of_the_machine(study_dir, tmp_path):
    results = part3_results()
    results["data"]["source"] = str(study_dir / "part3" / "noisy-mnist.zip")  # as a run records them
    results["oracle"]["source"] = f"{tmp_path / 'elsewhere' / 'part2' / 'B'} (epoch 15)"
    (study_dir / "part3").mkdir()
    write_results(study_dir / "part3" / "results.json", results)
    assert not study_dir.resolve().is_relative_to(REPO)
    markdown_path, html_path = report.write_report(study_dir)
    for text in (markdown_path.read_text(), html_path.read_text()):
        assert str(tmp_path) not in text and str(REPO) not in text and "../../.." not in text
        assert not re.search(r"(?<![\w.:/+=])/(tmp|work|home|root|usr|var)/", text)
    markdown = markdown_path.read_text()
    assert "`WORKDIR/part3/noisy-mnist.zip`" in markdown and ".../B (epoch 15)" in markdown
    assert "(`docs/part1.md`) covers:" in markdown and "docs/part1.md)" not in markdown  # named, not linked
    assert all((markdown_path.parent / link).exists() for link in relative_links(markdown))


def test_design_documents_are_linked_where_the_report_is_inside_their_repository(study_dir, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(sections.DOCS_DIR, repo / "docs", ignore=shutil.ignore_patterns("gpu-runs"))
    out = repo / "reports" / "REPORT.md"
    markdown = report.write_report(study_dir, out, docs_dir=repo / "docs")[0].read_text()
    assert "(`docs/part2.md`)" not in markdown and "([`docs/part2.md`](../docs/part2.md)) covers:" in markdown
    assert all((out.parent / link).exists() for link in relative_links(markdown))


def transfer_change(cka_source, cka_scratch, distance=0.25):
    layers = ["conv0_0", "conv0_1", "conv1_0"]
    return {"layers": layers, "images": 1000, "cka_source": {n: stat(v) for n, v in zip(layers, cka_source)},
            "cka_scratch": {n: stat(v) for n, v in zip(layers, cka_scratch)},
            "distance": {n: stat(distance) for n in layers}}


def test_part2_draws_what_transfer_changed_inside_c_and_reads_it_in_a_sentence(study_dir):
    results = part2_results()
    results["representations"] = {"C": transfer_change([0.97, 0.91, 0.85], [0.60, 0.45, 0.40])}
    write_results(study_dir / "part2" / "results.json", results)
    markdown_path, _ = report.write_report(study_dir)
    part2 = section(markdown_path.read_text(), "## Part 2: transfer to MNIST")
    assert ("C keeps A's features in every trunk layer: linear CKA with A's features 0.85-0.97 per layer, against "
            "0.40-0.60 with B's (mean of seeds, 1000 MNIST test images); its weights moved 0.25-0.25") in part2
    assert "](report/part2/transfer_changes.png)" in part2 and "transfer_changes.png` (" not in part2
    assert (study_dir / "report" / "part2" / "transfer_changes.png").stat().st_size > 0
    # drawn beside the report: the run's folder holds only the figure the fixture put there
    assert [p.name for p in (study_dir / "part2").glob("*.png")] == ["learning_curves.png"]


def test_fine_tuning_that_moves_off_the_source_in_later_layers_reads_as_rebuilt():
    change = transfer_change([0.95, 0.70, 0.30], [0.50, 0.75, 0.80])
    assert records.transfer_reading("C", change, "A", "B").startswith(
        "C keeps A's features up to `conv0_0` and rebuilds them from `conv0_1`: linear CKA with A's features 0.30-0.95")
    assert "rebuilds A's features from the first layer on" in records.transfer_reading(
        "C", transfer_change([0.5, 0.4, 0.3], [0.6, 0.6, 0.6]), "A", "B")


def test_report_shows_compile_and_training_seconds_apart_and_pairs_c_minus_b_on_training_seconds(study_dir):
    results = part2_results()
    for name, (compiled, to_98) in {"B": (6.5, [2.0, 2.4]), "C": (0.3, [1.0, 1.2])}.items():
        results["models"][name] |= {"compile_seconds": compiled, "train_seconds": 10.0,
                                    "seconds_to_98": summary_of(to_98)}
    write_results(study_dir / "part2" / "results.json", results)
    markdown = report.write_report(study_dir)[0].read_text()
    part2 = section(markdown, "## Part 2: transfer to MNIST")
    assert table_value(part2, "compile seconds", 1) == "6.5" and table_value(part2, "compile seconds", 2) == "0.3"
    assert table_value(part2, "train seconds", 1) == "10.0"
    assert table_value(part2, "train seconds to 98%", 2).startswith("1.1 ± ")
    pairs = part2[part2.index("| | C - B |" if "| | C - B |" in part2 else "|  | C - B |"):]
    assert table_value(pairs, "train seconds to 98%").startswith("-1.1 ± 1.3 (no difference measured)")
    assert ("train seconds to 98%, compilation apart: C 1.1 ± 1.3 vs B 2.2 ± 2.5, C - B -1.1 ± 1.3 (no difference "
            "measured) (compile seconds C 0.3, B 6.5)") in glance(markdown)


def test_inline_html_escapes_text_and_renders_code_and_links():
    assert render.inline_html("a < b, `x<y>` and [doc](docs/p.md)") == \
        'a &lt; b, <code>x&lt;y&gt;</code> and <a href="docs/p.md">doc</a>'


def relative_links(markdown: str) -> list[str]:
    """The targets of the markdown's links and images that are paths (not URLs, not anchors)."""
    targets = re.findall(r"\]\(([^)]+)\)", markdown)
    return [t.partition("#")[0] for t in targets if not re.match(r"[a-z]+:|#", t)]


def figure_links(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def test_report_command_writes_into_the_workdir_by_default(study_dir, tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["report", "--workdir", str(study_dir)]) == 0
    assert list(elsewhere.iterdir()) == []
    markdown = (study_dir / "REPORT.md").read_text()
    assert (study_dir / "report.html").is_file()
    figures = figure_links(markdown)
    assert len(figures) == 9 and not [f for f in figures if f.startswith("..") or Path(f).is_absolute()]
    assert all((study_dir / link).exists() for link in relative_links(markdown))


def test_report_out_elsewhere_links_relative_to_it(study_dir, tmp_path):
    out = tmp_path / "elsewhere" / "R.md"
    assert main(["report", "--workdir", str(study_dir), "--out", str(out)]) == 0
    assert out.is_file() and (out.parent / "report.html").is_file() and not (study_dir / "REPORT.md").exists()
    markdown = out.read_text()
    assert "](report/part2/learning_curves.png)" in markdown  # drawn beside the report
    assert "](../ckpts/part1/confusion_val.png)" in markdown  # a figure the run left, where it is
    assert all((out.parent / link).exists() for link in relative_links(markdown))


@pytest.mark.skipif(browser.chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_html_report_renders_in_a_real_browser_with_every_image(study_dir, tmp_path):
    _, page = report.write_report(study_dir, tmp_path / "REPORT.md")
    loaded, total = browser.loaded_images(page)
    assert (loaded, total) == (9, 9)
    dom = browser.dump_dom(page)
    first = re.search(r'<h2 id="([^"]+)">(.*?)</h2>(.*?)<nav>', dom, re.S)  # the glance, then the contents
    assert first and first.group(2) == "Results at a glance"
    links = re.findall(r'<a href="#([^"]+)">details</a>', first.group(3))
    assert len(links) == 3 and all(f'id="{target}"' in dom for target in links)
    assert "<strong>Part 2" in first.group(3) and "0.9833 ± 0.0123" in first.group(3)
    shot = np.asarray(Image.open(browser.screenshot(page, tmp_path / "shot.png")).convert("L"))
    assert shot.shape == (3000, 1200)
    assert (shot < 128).mean() > 0.01  # text and figures drawn, not a blank page


# --- the study command ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FakeConfig:
    epochs: int = 3


def fake_part(calls: list):
    """A part module whose run records its call and writes results.json with its config."""
    def run(cfg, data_root, workdir, *, resume=False, overwrite=False, cache_dir=None):
        calls.append((workdir.name, resume))
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "results.json").write_text(json.dumps({"config": to_dict(cfg)}))
    return types.SimpleNamespace(get_config=lambda profile: FakeConfig(1 if profile == "quick" else 3), run=run,
                                 planned_images=lambda cfg: 0)


def test_study_runs_each_part_once(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(study, "part_module", lambda name: fake_part(calls))
    monkeypatch.setitem(study.UPSTREAM, "fake1", {})
    out = tmp_path / "REPORT.md"
    first = study.run_study(tmp_path, tmp_path / "ckpts", profile="quick", parts=("fake1",))
    assert first == {"fake1": "ran"}
    assert (tmp_path / "ckpts" / "REPORT.md").is_file() and (tmp_path / "ckpts" / "report.html").is_file()
    again = study.run_study(tmp_path, tmp_path / "ckpts", profile="quick", resume=True, out=out, parts=("fake1",))
    assert again == {"fake1": "reused"} and calls == [("fake1", False)]
    with pytest.raises(JaxcnnError, match="another configuration"):
        study.run_study(tmp_path, tmp_path / "ckpts", profile="full", out=out, parts=("fake1",))


def test_study_passes_each_part_the_runs_it_reads_from_its_workdir(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(study, "part_module", lambda name: types.SimpleNamespace(
        get_config=lambda profile: FakeConfig(), planned_images=lambda cfg: 0,
        run=lambda cfg, data_root, workdir, **kwargs: seen.update({name: kwargs})))
    monkeypatch.setattr(study, "finished", lambda part_dir, cfg: False)
    monkeypatch.setattr(study, "write_report", lambda workdir, out: (tmp_path / "r.md", tmp_path / "r.html"))
    study.run_study(tmp_path, tmp_path / "w")
    assert seen["part3"]["part1_run"] == tmp_path / "w" / "part1"
    assert seen["part3"]["oracle_run"] == tmp_path / "w" / "part2" / "B"
    assert seen["part1"]["cv_run"] == tmp_path / "w" / "part1-cv" and "part1_run" not in seen["part2"]


def test_glance_names_each_parts_profile_or_a_configuration_of_its_own():
    from jaxcnn.report.glance import profiles_text
    found = {name: {"config": to_dict(part_module(name).get_config("cpu"))} for name in PARTS}
    found["part3"] = {"config": {**found["part3"]["config"], "baseline_epochs": 7}}
    text = profiles_text(found)
    assert "part1 `full` = `cpu`, part2 `cpu`, part3 a configuration of its own" in text
    assert profiles_text({name: None for name in PARTS}) == "**Profile**: no part has run yet."


def test_each_figure_caption_says_what_its_models_trained(tmp_path):
    from jaxcnn.experiments.common import drawn_figures, seeds_epochs
    assert seeds_epochs({"seeds": [0, 1, 2], "epochs": 2}) == "3 seeds x 2 epochs"
    assert seeds_epochs({"seeds": [0], "epochs": 15}, 1) == "1 seed x 1 epoch"
    shown, gone = drawn_figures(tmp_path, {"a.png": "Curves.", "b.png": "More."}, {"b.png": "no data"}, "B: 3 seeds x 2 epochs")
    assert shown.caption == "Curves (B: 3 seeds x 2 epochs)." and "is missing: no data" in gone.text


def test_every_part_offers_the_protocol_and_an_unknown_part_is_refused():
    for name in PARTS:
        module = part_module(name)
        assert all(callable(getattr(module, f)) for f in ("get_config", "planned_images", "run", "sections", "headline"))
        for profile in PROFILES:
            cfg = module.get_config(profile)
            assert dataclasses.is_dataclass(cfg) and module.planned_images(cfg) > 0
            assert profile in profiles_of(module, to_dict(cfg))
        assert module.planned_images(module.get_config("quick")) < module.planned_images(module.get_config("cpu"))
    with pytest.raises(ValueError, match="unknown part 'part9'"):
        part_module("part9")


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_study_quick_end_to_end_report_matches_results(shared_data, tmp_path, monkeypatch):
    workdir, out, cache = tmp_path / "ckpts", tmp_path / "ckpts" / "REPORT.md", tmp_path / "cache"
    shared_data = shared_data.resolve()  # before leaving the directory it may be relative to
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["study", "--quick", "--workdir", str(workdir), "--data-root", str(shared_data),
                 "--cache-dir", str(cache)]) == 0
    assert out.is_file() and (workdir / "report.html").is_file()
    assert files_under(tmp_path) - files_under(workdir) - files_under(cache) == set()  # nothing outside W
    markdown = out.read_text()
    assert figure_links(markdown) and all(not f.startswith("..") for f in figure_links(markdown))
    assert all((workdir / link).exists() for link in relative_links(markdown))
    for heading in SECTIONS:
        assert f"\n{heading}\n" in markdown
    part1 = json.loads((workdir / "part1" / "results.json").read_text())
    assert part1["writers"] == list(range(1, 56)) and part1["expected_new_writers"] is None  # no cv run here
    assert f"training took {part1['train_seconds']:.1f} s" in markdown
    assert "not measured for this recipe (run `python -m jaxcnn cv`)" in markdown
    last = part1["history"][-1]
    assert table_value(markdown, str(last["epoch"]), 2) == f"{np.mean(last['train_accuracy']):.4f}"
    if (workdir / "part2" / "results.json").is_file():
        part2 = section(markdown, "## Part 2: transfer to MNIST")
        models = json.loads((workdir / "part2" / "results.json").read_text())["models"]
        for column, model in enumerate(models.values(), 1):
            assert table_value(part2, "ensemble accuracy", column) == f"{model['ensemble']['accuracy']:.4f}"
            mean = model["final_test_accuracy"]["mean"]
            assert table_value(part2, "final test accuracy", column).startswith(f"{mean:.4f}")
    stamp = (workdir / "part1" / "results.json").stat().st_mtime_ns
    again = study.run_study(shared_data, workdir, profile="quick", cache_dir=cache)
    assert set(again.values()) == {"reused"}
    assert (workdir / "part1" / "results.json").stat().st_mtime_ns == stamp
    if os.environ.get("JAXCNN_KEEP_QUICK_STUDY"):  # .ci/run's notebook step reuses this study
        shutil.copytree(workdir, os.environ["JAXCNN_KEEP_QUICK_STUDY"], dirs_exist_ok=True)


# --- progress bar and TensorBoard -------------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_silent_when_not_a_terminal():
    stream = io.StringIO()
    with progress_bar(5, "fit", stream=stream) as bar:
        bar.update(2)
    assert stream.getvalue() == ""


def test_progress_on_a_terminal_shows_the_count_and_leaves_no_line():
    stream = Terminal()
    with progress_bar(10, "part1", unit="epoch", initial=2, stream=stream) as bar:
        bar.set_postfix_str("acc 0.5", refresh=False)
        bar.update(3)
        bar.refresh()
        assert "part1" in stream.getvalue() and "5/10" in stream.getvalue() and "acc 0.5" in stream.getvalue()
    assert stream.getvalue().endswith("\r") and stream.getvalue().split("\r")[-2].strip() == ""  # erased


def test_study_meter_logs_share_and_eta_and_a_resumed_epoch_shrinks_the_plan(caplog):
    now = [0.0]
    with caplog.at_level(logging.INFO, logger="jaxcnn"), study_meter(1000, log_every=10, clock=lambda: now[0]) as meter:
        count_trained(100, trained_before=True)  # a resumed run had trained these: 900 left to plan
        now[0] = 30.0
        count_trained(300)  # 300 in 30 s: 600 left take 60 s
        assert meter.line() == "study: 33% of 0.00 M planned training images, 0:30 elapsed, ETA 1:00"
        assert "ETA 1:00" in caplog.text
    count_trained(5)  # no study running: nothing to tell
    assert meter.done == 300
    assert format_duration(3725) == "1:02:05" and format_duration(65) == "1:05"


def test_epoch_scalars_name_each_seed_and_the_mean():
    record = {"epoch": 3, "step": 90, "train_loss": [1.0, 3.0], "val_accuracy_ensemble": 0.5, "seconds": 2.0}
    assert epoch_scalars(record, seeds=[4, 7]) == {"train_loss/seed_4": 1.0, "train_loss/seed_7": 3.0,
                                                   "train_loss/mean": 2.0, "val_accuracy_ensemble": 0.5,
                                                   "seconds": 2.0}


def read_events(logdir):
    """Every Event in the TensorBoard files of ``logdir`` (TFRecord framing, CRCs not checked)."""
    from tensorboardX.proto.event_pb2 import Event
    events = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            events.append(Event.FromString(data[offset + 12:offset + 12 + length]))
            offset += 12 + length + 4
    return events


def test_metric_writer_writes_scalars_and_hides_events_a_resume_replaces(tmp_path):
    with MetricWriter(tmp_path) as writer:
        for record in history(2):
            writer.write_epoch(record, seeds=[0, 1])
    scalars = {(e.step, v.tag): v.simple_value for e in read_events(tmp_path) for v in e.summary.value}
    assert scalars[(2, "val_accuracy_ensemble")] == pytest.approx(0.6)
    assert scalars[(1, "train_loss/seed_1")] == pytest.approx(1.4)
    with MetricWriter(tmp_path, first_epoch=2):
        pass
    starts = [e.step for e in read_events(tmp_path) if e.HasField("session_log")]
    assert 2 in starts  # TensorBoard purges the earlier epoch-2 events from here


def test_render_text_aligns_tables_and_lists_figures_one_per_line(tmp_path):
    from jaxcnn.document import Figure, Section, Table, Text
    text = render.render_text([Section("Part 9", [Text("Some words."), Table(["", "B", "C"], [["final", "0.9", "0.95"]], "cap"),
                                                  Figure(tmp_path / "a.png", "A"), Figure(tmp_path / "b.png", "B")]),
                               Section("Part 9: more", [Text("End.")], 3)])
    assert text.splitlines() == ["Part 9", "======", "Some words.", "", "cap", "       B    C", "final  0.9  0.95", "",
                                 f"figure: {tmp_path / 'a.png'}", f"figure: {tmp_path / 'b.png'}", "",
                                 "Part 9: more", "------------", "End."]
