"""Part 3's run: the plan, and the corrupted-folder study end to end in quick mode."""

import collections
import dataclasses
import importlib
import json
import shutil

import jax
import numpy as np
import pytest

from jaxcnn.compilation import TRAIN_STEP_PROGRAMS, counting_compilations
from jaxcnn.data import noise
from jaxcnn.data.mnist import load_mnist_split
from jaxcnn.evaluation import evaluate
from jaxcnn.experiments import part3
from jaxcnn.experiments.part3 import diagnosis, sources
from jaxcnn.experiments.part3.config import REPLICA
from jaxcnn.experiments.part3.methods import COMPLEMENTARY_T
from jaxcnn.experiments.part3.run import plan_models
from tests.experiments.part3.conftest import views

# the module, not the function ``run`` that the package exposes under its name
RUN = importlib.import_module("jaxcnn.experiments.part3.run")
PLANTED_SEED = 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, real_data):
    """One quick part-3 run on the real data; the truth file is hidden from it until the final scoring."""
    tmp = tmp_path_factory.mktemp("part3")
    workdir, stash = tmp / "run", tmp / "stash.json"
    seen = {}
    real_make, real_score = noise.make_noisy_mnist, diagnosis.score_estimate

    def make_then_hide_truth(*args, **kwargs):
        summary = real_make(*args, **kwargs)
        shutil.move(summary["truth_file"], stash)
        return summary

    def restore_truth_then_score(data_dir, diagnosed):
        seen["truth_absent_while_training"] = not noise.truth_path(data_dir).exists()
        seen["trained"] = sorted(p.name for p in workdir.iterdir() if (p / "checkpoints").is_dir())
        shutil.move(stash, noise.truth_path(data_dir))
        return real_score(data_dir, diagnosed)

    real_part1 = RUN.part1_trunk

    def part1_apart(*args, **kwargs):  # part 1's programs are part 1's, made here only for want of one
        start = len(seen["compiled"])
        out = real_part1(*args, **kwargs)
        seen["part1_compiled"] = seen["compiled"][start:]
        del seen["compiled"][start:]
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RUN, "part1_trunk", part1_apart)
        mp.setattr(sources, "make_noisy_mnist", make_then_hide_truth)
        mp.setattr(RUN, "score_estimate", restore_truth_then_score)
        cfg = dataclasses.replace(part3.get_config("quick"), data=REPLICA)
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
    diagnosed = quick_run[0]["diagnosis"]
    assert diagnosed["kind"] == "complementary" and diagnosed["oracle"]["mapping"] == list(range(10))
    assert diagnosed["oracle_free"]["kind"] == "complementary" and diagnosed["oracle_free"]["anchor"] == "least likely"
    assert diagnosed["agree"]
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
    train = load_mnist_split(real_data, "train", cfg.noisy_size, cfg.draw_seed)
    oracle = sources.clean_oracle(cfg, workdir / "reference", None, sources.Place(real_data, workdir))
    _, probs = evaluate.predict_probs(oracle.state, train.inputs(), oracle.eval_batch_size)
    folders = noise.corrupt_labels(train.labels, spec, seed=PLANTED_SEED)
    diagnosed = diagnosis.diagnose(folders, probs, cfg.min_confidence)
    assert diagnosed["kind"] == kind, diagnosed


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


def test_the_plan_trains_what_fits_the_diagnosis_teachers_first_and_the_folder_models_last():
    cfg = part3.get_config()
    plan, skipped = plan_models(cfg, views("complementary"))
    assert list(plan) == ["comp_forward", "comp_forward_trunk", "comp_nn", "comp_nn_trunk", "self_train",
                          "self_train_trunk", "forward", "oracle_relabel", "scratch", "pretrained"]
    assert list(skipped) == ["relabel"] and "permutation" in skipped["relabel"]
    assert plan["self_train"].teacher == "comp_forward" and plan["self_train_trunk"].teacher == "comp_forward_trunk"
    assert [name for name, step in plan.items() if step.from_trunk] == [
        "comp_forward_trunk", "comp_nn_trunk", "self_train_trunk", "pretrained"]
    assert plan["comp_forward"].train.label_transition == COMPLEMENTARY_T  # the known form, no oracle
    assert plan["forward"].train.label_transition == tuple(map(tuple, np.eye(10)))  # the oracle's T
    assert plan["comp_nn"].train.loss == "complementary_nn" and plan["scratch"].train.loss == "cross_entropy"


def test_the_plan_for_renamed_folders_relabels_and_leaves_the_complementary_methods_out():
    cfg = dataclasses.replace(part3.get_config(), baseline_epochs=2)
    plan, skipped = plan_models(cfg, views("permutation", permutation=True))
    assert {"comp_forward", "comp_nn", "comp_nn_trunk", "self_train", "self_train_trunk"} <= set(skipped)
    assert "relabel" in plan and plan["relabel"].method.labels == "relabelled"
    assert plan["scratch"].train.epochs == plan["pretrained"].train.epochs == 2
