"""Classification figures from predicted probabilities: accuracy, confusion, F1, calibration
(``jaxcnn.probabilities.expected_calibration_error``, which the training loop also reports per epoch)."""

from __future__ import annotations

import numpy as np
import scipy.stats  # a dependency of jax itself

from jaxcnn.probabilities import expected_calibration_error


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


# Characters that look alike once cropped to 28x28, beside each letter's two cases.
LOOKALIKES = ("0Oo", "1Il", "2Zz", "5Ss", "9gq")


def top_k_accuracy(probs, labels, k: int = 3) -> float:
    """How often the true class is among the ``k`` most probable."""
    top = np.argsort(-np.asarray(probs), axis=-1)[:, :k]
    return float(np.mean((top == np.asarray(labels)[:, None]).any(-1)))


def per_group_accuracy(labels, predictions, groups) -> dict[str, float]:
    """Accuracy of each group (writer) that has a known id (>= 0), keyed by the id as text."""
    labels, predictions, groups = map(np.asarray, (labels, predictions, groups))
    return {str(int(g)): float(np.mean(predictions[groups == g] == labels[groups == g]))
            for g in np.unique(groups) if g >= 0}


def spread(values) -> dict:
    """Min, max, mean and standard deviation of some figures (e.g. the writers' accuracies)."""
    values = np.asarray(list(values), float)
    return {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
            "std": float(values.std()), "n": int(len(values))}


def confusable_groups(class_names) -> list[str]:
    """Each letter's two cases present in ``class_names`` and the LOOKALIKES sets (of two or more present)."""
    names = set(class_names)
    pairs = [c.upper() + c for c in sorted({n.lower() for n in names}) if c.isalpha() and {c, c.upper()} <= names]
    sets = ["".join(c for c in group if c in names) for group in LOOKALIKES]
    return list(dict.fromkeys(pairs + [g for g in sets if len(g) > 1]))


def group_confusion(confusion: np.ndarray, class_names) -> list[dict]:
    """For each confusable group: its images, how many were taken for another member, and which way.

    ``confused`` counts images of a member predicted as another member; ``pairs`` lists the
    nonzero true->predicted counts inside the group. Sorted by ``confused``, largest first.
    """
    index = {n: i for i, n in enumerate(class_names)}
    rows = []
    for group in confusable_groups(class_names):
        ids = [index[c] for c in group]
        block = np.asarray(confusion)[np.ix_(ids, ids)]
        confused = int(block.sum() - np.trace(block))
        pairs = {f"{group[i]}->{group[j]}": int(block[i, j])
                 for i in range(len(ids)) for j in range(len(ids)) if i != j and block[i, j]}
        n = int(np.asarray(confusion)[ids].sum())
        rows.append({"group": group, "n": n, "confused": confused, "rate": confused / max(n, 1), "pairs": pairs})
    return sorted(rows, key=lambda r: -r["confused"])


def classification_report(probs, labels, class_names, groups=None) -> dict:
    """Every figure the study reports for one set of predictions; ``groups`` (writers) adds the
    per-writer accuracy and its spread."""
    labels = np.asarray(labels)
    predictions = probs.argmax(-1)
    confusion = confusion_matrix(labels, predictions, len(class_names))
    support = confusion.sum(1)
    per_class = np.diag(confusion) / np.maximum(support, 1)
    return {
        "n": int(len(labels)),
        "accuracy": float(np.mean(predictions == labels)),
        "accuracy_casefold": casefold_accuracy(labels, predictions, class_names),
        "top3_accuracy": top_k_accuracy(probs, labels, 3),
        "nll": float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12)))),
        "ece": expected_calibration_error(probs, labels),
        "per_class_accuracy": {n: float(a) for n, a, s in zip(class_names, per_class, support) if s},
        "per_class_f1": {n: float(f) for n, f, s in zip(class_names, per_class_f1(confusion), support) if s},
        "most_confused": most_confused(confusion, class_names),
        "confusable_groups": group_confusion(confusion, class_names),
        "confusion": confusion.tolist(),
        **_writer_figures(labels, predictions, groups),
    }


def _writer_figures(labels, predictions, groups) -> dict:
    if groups is None or not (np.asarray(groups) >= 0).any():
        return {}
    per_writer = per_group_accuracy(labels, predictions, groups)
    return {"per_writer_accuracy": per_writer, "writer_accuracy_spread": spread(per_writer.values())}


def mean_ci95(values) -> dict:
    """Mean and the half-width of a 95% Student-t confidence interval over seeds (None for one seed)."""
    values = np.asarray(values, float)
    n = len(values)
    if n < 2:
        return {"mean": float(values.mean()), "ci95": None, "n": n}  # None: JSON has no NaN
    half = scipy.stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return {"mean": float(values.mean()), "ci95": float(half), "n": n}
