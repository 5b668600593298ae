"""Classification figures from predicted probabilities: accuracy, confusion, F1, calibration."""

from __future__ import annotations

import numpy as np
import scipy.stats  # a dependency of jax itself


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """counts[i, j] = number of examples of class i predicted as j."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    return counts


def per_class_f1(confusion: np.ndarray) -> np.ndarray:
    tp = np.diag(confusion).astype(float)
    precision = tp / np.maximum(confusion.sum(0), 1)
    recall = tp / np.maximum(confusion.sum(1), 1)
    return 2 * precision * recall / np.maximum(precision + recall, 1e-12)


def expected_calibration_error(probs, labels, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017)."""
    confidence = probs.max(-1)
    correct = probs.argmax(-1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def most_confused(confusion: np.ndarray, class_names, top: int = 10) -> list[dict]:
    """The largest off-diagonal entries: which true class is most often taken for which."""
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:top]
    pairs = [np.unravel_index(i, off.shape) for i in order]
    return [{"true": class_names[i], "predicted": class_names[j], "count": int(off[i, j])}
            for i, j in pairs if off[i, j] > 0]


def casefold_accuracy(labels, predictions, class_names) -> float:
    """Accuracy when upper and lower case of a letter count as the same answer."""
    folded = np.array([name.lower() for name in class_names])
    return float(np.mean(folded[np.asarray(labels)] == folded[np.asarray(predictions)]))


def classification_report(probs, labels, class_names) -> dict:
    """Every figure the study reports for one set of predictions."""
    labels = np.asarray(labels)
    predictions = probs.argmax(-1)
    confusion = confusion_matrix(labels, predictions, len(class_names))
    support = confusion.sum(1)
    per_class = np.diag(confusion) / np.maximum(support, 1)
    return {
        "n": int(len(labels)),
        "accuracy": float(np.mean(predictions == labels)),
        "accuracy_casefold": casefold_accuracy(labels, predictions, class_names),
        "nll": float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12)))),
        "ece": expected_calibration_error(probs, labels),
        "per_class_accuracy": {n: float(a) for n, a, s in zip(class_names, per_class, support) if s},
        "per_class_f1": {n: float(f) for n, f, s in zip(class_names, per_class_f1(confusion), support) if s},
        "most_confused": most_confused(confusion, class_names),
        "confusion": confusion.tolist(),
    }


def mean_ci95(values) -> dict:
    """Mean and the half-width of a 95% Student-t confidence interval over seeds (None for one seed)."""
    values = np.asarray(values, float)
    n = len(values)
    if n < 2:
        return {"mean": float(values.mean()), "ci95": None, "n": n}  # None: JSON has no NaN
    half = scipy.stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return {"mean": float(values.mean()), "ci95": float(half), "n": n}
