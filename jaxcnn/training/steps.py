"""Train state, the pure jitted steps, and whole epochs as one compiled program.

``train_step`` and ``eval_step`` are small pure functions (Flax examples). ``train_epoch`` runs an
epoch as a ``lax.scan`` over steps with the data already on the device, so there is no host work
inside an epoch; ``jaxcnn.training.population`` vmaps these over several seeds at once.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from jaxcnn.config import TrainConfig
from jaxcnn.model import CNN
from jaxcnn.training.augment import augment_batch, augment_geometry, mix_batch
from jaxcnn.training.losses import batch_loss, cross_entropy, objective
from jaxcnn.training.optim import frozen_trunk

DATA_AXIS = "data"  # the mesh axis a batch is split over (``jaxcnn.training.sharding``)
DATA_STREAM = 0x0DA7A  # folded into a run's key for its data order, apart from its step keys
GEOMETRY_STREAM = 0x6E0  # folded into a step's augmentation key for the page geometry's jitter
MIX_STREAM = 0x313C  # folded into a step's key for mixup/CutMix, so runs without them draw as before

# XLA:CPU (jaxlib 0.10.2) hands 2-D convolutions to YNNPACK, whose kernel gradient (a window the size
# of the image, a 3x3 output) runs up to 13x slower than XLA's own Eigen convolution; without the
# YNNPACK fusions the CPU train step is about 1.7x faster (benchmarks/README.md). GPU compilers do not
# read this CPU option. Every jitted program that runs the CNN (``population``'s) is compiled with it.
COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


class TrainState(train_state.TrainState):
    """Flax's TrainState plus BatchNorm statistics, the run's base PRNG key and, when the run keeps
    one (``ema_decay > 0``), the moving average of the weights, ``{"params", "batch_stats"}``.

    Every random draw is a function of (key, step) or (key, epoch), never of process history,
    so a resumed run repeats an uninterrupted one exactly.
    """

    batch_stats: Any
    key: jax.Array
    ema: Any = None


def inference_variables(state: TrainState) -> dict:
    """The weights a run is evaluated and transferred with: the moving average when it keeps one."""
    if state.ema is not None:
        return state.ema
    return {"params": state.params, "batch_stats": state.batch_stats}


def update_ema(state: TrainState, decay: float) -> TrainState:
    """Moves the average towards the current weights; the decay ramps up as (1 + t) / (10 + t) early
    on, so the first steps' random weights fade fast (TensorFlow's ExponentialMovingAverage)."""
    step = state.step.astype(jnp.float32)
    rate = 1 - jnp.minimum(decay, (1 + step) / (10 + step))
    current = {"params": state.params, "batch_stats": state.batch_stats}
    return state.replace(ema=optax.incremental_update(current, state.ema, rate))


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Steps in one pass over the data (at least one: a tiny set is cycled to fill a batch)."""
    return max(1, num_examples // batch_size)


# TrainConfig fields that no compiled program reads: the seeds are the population's size (a shape),
# probes cut an epoch into chunks (a separate argument), evaluation has its own batch argument, the
# device count is the mesh in context, checkpoints are the loop's, and the loss is an argument
# (``objective``).
OUTSIDE_PROGRAM = ("seeds", "probe_every", "eval_batch_size", "devices", "checkpoint_every",
                   "loss", "label_transition", "gce_q", "label_smoothing")


def program_config(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with ``OUTSIDE_PROGRAM`` at their defaults: the static argument of the jitted steps, so
    that runs differing only there (B and C, the data-size runs, cv folds, part 3's losses) share
    compiled programs."""
    defaults = {name: TrainConfig.__dataclass_fields__[name].default for name in OUTSIDE_PROGRAM}
    return dataclasses.replace(cfg, **defaults)


def create_train_state(seed_key, model: CNN, tx: optax.GradientTransformation, ema: bool = False) -> TrainState:
    """A fresh state; ``seed_key`` (a raw uint32[2] key) gives both the init and the run's key.
    With ``ema``, the weight average starts at the initial weights.

    The weights come from one compiled program per architecture, the optimiser's state from another
    per optimiser (small): runs that differ only in their optimiser (part 3's reference, diagnosis
    and models) share the first, whose random draws take seconds to compile.
    """
    init_key, run_key = jax.random.split(seed_key)
    variables = initial_variables(init_key, model)
    return TrainState(step=0, apply_fn=model.apply, params=variables["params"], tx=tx,
                      opt_state=_optimizer_state(tx, variables["params"]), batch_stats=variables["batch_stats"],
                      key=run_key, ema=dict(variables) if ema else None)


@functools.partial(jax.jit, static_argnums=1)
def initial_variables(init_key, model: CNN) -> dict:
    """``{"params", "batch_stats"}`` of a fresh ``model`` drawn from ``init_key``."""
    geometry = jnp.zeros((1, model.geometry_features)) if model.geometry_features else None
    return model.init(init_key, jnp.zeros((1, model.image_size, model.image_size, 1)), train=False, geometry=geometry)


@functools.partial(jax.jit, static_argnums=0)
def _optimizer_state(tx: optax.GradientTransformation, params):
    return tx.init(params)


def to_float(images):
    """uint8 [B, S, S] -> float32 [B, S, S, 1] in [0, 1]."""
    return images.astype(jnp.float32)[..., None] / 255.0


def split_over_devices(batch):
    """``batch`` split along its first axis over the ``"data"`` axis of the mesh in context
    (``jax.set_mesh``), unchanged without one: XLA then partitions the step (GSPMD), and batch
    means (the loss, BatchNorm statistics) become all-reduces over the whole batch."""
    if DATA_AXIS not in jax.sharding.get_abstract_mesh().axis_names:
        return batch
    return jax.lax.with_sharding_constraint(batch, jax.sharding.PartitionSpec(DATA_AXIS))


def train_step(state: TrainState, batch, rng, cfg: TrainConfig, loss: dict | None = None):
    """One optimiser step on ``batch = {"image": uint8 [B,S,S], "label": int [B]}`` (and
    ``"geometry": float [B, F]`` for a model that takes page geometry).

    Augmentation, mixing and dropout draw from ``rng``. ``loss``: the ``objective`` to minimise
    (default: ``cfg``'s). Returns the new state and batch metrics.
    """
    batch = split_over_devices(batch)
    aug_key, dropout_key = jax.random.split(rng)
    images = augment_batch(aug_key, to_float(batch["image"]), cfg.augment)
    geometry = batch.get("geometry")
    if geometry is not None:
        geometry = augment_geometry(jax.random.fold_in(aug_key, GEOMETRY_STREAM), geometry, cfg.augment)
    labels, weight = batch["label"], 1.0
    if cfg.mixup_alpha or cfg.cutmix_alpha:
        images, partner, weight = mix_batch(jax.random.fold_in(rng, MIX_STREAM), images,
                                            cfg.mixup_alpha, cfg.cutmix_alpha)
        if geometry is not None:  # the page geometry of a mixed image: mixed in the same proportion
            geometry = weight * geometry + (1 - weight) * geometry[partner]

    def loss_fn(params):
        if cfg.freeze_trunk:  # no gradient through the trunk: XLA then skips its backward pass
            params = {**params, "trunk": frozen_trunk(params["trunk"], cfg.train_trunk_batch_norm)}
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats}, images, train=True, geometry=geometry,
            train_trunk=not cfg.freeze_trunk or cfg.train_trunk_batch_norm, rngs={"dropout": dropout_key},
            mutable=["batch_stats"])
        terms = objective(cfg, logits.shape[-1]) if loss is None else loss
        value = batch_loss(logits, labels, terms)
        if cfg.mixup_alpha or cfg.cutmix_alpha:
            value = weight * value + (1 - weight) * batch_loss(logits, labels[partner], terms)
        return value, (logits, updates["batch_stats"])

    (value, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    if cfg.ema_decay:
        state = update_ema(state, cfg.ema_decay)
    metrics = {"loss": value, "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
               "grad_norm": optax.global_norm(grads)}
    return state, metrics


def eval_step(state: TrainState, batch):
    """Inference-mode logits, per-example loss and correctness for one batch (``inference_variables``)."""
    batch = split_over_devices(batch)
    logits = state.apply_fn(inference_variables(state), to_float(batch["image"]), train=False,
                            geometry=batch.get("geometry"))
    return {"logits": logits, "loss": cross_entropy(logits, batch["label"]),
            "correct": jnp.argmax(logits, -1) == batch["label"]}


def epoch_batches(key, epoch, num_examples: int, batch_size: int):
    """The example indices of every step of one epoch, int32 [steps, batch]: a fresh shuffle per epoch."""
    perm = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, DATA_STREAM), epoch),
                                  num_examples)
    steps = steps_per_epoch(num_examples, batch_size)
    return jnp.resize(perm, (steps * batch_size,)).reshape(steps, batch_size)


def indexed_step(state: TrainState, inputs, labels, index, cfg: TrainConfig, loss: dict | None = None):
    """``train_step`` on the examples at ``index``; the step's key is a function of (key, step).

    ``inputs``: the data set on the device, ``{"image": uint8 [N,S,S]}`` and optionally
    ``"geometry"`` (``ArrayDataset.inputs``); ``labels`` int [N].
    """
    rng = jax.random.fold_in(state.key, state.step)
    batch = {name: values[index] for name, values in inputs.items()}
    return train_step(state, {**batch, "label": labels[index]}, rng, cfg, loss)


def epoch_plan(state: TrainState, num_examples: int, cfg: TrainConfig):
    """``epoch_batches`` of the epoch the state stands in."""
    steps = steps_per_epoch(num_examples, cfg.batch_size)
    return epoch_batches(state.key, state.step // steps, num_examples, cfg.batch_size)


def train_epoch(state: TrainState, inputs, labels, cfg: TrainConfig, num_steps: int | None = None,
                loss: dict | None = None):
    """One epoch as a single scan over steps; returns the state and the steps' mean metrics.

    With ``num_steps``, only the next ``num_steps`` steps of the state's current epoch, from where
    the state stands in it (they must not pass the epoch's end): an epoch in chunks is the same
    epoch as in one piece. ``loss``: the ``objective`` (default: ``cfg``'s).
    """
    plan = epoch_plan(state, labels.shape[0], cfg)
    batches = plan if num_steps is None else jax.lax.dynamic_slice_in_dim(
        plan, state.step % plan.shape[0], num_steps)
    state, metrics = jax.lax.scan(lambda s, index: indexed_step(s, inputs, labels, index, cfg, loss),
                                  state, batches)
    return state, jax.tree.map(jnp.mean, metrics)


def evaluate(state: TrainState, inputs, labels, batch_size: int):
    """Logits float32 [N, K] and per-example loss [N] over a whole data set, in one scan."""
    n = labels.shape[0]
    padded = -(-n // batch_size) * batch_size
    batched = lambda x: jnp.pad(x, [(0, padded - n)] + [(0, 0)] * (x.ndim - 1)).reshape(-1, batch_size, *x.shape[1:])
    batches = jax.tree.map(batched, {**inputs, "label": labels})
    _, out = jax.lax.scan(lambda c, batch: (c, eval_step(state, batch)), None, batches)
    return out["logits"].reshape(padded, -1)[:n], out["loss"].reshape(padded)[:n]
