"""Classification figures checked against small cases computed by hand."""

import math

import numpy as np
import pytest

from jaxcnn.evaluation.metrics import (
    casefold_accuracy,
    classification_report,
    confusion_matrix,
    mean_ci95,
    most_confused,
    per_class_f1,
)
from jaxcnn.probabilities import expected_calibration_error


def one_hot_probs(predictions, num_classes, confidence=1.0):
    """Probabilities that put ``confidence`` on each prediction and spread the rest evenly."""
    rest = (1 - confidence) / (num_classes - 1)
    probs = np.full((len(predictions), num_classes), rest)
    probs[np.arange(len(predictions)), predictions] = confidence
    return probs


def test_confusion_matrix_counts_true_rows_predicted_columns():
    labels = [0, 0, 0, 1, 2, 2]
    predictions = [0, 1, 1, 1, 0, 2]
    expected = [[1, 2, 0],
                [0, 1, 0],
                [1, 0, 1]]
    np.testing.assert_array_equal(confusion_matrix(labels, predictions, 3), expected)


def test_confusion_matrix_counts_repeated_pairs():
    counts = confusion_matrix([1, 1, 1], [0, 0, 0], 2)  # np.add.at, not fancy-index assignment
    np.testing.assert_array_equal(counts, [[0, 0], [3, 0]])


def test_per_class_f1_by_hand():
    confusion = np.array([[1, 2, 0], [0, 1, 0], [1, 0, 1]])
    # class 0: precision 1/2, recall 1/3 -> 0.4; class 1: 1/3, 1 -> 0.5; class 2: 1, 1/2 -> 2/3
    np.testing.assert_allclose(per_class_f1(confusion), [0.4, 0.5, 2 / 3])


def test_casefold_accuracy_counts_a_letter_in_the_other_case():
    names = ("0", "C", "c", "O", "o", "d")
    labels = [2, 1, 4, 3, 2, 0]       # c  C  o  O  c  0
    predictions = [1, 2, 3, 4, 5, 3]  # C  c  O  o  d  O
    # the first four differ only in case; c->d and 0->O are real mistakes
    assert casefold_accuracy(labels, predictions, names) == pytest.approx(4 / 6)
    assert np.mean(np.array(labels) == predictions) == 0.0


@pytest.mark.parametrize("confidence", [0.6, 0.8, 1.0])
def test_ece_of_a_perfectly_calibrated_toy_case_is_zero(confidence):
    n = 100
    labels = np.zeros(n, int)
    right = int(round(confidence * n))
    predictions = np.r_[np.zeros(right, int), np.ones(n - right, int)]
    probs = one_hot_probs(predictions, 3, confidence)  # right exactly `confidence` of the time
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_an_overconfident_model():
    # half the examples at confidence 0.9 with all right, half at 0.95 with none right
    labels = np.zeros(10, int)
    probs = np.r_[one_hot_probs(np.zeros(5, int), 2, 0.9), one_hot_probs(np.ones(5, int), 2, 0.95)]
    expected = 0.5 * abs(1.0 - 0.9) + 0.5 * abs(0.0 - 0.95)
    assert expected_calibration_error(probs, labels) == pytest.approx(expected)


def test_most_confused_orders_off_diagonal_counts_and_drops_zeros():
    names = ("a", "b", "c")
    confusion = np.array([[50, 3, 1],
                          [7, 40, 0],
                          [0, 5, 60]])
    pairs = most_confused(confusion, names)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        ("b", "a", 7), ("c", "b", 5), ("a", "b", 3), ("a", "c", 1)]
    assert most_confused(confusion, names, top=2) == pairs[:2]
    assert confusion[0, 0] == 50  # the caller's matrix is not changed


def test_most_confused_of_a_perfect_classifier_is_empty():
    assert most_confused(np.diag([3, 4]), ("x", "y")) == []


def test_mean_ci95_against_a_hand_computation():
    values = [0.90, 0.92, 0.94, 0.96]
    mean = 0.93
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    t_975_df3 = 3.182446305284263  # Student-t 97.5% quantile, 3 degrees of freedom (tables)
    out = mean_ci95(values)
    assert out["n"] == 4
    assert out["mean"] == pytest.approx(mean)
    assert out["ci95"] == pytest.approx(t_975_df3 * sd / 2)


def test_mean_ci95_of_one_value_has_no_interval():
    out = mean_ci95([0.5])
    assert out["mean"] == 0.5 and out["n"] == 1 and out["ci95"] is None


def test_classification_report_on_a_small_case():
    names = ("0", "C", "c")
    labels = np.array([0, 1, 2, 2])
    probs = one_hot_probs(np.array([0, 1, 1, 2]), 3, 0.8)
    report = classification_report(probs, labels, names)
    assert report["n"] == 4
    assert report["accuracy"] == pytest.approx(0.75)
    assert report["accuracy_casefold"] == pytest.approx(1.0)
    assert report["nll"] == pytest.approx(-(3 * math.log(0.8) + math.log(0.1)) / 4)
    assert report["per_class_accuracy"] == pytest.approx({"0": 1.0, "C": 1.0, "c": 0.5})
    assert report["most_confused"] == [{"true": "c", "predicted": "C", "count": 1}]
    assert report["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_top3_per_writer_and_confusable_groups_on_a_small_case():
    names = ("0", "O", "o", "S", "s", "x")
    labels = np.array([0, 1, 2, 3, 4, 5, 1, 4])
    predicted = np.array([2, 1, 0, 4, 4, 5, 0, 3])  # 0->o, o->0, S->s, O->0, s->S wrong
    probs = np.array([[0.2, 0.1, 0.4, 0.15, 0.1, 0.05],  # true 0 is second: in the top 3
                      [0.1, 0.5, 0.1, 0.1, 0.1, 0.1],
                      [0.5, 0.2, 0.15, 0.1, 0.03, 0.02],
                      [0.05, 0.05, 0.1, 0.3, 0.45, 0.05],
                      [0.1, 0.1, 0.1, 0.1, 0.5, 0.1],
                      [0.1, 0.1, 0.1, 0.1, 0.1, 0.5],
                      [0.4, 0.05, 0.3, 0.1, 0.1, 0.05],  # true O is fifth: the only miss of the top 3
                      [0.05, 0.05, 0.05, 0.5, 0.3, 0.05]])
    assert probs.argmax(-1).tolist() == predicted.tolist()
    writers = np.array([7, 7, 7, 7, 9, 9, 9, 9])
    report = classification_report(probs, labels, names, writers)
    assert report["accuracy"] == pytest.approx(3 / 8)
    assert report["top3_accuracy"] == pytest.approx(7 / 8)
    assert report["per_writer_accuracy"] == pytest.approx({"7": 1 / 4, "9": 2 / 4})
    assert report["writer_accuracy_spread"] == pytest.approx({"min": 0.25, "max": 0.5, "mean": 0.375,
                                                              "std": 0.125, "n": 2})
    groups = {g["group"]: g for g in report["confusable_groups"]}
    assert set(groups) == {"Oo", "Ss", "0Oo"}  # x has no upper case here; 1Il and the rest are absent
    assert groups["0Oo"] == {"group": "0Oo", "n": 4, "confused": 3, "rate": 0.75,
                             "pairs": {"0->o": 1, "O->0": 1, "o->0": 1}}
    assert groups["Ss"]["confused"] == 2 and groups["Ss"]["pairs"] == {"S->s": 1, "s->S": 1}
    assert report["confusable_groups"][0]["group"] == "0Oo"  # most confused first
    assert "per_writer_accuracy" not in classification_report(probs, labels, names, np.full(8, -1))
