"""The optimiser: AdamW on a warm-up cosine schedule, and what transfer needs of it.

A frozen trunk (zero updates, no gradient), a scaled trunk learning rate, the L2-SP pull toward
a grafted trunk's weights (``decay_toward_start``), and which trunk parameters are BatchNorm's.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxcnn.config import TrainConfig


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """AdamW with linear warm-up and cosine decay (Loshchilov & Hutter 2017, 2019).

    Weight decay applies to kernels only, not to biases or BatchNorm scales. With
    ``freeze_trunk`` the trunk gets zero updates, so its parameters stay bit-identical (but for
    its BatchNorm scales and offsets with ``train_trunk_batch_norm``).
    ``trunk_lr_scale`` scales the trunk's learning rate (a grafted trunk kept closer to its
    source); ``decay_to_start`` pulls the trunk's kernels toward the weights they started from
    (L2-SP, Li et al. 2018, decoupled as AdamW decouples its decay).
    Runs with equal optimiser fields get the same object (a part of the train state's structure),
    so they share the compiled initialisation whatever their loss.
    """
    return _optimizer(cfg.learning_rate, cfg.weight_decay, cfg.warmup_epochs, cfg.epochs, cfg.freeze_trunk,
                      steps_per_epoch, cfg.trunk_lr_scale, cfg.decay_to_start, cfg.train_trunk_batch_norm)


@functools.lru_cache(maxsize=None)
def _optimizer(learning_rate: float, weight_decay: float, warmup_epochs: int, epochs: int, freeze_trunk: bool,
               steps_per_epoch: int, trunk_lr_scale: float = 1.0, decay_to_start: float = 0.0,
               train_trunk_batch_norm: bool = False) -> optax.GradientTransformation:
    total = max(1, epochs * steps_per_epoch)
    warmup = min(warmup_epochs * steps_per_epoch, total // 2)
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup, total)
    kernels = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)

    def adamw(scale: float = 1.0, to_start: float = 0.0):
        rate = schedule if scale == 1 else lambda step: scale * schedule(step)
        if to_start == 0:
            return optax.adamw(rate, weight_decay=weight_decay, mask=kernels)
        return optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(weight_decay, kernels),
                           decay_toward_start(to_start, kernels), optax.scale_by_learning_rate(rate))

    if freeze_trunk:
        trunk_label, trunk = "frozen", optax.set_to_zero()
    elif trunk_lr_scale != 1 or decay_to_start:
        trunk_label, trunk = "trunk", adamw(trunk_lr_scale, decay_to_start)
    else:
        return adamw()

    def labels(params):
        trunk_labels = jax.tree_util.tree_map_with_path(
            lambda path, _: "train" if train_trunk_batch_norm and in_batch_norm(path) else trunk_label, params["trunk"])
        return {name: (trunk_labels if name == "trunk" else "train") for name in params}

    return optax.multi_transform({"train": adamw(), trunk_label: trunk}, labels)


def is_batch_norm(layer: str) -> bool:
    """Whether a trunk layer (``conv0_0``, ``bn0_0``, ``bn_out``, ...: the trunks' names) is a BatchNorm."""
    return layer.startswith("bn")


def in_batch_norm(path) -> bool:
    """Whether a key path into the trunk (a residual block's ``bn0`` included) leads into a BatchNorm."""
    return any(is_batch_norm(str(getattr(key, "key", ""))) for key in path)


def frozen_trunk(trunk: dict, train_batch_norm: bool) -> dict:
    """The trunk's parameters with no gradient through them (but for BatchNorm's, with ``train_batch_norm``)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, value: value if train_batch_norm and in_batch_norm(path) else jax.lax.stop_gradient(value), trunk)


class StartState(NamedTuple):
    start: optax.Params  # the weights of the first update (zeros before it)
    started: jax.Array


def decay_toward_start(rate: float, mask) -> optax.GradientTransformation:
    """Adds ``rate * (params - start)`` to the masked updates, ``start`` being the weights at the
    first update: after a graft, the source's weights, so the decay keeps them near it (L2-SP)."""
    def init(params):
        return StartState(jax.tree.map(jnp.zeros_like, params), jnp.zeros([], bool))

    def update(updates, state, params):
        start = jax.tree.map(lambda s, p: jnp.where(state.started, s, p), state.start, params)
        updates = jax.tree.map(lambda u, p, s, m: u + rate * (p - s) if m else u, updates, params, start, mask(params))
        return updates, StartState(start, jnp.ones([], bool))

    return optax.GradientTransformation(init, update)
