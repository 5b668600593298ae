"""Convergence read from fit's history; figures over seeds and their paired differences."""

import pytest

from jaxcnn.evaluation.convergence import (
    epochs_to_accuracy, paired, seconds_to_accuracy, stat, steps_to_accuracy, verdict,
)

DIGITS = tuple("0123456789")


def record(epoch, val_accuracy, seconds=10.0, train_accuracy=None, compile_seconds=0.0):
    """One epoch of fit's history for two seeds."""
    return {"epoch": epoch, "step": 100 * epoch, "val_accuracy": val_accuracy, "val_loss": [0.1, 0.1], "seconds": seconds,
            "compile_seconds": compile_seconds,
            "train_accuracy": train_accuracy or val_accuracy, "train_loss": [0.1, 0.1],
            "val_accuracy_ensemble": max(val_accuracy)}


HISTORY = [record(1, [0.950, 0.970], seconds=36.0, compile_seconds=6.0),
           record(2, [0.981, 0.979]),
           record(3, [0.985, 0.990]),
           record(4, [0.989, 0.986], train_accuracy=[0.995, 0.990])]


def test_epochs_and_seconds_to_accuracy_per_seed():
    assert epochs_to_accuracy(HISTORY, 0.98) == [2, 3]
    assert epochs_to_accuracy(HISTORY, 0.99) == [None, 3]
    assert seconds_to_accuracy(HISTORY, 0.98) == [40.0, 50.0]
    assert seconds_to_accuracy(HISTORY, 0.995) == [None, None]


def test_steps_and_seconds_to_accuracy_count_the_first_epochs_probes():
    probed = [{**HISTORY[0], "probes": [{"step": 20, "seconds": 17.0, "compile_seconds": 5.0, "val_accuracy": [0.5, 0.981]},
                                         {"step": 40, "seconds": 26.0, "compile_seconds": 6.0, "val_accuracy": [0.7, 0.99]}]},
              *HISTORY[1:]]
    assert steps_to_accuracy(probed, 0.98) == [200, 20]
    assert seconds_to_accuracy(probed, 0.99) == [None, 20.0]
    assert epochs_to_accuracy(probed, 0.98) == [2, 3]  # end-of-epoch validations only


def test_seconds_to_accuracy_leave_compilation_out_and_are_unknown_where_it_was_not_recorded():
    compiling, reusing = HISTORY, [record(1, [0.950, 0.970], seconds=30.0), *HISTORY[1:]]
    assert seconds_to_accuracy(compiling, 0.98) == seconds_to_accuracy(reusing, 0.98) == [40.0, 50.0]
    old = [{k: v for k, v in r.items() if k != "compile_seconds"} for r in HISTORY]  # written before it was recorded
    assert seconds_to_accuracy(old, 0.98) == [None, None] and steps_to_accuracy(old, 0.98) == [200, 300]


def test_pairing_seeds_cancels_what_they_share_and_the_verdict_reads_the_interval():
    b, c = stat([0.990, 0.995, 0.980]), stat([0.991, 0.996, 0.981])  # each seed of C 0.001 above its B
    difference = paired(c, b)
    assert difference["n"] == 3 and difference["mean"] == pytest.approx(0.001) and difference["ci95"] < 1e-9
    assert verdict(difference) == "better" and verdict(difference, lower_is_better=True) == "worse"
    assert c["mean"] - b["mean"] < c["ci95"]  # unpaired, the two intervals overlap
    assert verdict(paired(stat([0.99, 0.98, 0.995]), b)) == "no difference measured"
    one_pair = paired(stat([None, 100, 200]), stat([150, None, 250]))  # steps: a seed that never got there
    assert one_pair["n"] == 1 and one_pair["mean"] == -50 and verdict(one_pair) == "no difference measured"
    with pytest.raises(ValueError, match="cannot pair 1 seeds with 2"):
        paired(stat([1.0]), stat([1.0, 2.0]))
