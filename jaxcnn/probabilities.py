"""Class probabilities on the host, in NumPy: softmax, the seeds' ensemble and calibration error.

Low in the layers so that the training loop (per-epoch validation) and evaluation share them.
"""

from __future__ import annotations

import numpy as np


def softmax(logits) -> np.ndarray:
    """Softmax over the last axis on the host, in float32 (NumPy: no compiled program per shape)."""
    logits = np.asarray(logits, np.float32)
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def softmax_mean(logits) -> np.ndarray:
    """Ensemble prediction: the mean of the members' softmax, [K, N, C] -> [N, C]."""
    return softmax(logits).mean(0)


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
