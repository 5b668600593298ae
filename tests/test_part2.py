"""Part 2: subsets, derived metrics, grafting A's saved trunk, and the quick run end to end."""

import json

import jax
import numpy as np
import pytest

from jaxcnn import part2 as P
from jaxcnn import train as T
from jaxcnn.augment import NO_AUGMENT
from jaxcnn.config import ModelConfig, TrainConfig, override
from jaxcnn.dataset import ArrayDataset
from jaxcnn.evaluate import load_run
from jaxcnn.fit import fit, softmax_mean

DIGITS = tuple("0123456789")


def digits_dataset(n: int, seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.int32),
                        np.full(n, -1, np.int32), DIGITS)


def record(epoch, val_accuracy, seconds=10.0, train_accuracy=None):
    """One epoch of fit's history for two seeds."""
    return {"epoch": epoch, "step": 100 * epoch, "val_accuracy": val_accuracy, "val_loss": [0.1, 0.1], "seconds": seconds,
            "train_accuracy": train_accuracy or val_accuracy, "train_loss": [0.1, 0.1],
            "val_accuracy_ensemble": max(val_accuracy)}


HISTORY = [record(1, [0.950, 0.970], seconds=30.0),
           record(2, [0.981, 0.979]),
           record(3, [0.985, 0.990]),
           record(4, [0.989, 0.986], train_accuracy=[0.995, 0.990])]


# --- config and data ----------------------------------------------------------------------------

def test_one_model_config_is_shared_by_a_and_mnist_runs_even_after_override():
    cfg = override(P.get_config(quick=True), "model.widths=4,8")
    assert cfg.digits.model == cfg.mnist.model == cfg.model
    assert cfg.mnist.model.widths == (4, 8)
    assert P.get_config().mnist.seeds == (0, 1, 2, 3, 4)


def test_balanced_subset_is_deterministic_balanced_and_nested():
    labels = np.random.default_rng(1).integers(0, 10, 5000)
    small, again = P.balanced_subset(labels, 100, seed=7), P.balanced_subset(labels, 100, seed=7)
    np.testing.assert_array_equal(small, again)
    assert np.bincount(labels[small], minlength=10).tolist() == [10] * 10
    assert len(np.unique(small)) == 100
    assert np.bincount(labels[P.balanced_subset(labels, 23, seed=7)], minlength=10).tolist() == [3] * 3 + [2] * 7
    assert set(small) <= set(P.balanced_subset(labels, 1000, seed=7))
    assert not np.array_equal(small, P.balanced_subset(labels, 100, seed=8))


def test_balanced_subset_refuses_a_class_too_small_for_its_share():
    labels = np.array([0] * 50 + [1] * 3)
    with pytest.raises(ValueError, match="needs 5 examples of class 1"):
        P.balanced_subset(labels, 10, seed=0)


def test_subsets_are_repeated_to_the_full_size_and_must_be_smaller_than_it():
    train = digits_dataset(200)
    cfg = P.Part2Config(subset_sizes=(30,))
    subset = P.data_size_subsets(cfg, train)[30]
    assert len(subset) == 200
    assert len(np.unique(subset.images.reshape(200, -1), axis=0)) == 30
    assert len(P.data_size_subsets(P.Part2Config(subset_sizes=(30,), subset_epoch_images=90), train)[30]) == 90
    with pytest.raises(ValueError, match="not smaller"):
        P.data_size_subsets(P.Part2Config(subset_sizes=(200,)), train)


# --- derived metrics ----------------------------------------------------------------------------

def test_epochs_and_seconds_to_accuracy_per_seed():
    assert P.epochs_to_accuracy(HISTORY, 0.98) == [2, 3]
    assert P.epochs_to_accuracy(HISTORY, 0.99) == [None, 3]
    assert P.seconds_to_accuracy(HISTORY, 0.98) == [40.0, 50.0]
    assert P.seconds_to_accuracy(HISTORY, 0.995) == [None, None]


def test_steps_and_seconds_to_accuracy_count_the_first_epochs_probes():
    probed = [{**HISTORY[0], "probes": [{"step": 20, "seconds": 12.0, "val_accuracy": [0.5, 0.981]},
                                         {"step": 40, "seconds": 20.0, "val_accuracy": [0.7, 0.99]}]},
              *HISTORY[1:]]
    assert P.steps_to_accuracy(probed, 0.98) == [200, 20]
    assert P.seconds_to_accuracy(probed, 0.99) == [None, 20.0]
    assert P.epochs_to_accuracy(probed, 0.98) == [2, 3]  # end-of-epoch validations only


def test_summarise_history_reports_first_final_gap_and_unreached_thresholds():
    summary = P.summarise_history(HISTORY, thresholds=(0.98, 0.99, 0.999))
    assert summary["first_epoch_test_accuracy"]["mean"] == pytest.approx(0.96)
    assert summary["final_test_accuracy"]["values"] == [0.989, 0.986]
    assert summary["train_test_gap"]["values"] == pytest.approx([0.006, 0.004])
    assert summary["epochs_to_98"]["mean"] == 2.5 and summary["epochs_to_98"]["n"] == 2
    assert summary["epochs_to_99"] == {"mean": 3.0, "ci95": None, "n": 1, "values": [None, 3]}
    assert summary["seconds_to_99.9"]["n"] == 0
    assert summary["train_seconds"] == 60.0
    assert P.format_stat(summary["epochs_to_99"], 1) == "3.0 (1/2 seeds)"
    assert P.format_stat(summary["seconds_to_99.9"]) == "not reached"
    assert P.format_stat(P.stat([1.0, 2.0, 3.0]), 2) == "2.00 ± 2.48"


def test_summarise_predictions_scores_each_seed_and_their_softmax_ensemble():
    labels = np.array([0, 1, 1])
    logits = np.log(np.array([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]],
                              [[0.45, 0.55], [0.4, 0.6], [0.3, 0.7]]]))  # each seed gets one wrong
    summary = P.summarise_predictions(logits, softmax_mean(logits), labels, ("a", "b"))
    expected_nll = [-np.mean(np.log([0.9, 0.8, 0.4])), -np.mean(np.log([0.45, 0.6, 0.7]))]
    assert summary["final_test_nll"]["values"] == pytest.approx(expected_nll, abs=1e-6)
    assert summary["ensemble"]["accuracy"] == 1.0  # mean probs: (.675, .325), (.3, .7), (.45, .55)
    assert summary["ensemble"]["per_class_f1"] == {"a": 1.0, "b": 1.0}


# --- transfer -----------------------------------------------------------------------------------

def test_graft_init_gives_every_member_a_saved_trunk_exactly_and_a_fresh_head(tmp_path):
    tiny = TrainConfig(seeds=(3, 4), epochs=1, batch_size=16, model=ModelConfig(widths=(4,), hidden=8),
                       augment=NO_AUGMENT)
    fit(digits_dataset(32), digits_dataset(20, seed=1), tiny, tmp_path / "A")
    saved, _, _, _ = load_run(tmp_path / "A", "best")
    source, record = P.pretrained_variables(tmp_path / "A")
    assert record == {"checkpoint": str(tmp_path / "A"), "epoch": 1, "member": 0}
    fresh = T.create_population((0, 1, 2), 10, tiny, 32)

    grafted = P.graft_init(source)(fresh)

    for collection in ("params", "batch_stats"):
        a_trunk = getattr(saved, collection)["trunk"]
        for member in range(3):
            jax.tree.map(np.testing.assert_array_equal, T.unstack(getattr(grafted, collection)["trunk"], member),
                         T.unstack(a_trunk, 0))
        jax.tree.map(np.testing.assert_array_equal, getattr(grafted, collection)["head"],
                     getattr(fresh, collection)["head"])
    kernel = lambda state, member: np.asarray(state.params["trunk"]["conv0_0"]["kernel"][member])
    assert not np.array_equal(kernel(saved, 0), kernel(saved, 1))  # so "member 0" is a real choice
    assert not np.array_equal(kernel(saved, 0), kernel(fresh, 0))  # so the graft is not a no-op
    jax.tree.map(np.testing.assert_array_equal, grafted.opt_state, fresh.opt_state)


# --- end to end ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_quick_run_end_to_end(shared_data, tmp_path):
    cfg = P.get_config(quick=True)
    results = P.run(cfg, shared_data, tmp_path, cache_dir=tmp_path / "cache")

    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["models"]) == {"B", "C", "C_frozen"}
    for name, model in saved["models"].items():
        assert len(model["history"]) == cfg.mnist.epochs
        for key in ("first_epoch_test_accuracy", "epochs_to_98", "seconds_to_99", "final_test_accuracy",
                    "final_test_nll", "final_test_ece", "train_test_gap"):
            assert len(model[key]["values"]) == len(cfg.mnist.seeds), (name, key)
        assert set(model["ensemble"]["per_class_f1"]) == set(DIGITS)
        # The NLL scored from the final state's predictions is the loss fit logged for that epoch.
        assert model["final_test_nll"]["values"] == pytest.approx(model["history"][-1]["val_loss"], rel=1e-4)
    assert saved["models"]["B"]["transfer"] is None
    for name in ("C", "C_frozen"):  # where the trunk came from, and exactly which arrays were copied
        transfer = saved["models"][name]["transfer"]
        assert transfer["checkpoint"] == str(tmp_path / "A") and transfer["epoch"] == cfg.digits.epochs
        assert {p.split("/")[1] for p in transfer["copied"]} == {"trunk"}
        assert {p.split("/")[1] for p in transfer["kept_fresh"]} == {"head"}
    assert set(saved["data_size"]["C"]) == {"100", "500", "2000"}
    assert saved["A"]["validation"] is None and saved["data"]["digits_val"] == 0  # A learns every writer
    assert saved["A"]["writers"] == list(range(1, 41))
    for png in ("learning_curves", "test_loss_curves", "data_size_curve", "confusion_B", "confusion_C"):
        assert (tmp_path / f"{png}.png").stat().st_size > 0
    lines = P.summary_lines(results)
    assert any(line.startswith("final test accuracy") for line in lines)

    # C_frozen trained only its head: its trunk is still A's best member 0, bit for bit.
    a_state, _, _, _ = load_run(tmp_path / "A", "best")
    frozen, _, _, _ = load_run(tmp_path / "C_frozen", "latest")
    c_state, _, _, _ = load_run(tmp_path / "C", "latest")
    for collection in ("params", "batch_stats"):
        a_trunk = T.unstack(getattr(a_state, collection)["trunk"], 0)
        for member in range(len(cfg.mnist.seeds)):
            jax.tree.map(np.testing.assert_array_equal,
                         T.unstack(getattr(frozen, collection)["trunk"], member), a_trunk)
    c_kernel = np.asarray(c_state.params["trunk"]["conv0_0"]["kernel"][0])
    assert not np.array_equal(c_kernel, np.asarray(a_state.params["trunk"]["conv0_0"]["kernel"][0]))
