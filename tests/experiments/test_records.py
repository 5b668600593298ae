"""A model's record in a part's results: convergence and final quality from fit's history and test
predictions, and how the report writes it."""

import numpy as np
import pytest

from jaxcnn.document import stat_text
from jaxcnn.evaluation.convergence import stat
from jaxcnn.experiments.records import models_table, paired_lines, summarise_history, summarise_predictions
from jaxcnn.probabilities import softmax_mean
from tests.evaluation.test_convergence import HISTORY


def test_summarise_history_reports_first_final_gap_and_unreached_thresholds():
    summary = summarise_history(HISTORY, thresholds=(0.98, 0.99, 0.999))
    assert summary["first_epoch_test_accuracy"]["mean"] == pytest.approx(0.96)
    assert summary["final_test_accuracy"]["values"] == [0.989, 0.986]
    assert summary["train_test_gap"]["values"] == pytest.approx([0.006, 0.004])
    assert summary["epochs_to_98"]["mean"] == 2.5 and summary["epochs_to_98"]["n"] == 2
    assert summary["epochs_to_99"] == {"mean": 3.0, "ci95": None, "n": 1, "values": [None, 3]}
    assert summary["seconds_to_99.9"]["n"] == 0
    assert summary["train_seconds"] == 60.0 and summary["compile_seconds"] == 6.0  # 66 wall seconds, 6 compiling
    assert stat_text(summary["epochs_to_99"], "{:.1f}") == "3.0 (1/2 seeds)"
    assert stat_text(summary["seconds_to_99.9"]) == "not reached"
    assert stat_text(stat([1.0, 2.0, 3.0]), "{:.2f}") == "2.00 ± 2.48"


def test_summarise_predictions_scores_each_seed_and_their_softmax_ensemble():
    labels = np.array([0, 1, 1])
    logits = np.log(np.array([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]],
                              [[0.45, 0.55], [0.4, 0.6], [0.3, 0.7]]]))  # each seed gets one wrong
    summary = summarise_predictions(logits, softmax_mean(logits), labels, ("a", "b"))
    expected_nll = [-np.mean(np.log([0.9, 0.8, 0.4])), -np.mean(np.log([0.45, 0.6, 0.7]))]
    assert summary["final_test_nll"]["values"] == pytest.approx(expected_nll, abs=1e-6)
    assert summary["ensemble"]["accuracy"] == 1.0  # mean probs: (.675, .325), (.3, .7), (.45, .55)
    assert summary["ensemble"]["per_class_f1"] == {"a": 1.0, "b": 1.0}


def test_paired_lines_say_a_minus_b_seed_by_seed_with_the_verdict():
    b = summarise_history(HISTORY, thresholds=(0.98,))
    a = {**b, "final_test_accuracy": stat([0.990, 0.987]), "final_test_nll": stat([0.1, 0.1])}
    b = {**b, "final_test_nll": stat([0.1, 0.1])}
    final, nll, steps, timed = paired_lines(a, b, "C", "B")
    assert final == ("final test accuracy C 0.9885 ± 0.0191 vs B 0.9875 ± 0.0191, C - B paired over seeds "
                     "+0.0010 ± 0.0000 (better)")
    assert nll == "test NLL C - B +0.0000 ± 0.0000 (no difference measured)"
    assert steps == "steps to 98%: C 250 ± 635 vs B 250 ± 635, C - B +0 ± 0 (no difference measured)"
    assert timed == ("train seconds to 98%, compilation apart: C 45.0 ± 63.5 vs B 45.0 ± 63.5, C - B +0.0 ± 0.0 "
                     "(no difference measured) (compile seconds C 6.0, B 6.0)")


def test_a_record_without_compile_time_says_its_seconds_were_not_recorded():
    old = [{k: v for k, v in r.items() if k != "compile_seconds"} for r in HISTORY]  # an earlier layout
    record = {**summarise_history(old, thresholds=(0.98,)), "ensemble": {"accuracy": 0.99},
              "final_test_nll": stat([0.1, 0.1]), "final_test_ece": stat([0.01, 0.01])}
    assert record["compile_seconds"] is None and record["train_seconds"] == 66.0
    table = {row[0]: row[1:] for row in models_table({"B": record}, (0.98,), "cap").rows}
    assert table["train seconds to 98%"] == ["not recorded"] and table["compile seconds"] == ["not recorded"]
    assert table["train seconds"] == ["66.0 (compile included)"] and table["steps to 98%"] == ["250 ± 635"]
    assert paired_lines(record, record, "C", "B")[-1] == ("train seconds to 98%: not recorded (the runs counted "
                                                          "compilation in their seconds)")
