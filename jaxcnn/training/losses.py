"""The training losses: cross-entropy, two robust to noisy labels and one for complementary labels.

``objective`` turns a config's loss into data (weights over ``config.LOSSES``), an argument of the
compiled step, and ``batch_loss`` weighs every loss by it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.config import LOSSES, TrainConfig
from jaxcnn.errors import ConfigError


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """Per-example softmax cross-entropy with label smoothing (Szegedy et al. 2016)."""
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def objective(cfg: TrainConfig, num_classes: int) -> dict:
    """The training loss as data: ``{"weights": float32 [len(LOSSES)]`` (one-hot of ``cfg.loss``),
    ``"transition"`` [K, K] (``cfg.label_transition``, else the identity), ``"gce_q"`` and
    ``"label_smoothing"`` (scalars)}.

    As an argument of the compiled step rather than part of its static config, it lets runs that
    differ only in their loss (part 3's models) share one program; the losses are weighed rather
    than branched on, as an XLA conditional may read its branch back to the host on a GPU.
    """
    transition = np.asarray(cfg.label_transition or np.eye(num_classes), np.float32)
    if transition.shape != (num_classes, num_classes):
        raise ConfigError(f"TrainConfig.label_transition must be {num_classes}x{num_classes} for "
                          f"{num_classes} classes, got {transition.shape[0]}x{transition.shape[1]}")
    return {"weights": np.eye(len(LOSSES), dtype=np.float32)[LOSSES.index(cfg.loss)],
            "transition": transition, "gce_q": np.float32(cfg.gce_q),
            "label_smoothing": np.float32(cfg.label_smoothing)}


def training_loss(logits, labels, loss: dict):
    """Per-example losses, float [len(LOSSES) - 1, B]: cross-entropy, and two robust to noisy labels.

    ``forward``: cross-entropy of the noisy label under softmax(logits) @ T, with T the label
    transition matrix (Patrini et al. 2017). ``gce``: generalised cross-entropy (1 - p_y^q) / q
    (Zhang & Sabuncu 2018), between cross-entropy (q -> 0) and the noise-robust MAE (q = 1).
    ``loss``: an ``objective``.
    """
    probs = jax.nn.softmax(logits)
    noisy = probs @ loss["transition"].astype(probs.dtype)
    p_label = jnp.take_along_axis(probs, labels[:, None], -1)[:, 0]
    return jnp.stack([cross_entropy(logits, labels, loss["label_smoothing"]),
                      -jnp.log(jnp.take_along_axis(noisy, labels[:, None], -1)[:, 0] + 1e-8),
                      (1.0 - (p_label + 1e-8) ** loss["gce_q"]) / loss["gce_q"]])


def complementary_risk(logits, labels):
    """The non-negative risk of Ishida et al. 2019 for complementary labels (a class the example is not).

    With uniform complementary labels the risk of class k is ``R_k = E[l_k] - (K-1) E[[y_bar = k] l_k]``
    (``l_k`` the cross-entropy towards k), an unbiased estimate of ``P(k) E[l_k | y = k] >= 0``; a
    flexible model drives it below zero on a batch and overfits, so each is clipped at zero.
    """
    k = logits.shape[-1]
    neglog = -jax.nn.log_softmax(logits)
    weights = 1.0 - (k - 1) * jax.nn.one_hot(labels, k)
    return jnp.sum(jnp.maximum(jnp.mean(neglog * weights, axis=0), 0.0))


def batch_loss(logits, labels, loss: dict):
    """The loss of one batch: every loss of ``LOSSES`` (the per-example ones averaged), weighed by
    ``loss["weights"]`` (an ``objective``): a zero weight adds exactly nothing, value or gradient."""
    losses = jnp.concatenate([training_loss(logits, labels, loss).mean(1), complementary_risk(logits, labels)[None]])
    return losses @ loss["weights"].astype(losses.dtype)
