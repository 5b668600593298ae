"""Part 3: the corrupted-folder study, end to end in quick mode, and its diagnosis step alone."""

import collections
import dataclasses
import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxcnn.compilation import TRAIN_STEP_PROGRAMS, counting_compilations
from jaxcnn.data import noise
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.errors import CheckpointError, DataError
from jaxcnn.evaluation import evaluate, plots
from jaxcnn.experiments import common, part1, part3, part3_config
from jaxcnn.experiments import part3_diagnosis
from tests.conftest import SHARED_DATA
from tests.generated import write_class_folders

PLANTED_SEED = 0


@pytest.fixture(scope="module")
def real_data() -> Path:
    """The staged data root ($JAXCNN_DATA or ../shared/data), for a module-scoped run; skips if absent."""
    if not (SHARED_DATA / "mnist").is_dir() or not (SHARED_DATA / "trainPart1").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, real_data):
    """One quick part-3 run on the real data; the truth file is hidden from it until the final scoring."""
    tmp = tmp_path_factory.mktemp("part3")
    workdir, stash = tmp / "run", tmp / "stash.json"
    seen = {}
    real_make, real_score = noise.make_noisy_mnist, part3_diagnosis.score_estimate

    def make_then_hide_truth(*args, **kwargs):
        summary = real_make(*args, **kwargs)
        shutil.move(summary["truth_file"], stash)
        return summary

    def restore_truth_then_score(data_dir, diagnosis):
        seen["truth_absent_while_training"] = not noise.truth_path(data_dir).exists()
        seen["trained"] = sorted(p.name for p in workdir.iterdir() if (p / "checkpoints").is_dir())
        shutil.move(stash, noise.truth_path(data_dir))
        return real_score(data_dir, diagnosis)

    real_part1 = part3.part1_variables

    def part1_apart(*args, **kwargs):  # part 1's programs are part 1's, made here only for want of one
        start = len(seen["compiled"])
        out = real_part1(*args, **kwargs)
        seen["part1_compiled"] = seen["compiled"][start:]
        del seen["compiled"][start:]
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(part3, "part1_variables", part1_apart)
        mp.setattr(part3, "make_noisy_mnist", make_then_hide_truth)
        mp.setattr(part3, "score_estimate", restore_truth_then_score)
        cfg = dataclasses.replace(part3.get_config("quick"), data=part3_config.REPLICA)
        jax.clear_caches()  # count compilations as a fresh process would
        with counting_compilations() as seen["compiled"]:
            results = part3.run(cfg, real_data, workdir, part1_run=tmp / "no-part1-here", cache_dir=tmp / "cache")
    return results, workdir, seen


@pytest.mark.slow
def test_quick_run_compiles_one_train_program_per_kind_of_model(quick_run):
    """Issue 22's bound: the clean reference (1 seed, 10 epochs), the diagnosis folds (1 seed, 3
    epochs) and one program for every model on the corrupted set, whatever its loss (cross-entropy,
    forward with (J - I)/9 or the oracle's T, the complementary risk). Part 1's (62 classes), made
    here only because the test supplies no part-1 checkpoint, is counted apart."""
    names = collections.Counter(name for name, _ in quick_run[2]["compiled"])
    assert sum(names[n] for n in TRAIN_STEP_PROGRAMS) <= 3 and sum(names.values()) <= 40, names
    assert names["jit(initial_variables)"] == 1, names  # one architecture, one init program
    part1 = collections.Counter(name for name, _ in quick_run[2]["part1_compiled"])
    assert sum(part1[n] for n in TRAIN_STEP_PROGRAMS) == 1, part1


@pytest.mark.slow
def test_quick_run_writes_every_model_and_figure(quick_run):
    results, workdir, _ = quick_run
    on_disk = json.loads((workdir / "results.json").read_text())
    # complementary labels: relabelling by a mapping does not apply; the quick teacher (about 28%
    # right) is confident about none of the images, so no student
    assert set(on_disk["models"]) == {"scratch", "pretrained", "comp_forward", "comp_forward_trunk", "comp_nn",
                                      "forward", "oracle_relabel"}
    assert set(on_disk["skipped"]) == {"relabel", "self_train"}
    for name, model in on_disk["models"].items():
        accuracy = model["final_test_accuracy"]
        assert accuracy["n"] == 2 and 0.0 <= accuracy["mean"] <= 1.0
        assert model["uses_clean_labels"] == (name in ("forward", "oracle_relabel")), name
    for name in ("transition_estimate.png", "transition_free.png", "folder_samples.png", "audit_samples.png",
                 "learning_curves.png", "confusion_scratch.png"):
        assert (workdir / name).stat().st_size > 5000, name
    assert on_disk["data"]["origin"] == "replica" and (workdir / "noisy-mnist.zip").is_file()
    assert on_disk["part1_checkpoint"]["checkpoint"].endswith("part1-quick")
    grafted = on_disk["models"]["pretrained"]["transfer"]
    assert grafted["checkpoint"].endswith("part1-quick") and grafted["kept_fresh"]
    assert all("/trunk/" in p for p in grafted["copied"]) and all("/head/" in p for p in grafted["kept_fresh"])
    assert on_disk["models"]["scratch"]["transfer"] is None


@pytest.mark.slow
def test_quick_run_reads_complementary_labels_with_and_without_the_oracle(quick_run):
    diagnosis = quick_run[0]["diagnosis"]
    assert diagnosis["kind"] == "complementary" and diagnosis["oracle"]["mapping"] == list(range(10))
    assert diagnosis["oracle_free"]["kind"] == "complementary" and diagnosis["oracle_free"]["anchor"] == "least likely"
    assert diagnosis["agree"]
    truth = quick_run[0]["truth_check"]
    assert truth["kind_matches"] and truth["planted_kind"] == "complementary"


@pytest.mark.slow
def test_quick_run_audit_finds_the_mac_files_and_no_test_leak(quick_run):
    audited = quick_run[0]["audit"]
    files = audited["files"]
    assert files["is_zip"] and files["image_files"] == 3000 and files["extensions"] == {"jpg": 3000}
    assert files["stray_files"]["by_reason"] == {"macOS metadata": 1}  # the __MACOSX/ folder, skipped whole
    assert list(files["jpeg_quality_estimate"]) == [75]
    assert audited["duplicates_in_mnist_test"]["exact"] == 0 and audited["duplicates_inside"]["exact"] == 0


@pytest.mark.slow
def test_quick_run_never_had_the_truth_file_while_training(quick_run):
    results, _, seen = quick_run
    assert seen["truth_absent_while_training"]
    assert {"scratch", "pretrained", "comp_forward", "forward", "reference"} <= set(seen["trained"])
    assert results["truth_check"]["read_after_training"]


@pytest.mark.slow
def test_folder_labels_score_below_chance_and_complementary_learning_fixes_them(quick_run):
    models = quick_run[0]["models"]
    for name in ("scratch", "pretrained"):
        # the model learns "not k": its most likely digit is one the image is not
        assert models[name]["final_test_accuracy"]["mean"] < 0.1
        assert models[name]["least_likely"]["final_test_accuracy"]["mean"] > 0.15
    # a tiny model, 2 epochs of 3,000 complementary labels (log(10/9) nats each): well above chance,
    # far from done (the quick run measured 0.28 for comp_forward)
    for name in ("comp_forward", "comp_forward_trunk"):
        assert models[name]["final_test_accuracy"]["mean"] > 0.2, name
        assert models[name]["final_test_accuracy"]["mean"] > models["scratch"]["final_test_accuracy"]["mean"] + 0.1


def _posteriors(spec, n=4000, sharp=0.9, seed=0):
    """Held-out P(folder | image) of a folder model that learnt T's row of each image's digit, a
    little smoothed, and the folder labels drawn by ``spec``."""
    rng = np.random.default_rng(seed)
    digits = rng.integers(0, 10, n)
    T = noise.transition_matrix(spec, 10, seed)
    q = sharp * T[digits] + (1 - sharp) * rng.dirichlet(np.ones(10), n)
    return noise.corrupt_labels(digits, spec, seed), q


@pytest.mark.parametrize("spec, kind", [
    ("complementary", "complementary"), ("clean", "clean"), ("permutation", "clean"),
    ("permutation+symmetric:0.2", "symmetric"), ("symmetric:0.3", "symmetric"), ("pairflip:0.3", "pair_flip"),
    ("symmetric:0.9", "uninformative")])
def test_the_oracle_free_view_reads_the_posteriors_shape(spec, kind):
    folders, q = _posteriors(spec)
    free = part3_diagnosis.free_diagnosis(folders, q)
    assert free["kind"] == kind, free
    assert free["anchor"] == ("least likely" if kind == "complementary" else "most likely")
    if kind == "complementary":
        assert free["folder_is_least_likely"] < 0.05  # the folder's own digit is never the one missing


def test_the_views_disagree_on_a_permutation_and_say_why():
    folders, q = _posteriors("permutation+symmetric:0.1")
    views = part3_diagnosis.compare_views({"kind": "permutation"}, part3_diagnosis.free_diagnosis(folders, q))
    assert not views["agree"] and "cannot see a permutation (as here)" in views["note"]
    assert part3_diagnosis.compare_views({"kind": "complementary"}, {"kind": "complementary"})["agree"]


def test_the_oracle_view_reads_complementary_labels_and_renaming_inverts_a_permutation():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 10, 3000)
    probs = np.full((3000, 10), 0.02)
    probs[np.arange(3000), truth] = 0.82  # an oracle that is always right, 82% confident
    folders = noise.corrupt_labels(truth, "complementary", seed=3)
    diagnosis = part3_diagnosis.diagnose(folders, probs, min_confidence=0.5)
    assert diagnosis["kind"] == "complementary" and diagnosis["mapping"] == list(range(10))
    assert diagnosis["hole_mass"] == 0.0 and sum(diagnosis["rows_seen"]) == 3000
    permuted = noise.corrupt_labels(truth, "permutation+symmetric:0.2", seed=3)
    diagnosis = part3_diagnosis.diagnose(permuted, probs, min_confidence=0.5)
    assert diagnosis["kind"] == "permutation" and diagnosis["mapping"] == noise.derangement(10, 3).tolist()
    assert diagnosis["noise_rate"] == pytest.approx(0.2, abs=0.03)
    folder_logits = 10.0 * np.eye(10)[np.asarray(diagnosis["mapping"])[truth]][None]
    renamed = part3_diagnosis.renamed_accuracy(folder_logits, truth, diagnosis["mapping"])
    assert renamed["ensemble_accuracy"] == 1.0 and np.mean(folder_logits[0].argmax(-1) == truth) == 0.0


def test_a_model_of_complementary_folders_is_right_by_its_least_likely_class():
    digits = np.arange(10).repeat(3)
    logits = np.log((1 - np.eye(10)[digits]) / 9 + 1e-3)[None]  # it learnt P(folder | x): all but the digit
    assert np.mean(logits[0].argmax(-1) == digits) == 0.0
    assert part3_diagnosis.least_likely_accuracy(logits, digits)["ensemble_accuracy"] == 1.0


def test_pseudo_labels_rule_out_the_folder_and_keep_only_confident_ones(monkeypatch):
    # the teacher hesitates between 3 and 5 on every image; the image's folder decides it
    probs = np.zeros((4, 10))
    probs[:, 3] = probs[:, 5] = 0.5
    probs[3] = 0.1  # no idea at all: left out
    monkeypatch.setattr(part3, "predict_probs", lambda state, images, batch: (None, probs))
    data = ArrayDataset(np.zeros((4, 28, 28), np.uint8), np.array([5, 3, 7, 5], np.int32),
                        np.full(4, -1, np.int32), tuple(str(d) for d in range(10)))
    keep, labels = part3.pseudo_labels(None, part3.get_config("quick"), part3_config.METHODS["comp_nn"], data, {})
    assert keep.tolist() == [0, 1] and labels.tolist() == [3, 5]  # folder 7 leaves a tie (0.5): not confident


def views(kind: str, free_kind: str | None = None, permutation: bool = False) -> part3_config.Reading:
    """What the methods read of a diagnosis: the two views' kinds, the oracle's mapping and its T."""
    return part3_config.Reading(kinds={"oracle": kind, "oracle_free": free_kind or kind},
                                mapping=tuple(range(10)) if permutation else (0,) * 10, is_permutation=permutation,
                                transition=tuple(map(tuple, np.eye(10))))


def test_methods_say_whether_they_use_clean_labels_and_where_they_apply():
    assert not any(part3_config.METHODS[m].uses_clean_labels for m in ("folder", "comp_forward", "comp_nn", "self_train"))
    assert all(part3_config.METHODS[m].uses_clean_labels for m in ("relabel", "forward", "oracle_relabel"))
    cfg = part3.get_config("quick")
    renamed = views("permutation", "clean", permutation=True)
    comp = part3_config.train_config(cfg, part3_config.METHODS["comp_forward"], renamed)
    np.testing.assert_allclose(comp.label_transition, (1 - np.eye(10)) / 9)  # the known form, not the oracle's
    oracle_t = part3_config.train_config(cfg, part3_config.METHODS["forward"], renamed)
    np.testing.assert_allclose(oracle_t.label_transition, np.eye(10))
    assert "complementary" in part3_config.fits(part3_config.METHODS["comp_nn"], renamed)
    assert part3_config.fits(part3_config.METHODS["relabel"], renamed) is None
    assert "is not a permutation" in part3_config.fits(part3_config.METHODS["relabel"], views("permutation"))
    assert part3_config.method_of("comp_nn_trunk") == (part3_config.METHODS["comp_nn"], True)


@pytest.mark.parametrize("change, message", [
    ({"models": ("relabel", "magic")}, "unknown model 'magic'"),
    ({"models": ("self_train", "comp_forward")}, "list it before self_train"),
    ({"teacher": "self_train"}, "teacher must be"),
    ({"free_folds": 1}, "at least 2")])
def test_bad_part3_configs_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(part3.get_config(), **change)


def test_missing_part1_checkpoint_says_to_run_part1_first(tmp_path):
    with pytest.raises(CheckpointError, match="run part 1 first"):
        part3.part1_variables(part3.get_config(), tmp_path / "nothing", tmp_path, tmp_path / "work")


def test_a_part1_trunk_that_does_not_fit_the_model_is_refused(tmp_path, monkeypatch):
    trunk = {"conv0_0": {"kernel": np.zeros((3, 3, 1, 8))}, "bn0_0": {}, "conv1_0": {"kernel": np.zeros((3, 3, 8, 16))}}
    monkeypatch.setattr(part3, "has_checkpoints", lambda path: True)
    monkeypatch.setattr(part3, "pretrained_variables", lambda path, which: ({"params": {"trunk": trunk}}, {}))
    with pytest.raises(CheckpointError, match=r"widths \(8, 16\), part 3's model \(32, 64, 128\)"):
        part3.part1_variables(part3.get_config(), tmp_path / "part1", tmp_path, tmp_path / "work")


def test_part3_runs_on_the_task_set_in_the_data_root_and_on_a_replica_only_when_asked_or_absent(tmp_path,
                                                                                               monkeypatch):
    monkeypatch.setattr(part3, "make_default_set", lambda cfg, root, workdir, overwrite: workdir / "made.zip")
    cfg, work = part3.get_config(), tmp_path / "work"
    assert part3.noisy_source(cfg, tmp_path, work) == (work / "made.zip", "replica")  # no task set here
    (tmp_path / "mnistTask3").mkdir()
    assert part3.noisy_source(cfg, tmp_path, work) == (tmp_path / "mnistTask3", "task")
    (tmp_path / "mnistTask3.zip").write_bytes(b"")
    assert part3.noisy_source(cfg, tmp_path, work) == (tmp_path / "mnistTask3.zip", "task")
    replica = dataclasses.replace(cfg, data=part3_config.REPLICA)
    assert part3.noisy_source(replica, tmp_path, work) == (work / "made.zip", "replica")
    given = dataclasses.replace(cfg, data=str(tmp_path / "given.zip"))
    assert part3.noisy_source(given, tmp_path, work) == (tmp_path / "given.zip", "given")


def test_the_matched_view_counts_the_images_in_their_own_digits_folder():
    rng = np.random.default_rng(0)
    train = ArrayDataset(rng.integers(0, 256, (2000, 28, 28), dtype=np.uint8), np.arange(2000, dtype=np.int32) % 10,
                         np.full(2000, -1, np.int32), part3_config.DIGITS)
    order = rng.permutation(2000)[:1500]  # 1,500 of the training images, shuffled, in other digits' folders ...
    digits = train.labels[order]
    folders = (digits + rng.integers(1, 10, 1500)) % 10
    own = np.flatnonzero(digits == 3)[:2].tolist() + np.flatnonzero(digits == 7)[:1].tolist()
    folders[own] = digits[own]  # ... but for two threes and a seven
    noisy = np.clip(train.images[order].astype(int) + rng.integers(-2, 3, (1500, 28, 28)), 0, 255).astype(np.uint8)
    matched = part3_diagnosis.matched_view(folders, noisy, train)
    assert matched["near_copies"] == 1500 and matched["distinct_nearest"] == 1500
    assert matched["own_folder"]["images"] == 3 and matched["own_folder"]["per_digit"] == [0, 0, 0, 2, 0, 0, 0, 1, 0, 0]
    assert matched["kind"] == "complementary"
    strangers = part3_diagnosis.matched_view(folders, rng.integers(0, 256, (1500, 28, 28), dtype=np.uint8), train)
    assert strangers["near_copies"] == 0 and strangers["kind"] is None and "near copies" in strangers["reason"]


def test_a_given_folder_is_loaded_with_its_folder_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(10), 4)
    write_class_folders(images, labels, tmp_path / "given")
    cfg = dataclasses.replace(part3.get_config("quick"), data=str(tmp_path / "given"), noisy_size=20)
    data = part3.load_noisy(cfg, tmp_path / "given", cache_dir=tmp_path / "cache")
    assert len(data) == 20 and np.bincount(data.labels).tolist() == [2] * 10
    assert data.class_names == tuple(str(d) for d in range(10))


def test_a_made_set_with_other_settings_is_not_silently_reused(tmp_path):
    (tmp_path / "noisy-mnist.zip").write_bytes(b"")
    (tmp_path / "noisy-mnist.made.json").write_text(json.dumps({"corruption": "permutation", "seed": 5}))
    with pytest.raises(DataError, match="--overwrite"):
        part3.make_default_set(part3.get_config("quick"), tmp_path, tmp_path)


def test_folder_sample_grid_and_heat_map_are_drawn(tmp_path):
    data = ArrayDataset(np.zeros((30, 28, 28), np.uint8), np.repeat(np.arange(10), 3).astype(np.int32),
                        np.full(30, -1, np.int32), tuple(str(d) for d in range(10)))
    plots.plot_folder_samples(data, np.zeros(30, int), tmp_path / "grid.png", per_folder=3)
    plots.plot_folder_samples(data, None, tmp_path / "plain.png", per_folder=3)
    plots.plot_transition(np.eye(10)[noise.derangement(10, 0)], tmp_path / "T.png", "test")
    for name in ("grid.png", "plain.png", "T.png"):
        assert (tmp_path / name).stat().st_size > 1000, name


def test_make_noisy_mnist_command_refuses_a_bad_spec_before_reading_data(tmp_path, capsys):
    from jaxcnn.cli import main
    assert main(["make-noisy-mnist", "--out", str(tmp_path / "out"), "--corruption", "rotate:0.1",
                 "--data-root", str(tmp_path / "no-data")]) == 2
    assert "symmetric:RATE" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("spec, kind", [("complementary", "complementary"), ("complementary+permutation", "complementary"),
                                        ("symmetric:0.9", "uninformative"), ("clean", "clean")])
def test_the_oracle_free_view_reads_a_weak_folder_model_right(spec, kind):
    # a folder model that has learnt only 15% of the way: a shallow hole, a low peak (for clean
    # folders 0.15 + 0.85/10: read from T as clean only because the peak lies off the flat band)
    folders, q = _posteriors(spec, n=3000, sharp=0.15 if kind != "clean" else 0.5)
    free = part3_diagnosis.free_diagnosis(folders, q)
    assert free["kind"] == kind, free
    assert free["z_hole" if kind == "complementary" else "z_peak"] > (part3_diagnosis.FREE_Z if kind != "uninformative" else -9)


@pytest.mark.slow
@pytest.mark.parametrize("spec, kind", [
    ("clean", "clean"), ("complementary", "complementary"), ("permutation", "permutation"),
    ("permutation+symmetric:0.2", "permutation"), ("pairflip:0.3", "pair_flip"), ("pairflip:0.4", "pair_flip"),
    ("symmetric:0.2", "symmetric"), ("symmetric:0.3", "symmetric"), ("symmetric:0.5", "symmetric"),
    ("symmetric:0.9", "uninformative")])
def test_the_quick_oracle_names_every_kind_on_a_quick_sized_set(quick_run, real_data, spec, kind):
    """The quick run's own tiny oracle and a quick-sized set (3,000 images): as noisy as --quick gets."""
    _, workdir, _ = quick_run
    cfg = dataclasses.replace(part3.get_config("quick"), use_oracle_run=True)
    train = common.load_mnist_split(real_data, "train", cfg.noisy_size, cfg.draw_seed)
    oracle, batch, _ = part3.clean_oracle(cfg, workdir / "reference", real_data, None, workdir)
    _, probs = evaluate.predict_probs(oracle, train.inputs(), batch)
    folders = noise.corrupt_labels(train.labels, spec, seed=PLANTED_SEED)
    diagnosis = part3_diagnosis.diagnose(folders, probs, cfg.min_confidence)
    assert diagnosis["kind"] == kind, diagnosis


@pytest.mark.slow
def test_quick_run_on_generated_data_without_the_real_data_set(generated_data, tmp_path):
    """The whole part 3 (its quick part 1, the replica of the task's set, audit, diagnosis, every
    model) on printed digits and characters: no file of the real data set is read."""
    results = part3.run(part3.get_config("quick"), generated_data, tmp_path, cache_dir=tmp_path / "cache")
    assert results["data"]["origin"] == "replica" and results["part1_checkpoint"]["checkpoint"].endswith("part1-quick")
    assert results["diagnosis"]["oracle"]["kind"] == "complementary"
    assert {"scratch", "pretrained"} <= set(results["models"])
    assert results["models"]["pretrained"]["transfer"]["copied"]
    assert (tmp_path / "results.json").is_file() and (tmp_path / "transition_estimate.png").is_file()


@pytest.mark.slow
def test_on_the_task_set_the_program_finds_mnist_train_and_the_images_in_their_own_folder(real_data, tmp_path):
    """The task's own set against what its file names tell (``image_NNNNNN.jpg`` is MNIST train's
    image NNNNNN): read here to check the program, which never reads a name."""
    from jaxcnn.data.audit import duplicates
    from jaxcnn.data.imagefiles import list_images
    from jaxcnn.data.mnist import load_mnist
    task = real_data / "mnistTask3.zip"
    if not task.is_file():
        pytest.skip(f"{task} not staged")
    noisy = part3.load_noisy(part3.get_config(), task, cache_dir=tmp_path)
    train, test = load_mnist(real_data, "train"), load_mnist(real_data, "test")
    matched = part3_diagnosis.matched_view(noisy.labels, noisy.images, train)
    names = [e.name for e in list_images(task).entries]  # the loader's order: folder by folder, as listed
    names = [n for digit in part3_config.DIGITS for n in names if n.rpartition("/")[0].endswith(f"/{digit}")]
    numbers = np.array([int(n.rpartition("_")[2].removesuffix(".jpg")) for n in names])
    truth = train.labels[numbers]
    in_own = truth == noisy.labels
    assert matched["distinct_nearest"] == len(noisy) == 60000 and matched["near_copies"] > 0.99 * len(noisy)
    assert matched["own_folder"]["images"] == in_own.sum()
    assert matched["own_folder"]["per_digit"] == np.bincount(truth[in_own], minlength=10).tolist()
    assert matched["kind"] == "complementary" and matched["mapping"] == list(range(10))
    assert duplicates(noisy.images, test.images)["near"] == 0  # nothing of MNIST test: the test score is fair




def test_the_plan_trains_what_fits_the_diagnosis_teachers_first_and_the_folder_models_last():
    cfg = part3.get_config()
    plan, skipped = part3.plan_models(cfg, views("complementary"))
    assert list(plan) == ["comp_forward", "comp_forward_trunk", "comp_nn", "comp_nn_trunk", "self_train",
                          "self_train_trunk", "forward", "oracle_relabel", "scratch", "pretrained"]
    assert list(skipped) == ["relabel"] and "permutation" in skipped["relabel"]
    assert plan["self_train"].teacher == "comp_forward" and plan["self_train_trunk"].teacher == "comp_forward_trunk"
    assert [name for name, step in plan.items() if step.from_trunk] == [
        "comp_forward_trunk", "comp_nn_trunk", "self_train_trunk", "pretrained"]
    assert plan["comp_forward"].train.label_transition == part3_config.COMPLEMENTARY_T  # the known form, no oracle
    assert plan["forward"].train.label_transition == tuple(map(tuple, np.eye(10)))  # the oracle's T
    assert plan["comp_nn"].train.loss == "complementary_nn" and plan["scratch"].train.loss == "cross_entropy"


def test_the_plan_for_renamed_folders_relabels_and_leaves_the_complementary_methods_out():
    cfg = dataclasses.replace(part3.get_config(), baseline_epochs=2)
    plan, skipped = part3.plan_models(cfg, views("permutation", permutation=True))
    assert {"comp_forward", "comp_nn", "comp_nn_trunk", "self_train", "self_train_trunk"} <= set(skipped)
    assert "relabel" in plan and plan["relabel"].method.labels == "relabelled"
    assert plan["scratch"].train.epochs == plan["pretrained"].train.epochs == 2


def test_the_quick_part1_that_part3_falls_back_on_is_part1s_quick_recipe_with_part3s_model():
    quick = part3.get_config("quick")
    part1_quick = part1.get_config("quick")
    assert quick.part1_fallback == dataclasses.replace(part1_quick.train, model=quick.model)
    assert (part3_config.PART1_DATA, part3_config.PART1_PREPROCESS) == (part1_quick.data_subdir, part1_quick.preprocess)
