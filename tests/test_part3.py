"""Part 3: the corrupted-folder study, end to end in quick mode, and its diagnosis step alone."""

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from jaxcnn import noise, part3
from jaxcnn.dataset import ArrayDataset
from jaxcnn.errors import CheckpointError, DataError

PLANTED_SEED = 0


@pytest.fixture(scope="module")
def real_data() -> Path:
    """The staged data root ($JAXCNN_DATA or ../shared/data), for a module-scoped run; skips if absent."""
    root = Path(os.environ.get("JAXCNN_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not (root / "mnist").is_dir() or not (root / "trainPart1").is_dir():
        pytest.skip(f"real data not found at {root}")
    return root


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, real_data):
    """One quick part-3 run on the real data; the truth file is hidden from it until the final scoring."""
    tmp = tmp_path_factory.mktemp("part3")
    workdir, stash = tmp / "run", tmp / "stash.json"
    seen = {}
    real_make, real_score = part3.make_noisy_mnist, part3.score_estimate

    def make_then_hide_truth(*args, **kwargs):
        summary = real_make(*args, **kwargs)
        shutil.move(summary["truth_file"], stash)
        return summary

    def restore_truth_then_score(data_dir, diagnosis):
        seen["truth_absent_while_training"] = not noise.truth_path(data_dir).exists()
        seen["trained"] = sorted(p.name for p in workdir.iterdir() if (p / "checkpoints").is_dir())
        shutil.move(stash, noise.truth_path(data_dir))
        return real_score(data_dir, diagnosis)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(part3, "make_noisy_mnist", make_then_hide_truth)
        mp.setattr(part3, "score_estimate", restore_truth_then_score)
        cfg = dataclasses.replace(part3.get_config(quick=True), part1_ckpt=str(tmp / "no-part1-here"))
        results = part3.run(cfg, real_data, workdir, cache_dir=tmp / "cache")
    return results, workdir, seen


@pytest.mark.slow
def test_quick_run_writes_every_model_and_figure(quick_run):
    results, workdir, _ = quick_run
    on_disk = json.loads((workdir / "results.json").read_text())
    assert set(on_disk["models"]) == {"scratch", "pretrained", "relabel", "forward", "relabel_gce"}
    for model in on_disk["models"].values():
        accuracy = model["final_test_accuracy"]
        assert accuracy["n"] == 2 and 0.0 <= accuracy["mean"] <= 1.0
    for name in ("transition_estimate.png", "folder_samples.png", "learning_curves.png", "confusion_scratch.png"):
        assert (workdir / name).stat().st_size > 5000, name
    assert on_disk["data"]["made_here"] and (workdir / "noisy-mnist.zip").is_file()
    assert on_disk["part1_checkpoint"].endswith("part1-quick")


@pytest.mark.slow
def test_quick_run_recovers_the_planted_permutation(quick_run):
    results, _, _ = quick_run
    planted = noise.derangement(10, PLANTED_SEED).tolist()
    assert results["estimate"]["mapping"] == planted
    assert results["estimate"]["is_derangement"]
    assert 0.03 < results["estimate"]["noise_rate"] < 0.3  # planted: 10% symmetric, plus the oracle's own errors
    truth = results["truth_check"]
    assert truth["mapping_matches"] and truth["planted_permutation"] == planted
    assert truth["vs_measured_T"]["max_abs_error"] < 0.2


@pytest.mark.slow
def test_quick_run_never_had_the_truth_file_while_training(quick_run):
    results, _, seen = quick_run
    assert seen["truth_absent_while_training"]
    assert {"scratch", "pretrained", "relabel", "forward", "reference"} <= set(seen["trained"])
    assert results["truth_check"]["read_after_training"]


@pytest.mark.slow
def test_folder_labels_fail_on_clean_test_and_corrections_fix_them(quick_run):
    models = quick_run[0]["models"]
    for name in ("scratch", "pretrained"):
        # a derangement sends every digit to another folder: right on clean labels only by mistake
        assert models[name]["final_test_accuracy"]["mean"] < 0.2
        renamed = models[name]["renamed"]["final_test_accuracy"]["mean"]
        assert renamed > models[name]["final_test_accuracy"]["mean"] + 0.3
    for name in ("relabel", "forward"):
        assert models[name]["final_test_accuracy"]["mean"] > 0.5, name


def test_diagnosis_reads_a_noisy_permutation_and_renaming_inverts_it():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 10, 5000)
    folders = noise.corrupt_labels(truth, "permutation+symmetric:0.2", seed=3)
    probs = np.full((5000, 10), 0.02)
    probs[np.arange(5000), truth] = 0.82  # an oracle that is always right, 82% confident
    diagnosis = part3.diagnose(folders, probs, min_confidence=0.5)
    assert diagnosis["mapping"] == noise.derangement(10, 3).tolist()
    assert diagnosis["noise_rate"] == pytest.approx(0.2, abs=0.03)
    assert diagnosis["pattern"] == "symmetric-like"
    # a model that has learnt the folder labels perfectly, renamed by the mapping, is right on the digits
    folder_logits = 10.0 * np.eye(10)[np.asarray(diagnosis["mapping"])[truth]][None]
    renamed = part3.renamed_accuracy(folder_logits, truth, diagnosis["mapping"])
    assert renamed["ensemble_accuracy"] == 1.0 and renamed["final_test_accuracy"]["mean"] == 1.0
    assert np.mean(folder_logits[0].argmax(-1) == truth) == 0.0


def test_training_runs_relabel_with_the_inverse_and_forward_keeps_folder_labels():
    cfg = part3.get_config(quick=True)
    folders = np.array([3, 0, 1, 2], np.int32)
    diagnosis = {"mapping": [1, 2, 3, 0] + list(range(4, 10)), "is_permutation": True,
                 "transition": np.eye(10)[[1, 2, 3, 0, 4, 5, 6, 7, 8, 9]].tolist()}
    runs = part3.training_runs(cfg, folders, diagnosis, pretrained_init="graft")
    assert runs["relabel"][0].tolist() == [2, 3, 0, 1]  # folder 3 holds digit 2, etc.
    assert runs["forward"][0].tolist() == folders.tolist() and runs["forward"][1].loss == "forward"
    assert runs["forward"][1].label_transition[0][1] == 1.0
    assert runs["pretrained"][2] == "graft" and runs["relabel"][2] is None
    assert [outputs_folders for *_, outputs_folders in runs.values()] == [True, True, False, False, False]
    not_a_permutation = dict(diagnosis, is_permutation=False, mapping=[0] * 10)
    assert set(part3.training_runs(cfg, folders, not_a_permutation, None)) == {"scratch", "pretrained", "forward"}


def test_missing_part1_checkpoint_says_to_run_part1_first(tmp_path):
    cfg = dataclasses.replace(part3.get_config(), part1_ckpt=str(tmp_path / "nothing"))
    with pytest.raises(CheckpointError, match="run part 1 first"):
        part3.part1_variables(cfg, tmp_path, tmp_path / "work")


def test_a_part1_trunk_that_does_not_fit_the_model_is_refused(tmp_path, monkeypatch):
    trunk = {"conv0_0": {"kernel": np.zeros((3, 3, 1, 8))}, "bn0_0": {}, "conv1_0": {"kernel": np.zeros((3, 3, 8, 16))}}
    monkeypatch.setattr(part3, "has_checkpoints", lambda path: True)
    monkeypatch.setattr(part3, "pretrained_variables", lambda path, which: {"params": {"trunk": trunk}})
    with pytest.raises(CheckpointError, match=r"widths \(8, 16\), part 3's model \(32, 64, 128\)"):
        part3.part1_variables(part3.get_config(), tmp_path, tmp_path / "work")


def test_unknown_correction_is_refused():
    with pytest.raises(ValueError, match="unknown corrections"):
        dataclasses.replace(part3.get_config(), corrections=("relabel", "magic"))


def test_a_given_folder_is_loaded_with_its_folder_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(10), 4)
    noise.write_class_folders(images, labels, tmp_path / "given")
    cfg = dataclasses.replace(part3.get_config(quick=True), data=str(tmp_path / "given"), noisy_size=20)
    data = part3.load_noisy(cfg, tmp_path / "given", cache_dir=tmp_path / "cache")
    assert len(data) == 20 and np.bincount(data.labels).tolist() == [2] * 10
    assert data.class_names == tuple(str(d) for d in range(10))


def test_a_made_set_with_other_settings_is_not_silently_reused(tmp_path):
    (tmp_path / "noisy-mnist.zip").write_bytes(b"")
    (tmp_path / "noisy-mnist.made.json").write_text(json.dumps({"corruption": "permutation", "seed": 5}))
    with pytest.raises(DataError, match="--overwrite"):
        part3.make_default_set(part3.get_config(quick=True), tmp_path, tmp_path)


def test_folder_sample_grid_and_heat_map_are_drawn(tmp_path):
    data = ArrayDataset(np.zeros((30, 28, 28), np.uint8), np.repeat(np.arange(10), 3).astype(np.int32),
                        np.full(30, -1, np.int32), tuple(str(d) for d in range(10)))
    part3.plot_folder_samples(data, np.zeros(30, int), tmp_path / "grid.png", per_folder=3)
    part3.plot_transition(np.eye(10)[noise.derangement(10, 0)], tmp_path / "T.png", "test")
    assert (tmp_path / "grid.png").stat().st_size > 1000 and (tmp_path / "T.png").stat().st_size > 1000


def test_make_noisy_mnist_command_refuses_a_bad_spec_before_reading_data(tmp_path, capsys):
    from jaxcnn.cli import main
    assert main(["make-noisy-mnist", "--out", str(tmp_path / "out"), "--corruption", "rotate:0.1",
                 "--data-root", str(tmp_path / "no-data")]) == 2
    assert "symmetric:RATE" in capsys.readouterr().err and not (tmp_path / "out").exists()
