"""Part 1 (``jaxcnn.experiments.part1``) on a tiny Chars74K tree: the folds and their statistics, the
final model on every image, the ablation, and the report's history table."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from jaxcnn.config import ModelConfig, TrainConfig, override
from jaxcnn.config import NO_AUGMENT
from jaxcnn.data.chars74k import CLASS_NAMES
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.experiments import part1
from jaxcnn.experiments.part1 import folds, report
from jaxcnn.experiments.part1.config import load_data
from jaxcnn.report.render import render_text
from jaxcnn.training.checkpoint import run_inputs

CLASSES = ("0", "O", "o", "A")
WRITERS = (1, 2, 3, 4, 5, 6)


@pytest.fixture
def setup(tmp_path, make_chars74k):
    """``(cfg, data_root)``: a one-epoch recipe of a tiny model, three class-stratified folds."""
    make_chars74k(tmp_path / "data" / "trainPart1" / "train", classes=[CLASS_NAMES.index(c) + 1 for c in CLASSES],
                  writers=WRITERS)
    cfg = part1.Part1Config(
        train=TrainConfig(seeds=(0, 1), epochs=1, batch_size=8, eval_batch_size=16, augment=NO_AUGMENT,
                          model=ModelConfig(widths=(4, 8), hidden=16)),
        classes=CLASSES, folds=3)
    return cfg, tmp_path / "data"


def test_cv_scores_each_image_once_and_the_final_model_learns_from_all(setup, tmp_path):
    cfg, data_root = setup
    final = part1.run(cfg, data_root, tmp_path / "final", cv_run=tmp_path / "cv")
    assert final["writers"] == list(WRITERS) and final["expected_new_writers"] is None  # no cv yet
    assert final["num_train"] == len(WRITERS) * len(CLASSES)
    assert run_inputs(tmp_path / "final") == (CLASSES, cfg.preprocess, cfg.train.model.image_size)  # what `evaluate` prepares new images with

    cv = folds.run_cv(cfg, data_root, tmp_path / "cv")["cv"]
    assert [f["held_out"] for f in cv["folds"]] == ["8 images (2 per class)"] * 3
    assert sorted(cv["per_writer_accuracy"], key=int) == [str(w) for w in WRITERS]
    assert np.sum(cv["confusion"]) == len(WRITERS) * len(CLASSES)  # each image scored once, pooled
    accuracies = [f["accuracy"] for f in cv["folds"]]
    assert cv["accuracy"]["mean"] == pytest.approx(np.mean(accuracies)) and cv["accuracy"]["n"] == 3
    assert all(f["epoch"] == 1 and f["n"] == 2 * len(CLASSES) for f in cv["folds"])
    assert all(0 <= f["accuracy"] <= f["accuracy_casefold"] <= 1 and f["accuracy"] <= f["top3_accuracy"]
               for f in cv["folds"])
    assert {g["group"] for g in cv["confusable_groups"]} == {"Oo", "0Oo"}
    saved = json.loads((tmp_path / "cv" / "results.json").read_text())
    assert saved["cv"]["accuracy"] == cv["accuracy"]
    scorings = cv["scorings"]  # the same fold models: one seed alone, and with TTA
    assert list(scorings) == ["ensemble_1", "tta"]
    assert scorings["ensemble_1"]["accuracy"]["mean"] == pytest.approx(
        np.mean([f["members_accuracy"][0] for f in cv["folds"]]))
    assert scorings["tta"]["vs_recipe"]["n"] == len(WRITERS)
    printed = render_text([report.folds_section(json.loads((tmp_path / "cv" / "results.json").read_text()))])
    assert re.search(r"^ensemble 1 +\d\.\d{4}", printed, re.M)  # what `cv` prints: the report's folds section
    assert cv["case_pairs"]["Oo"]["n"] == 2 * len(WRITERS)
    wrong, errors = cv["wrong_for_every_member"], [[round((1 - a) * f["n"]) for a in f["members_accuracy"]]
                                                   for f in cv["folds"]]
    assert wrong["members"] == 2 and wrong["share"] == pytest.approx(wrong["n"] / np.sum(cv["confusion"]))
    assert sum(max(0, sum(e) - f["n"]) for e, f in zip(errors, cv["folds"])) <= wrong["n"] <= sum(map(min, errors))
    assert "every one of the 2 members got wrong" in printed
    assert 0 <= cv["case_pairs"]["Oo"]["resolved_by_geometry_alone"] <= 1  # the page alone, same folds

    by_writer = folds.run_cv(override(cfg, "folds_by=writer"), data_root, tmp_path / "cv-writers")["cv"]
    assert [f["held_out"] for f in by_writer["folds"]] == ["writers 1-2", "writers 3-4", "writers 5-6"]

    again = part1.run(cfg, data_root, tmp_path / "final", cv_run=tmp_path / "cv", overwrite=True)
    assert again["expected_new_writers"]["accuracy"] == cv["accuracy"]  # the same recipe: its estimate
    other = part1.run(override(cfg, "train.label_smoothing=0"), data_root, tmp_path / "other", cv_run=tmp_path / "cv")
    assert other["expected_new_writers"] is None  # another recipe: the estimate does not apply


def test_fold_ensembles_score_each_fold_with_the_models_that_never_saw_it(setup, tmp_path):
    cfg, data_root = setup
    data = load_data(cfg, data_root)
    nested = folds.train_fold_ensembles(cfg, data, tmp_path / "nested")
    assert sorted(p.name for p in (tmp_path / "nested").iterdir()) == ["without0_1", "without0_2", "without1_2"]
    for i, fold in enumerate(nested):
        assert len(fold["dirs"]) == cfg.folds - 1
        assert all(str(i) in Path(d).name.removeprefix("without").split("_") for d in fold["dirs"])
    cv = folds.score_folds(data, nested)
    assert sorted(cv["per_writer_accuracy"], key=int) == [str(w) for w in WRITERS]
    assert cv["best_mean_epoch"] is None  # nothing was validated
    assert all(len(f["members_accuracy"]) == (cfg.folds - 1) * len(cfg.train.seeds) for f in cv["folds"])
    total = sum(f["train_seconds"] for f in cv["folds"])  # each model counted once, not once per fold
    assert total == pytest.approx(sum(sum(json.loads(line)["seconds"] for line in
                                          (tmp_path / "nested" / d / "metrics.jsonl").read_text().splitlines())
                                      for d in ("without0_1", "without0_2", "without1_2")))


@pytest.mark.slow
def test_ablation_trains_each_variant_under_the_folds_and_reuses_models_for_tta(setup, tmp_path):
    cfg, data_root = setup
    table = folds.run_ablation(cfg, data_root, tmp_path / "ablate", ["default", "tta", "no_label_smoothing"])
    rows = table["variants"]
    assert list(rows) == ["default", "tta", "no_label_smoothing"]
    assert rows["no_label_smoothing"]["changes"] == ["train.label_smoothing=0"]
    assert rows["tta"]["changes"] == ["evaluate tta=True"] and rows["tta"]["train_seconds"] == 0.0
    assert not (tmp_path / "ablate" / "tta").exists()  # scored the default's fold models
    assert sorted(p.name for p in (tmp_path / "ablate" / "no_label_smoothing").iterdir()) == ["fold0", "fold1",
                                                                                                "fold2"]
    assert rows["default"]["vs_default"] == {"mean": 0.0, "ci95": 0.0, "n": len(WRITERS)}
    assert rows["default"]["vs_default_per_fold"] == {"mean": 0.0, "ci95": 0.0, "n": 3}
    assert rows["tta"]["vs_default_per_fold"]["mean"] == pytest.approx(
        np.mean(rows["tta"]["fold_accuracy"]) - np.mean(rows["default"]["fold_accuracy"]))
    for row in rows.values():
        assert row["folds"] == 3 and row["accuracy"]["n"] == 3 and row["vs_default"]["n"] == len(WRITERS)
    assert json.loads((tmp_path / "ablate" / "ablation.json").read_text())["variants"] == rows
    with pytest.raises(ValueError, match="unknown ablation variants"):
        folds.run_ablation(cfg, data_root, tmp_path / "ablate", ["nope"])


def test_every_ablation_variant_is_a_valid_change_of_the_full_recipe():
    recipe = part1.get_config()
    variants = folds.ablation_variants(recipe)
    assert variants["ema"] == (f"train.ema_decay={1 - 1 / (3 * recipe.train.epochs):.4f}",)
    assert recipe.train.model.page_geometry and not override(recipe, *variants["no_page_geometry"]).train.model.page_geometry
    for changes in variants.values():  # every variant is a valid configuration
        for assignment in changes:
            override(recipe, assignment)


def test_geometry_alone_resolves_a_case_pair_by_size_and_nothing_without_a_cue():
    """The linear discriminant beside the case-pair table: an ``O`` twice the height of an ``o``
    is always told apart on its held-out fold; with the same geometry for both, about half."""
    rng = np.random.default_rng(0)
    labels = np.repeat([CLASS_NAMES.index("O"), CLASS_NAMES.index("o")], 40)
    noise = rng.normal(0, 0.05, (80, 5)).astype(np.float32)
    held_out = [{"val_index": np.flatnonzero(np.arange(80) % 4 == k).tolist()} for k in range(4)]

    def with_geometry(geometry):
        return ArrayDataset(np.zeros((80, 28, 28), np.uint8), labels, np.arange(80), CLASS_NAMES, geometry)

    sized = noise + np.where(labels[:, None] == labels[0], np.log(2), 0) * (np.arange(5) == 0)
    assert folds.geometry_alone(with_geometry(sized), held_out) == {"Oo": 1.0}
    assert 0.3 < folds.geometry_alone(with_geometry(noise), held_out)["Oo"] < 0.7
    assert folds.geometry_alone(with_geometry(None), held_out) == {}


def test_the_history_table_shows_every_tenth_epoch_and_the_last():
    records_ = [{"epoch": e, "train_loss": [1.0], "train_accuracy": [0.5], "seconds": 1.0} for e in range(1, 26)]
    assert [row[0] for row in report.history_table(records_).rows] == ["10", "20", "25"]
