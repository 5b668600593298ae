"""Train state, the pure jitted steps, and whole epochs as one compiled program.

``train_step`` and ``eval_step`` are small pure functions (Flax examples). ``train_epoch`` runs an
epoch as a ``lax.scan`` over steps with the data already on the device, so there is no host work
inside an epoch; ``population`` functions ``vmap`` it over several seeds at once.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from jaxcnn.config import LOSSES, ModelConfig, TrainConfig
from jaxcnn.data.preprocess import GEOMETRY_FEATURES
from jaxcnn.errors import ConfigError
from jaxcnn.model import CNN
from jaxcnn.processes import to_host
from jaxcnn.training.augment import augment_batch, augment_geometry, mix_batch

DATA_AXIS = "data"  # the mesh axis a batch is split over (``jaxcnn.training.sharding``)
DATA_STREAM = 0x0DA7A  # folded into a run's key for its data order, apart from its step keys
GEOMETRY_STREAM = 0x6E0  # folded into a step's augmentation key for the page geometry's jitter
MIX_STREAM = 0x313C  # folded into a step's key for mixup/CutMix, so runs without them draw as before

# XLA:CPU (jaxlib 0.10.2) hands 2-D convolutions to YNNPACK, whose kernel gradient (a window the size
# of the image, a 3x3 output) runs up to 13x slower than XLA's own Eigen convolution; without the
# YNNPACK fusions the CPU train step is about 1.7x faster (benchmarks/README.md). GPU compilers do not
# read this CPU option. Every jitted program here that runs the CNN is compiled with it.
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


def make_model(num_classes: int, cfg: ModelConfig) -> CNN:
    """The CNN of ``cfg``; float64 needs 64-bit JAX (``JAX_ENABLE_X64=1`` or ``jax.enable_x64``)."""
    if cfg.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("model.dtype float64 needs 64-bit JAX: set JAX_ENABLE_X64=1 (or use float32)")
    return _model(num_classes, cfg)


@functools.lru_cache(maxsize=None)
def _model(num_classes: int, cfg: ModelConfig) -> CNN:
    """One instance per architecture: a train state holds its ``apply`` (a method bound to the instance,
    compared by identity), so runs of one architecture get an equal state structure and share programs."""
    return CNN(num_classes, tuple(cfg.widths), cfg.hidden, cfg.dropout, jnp.dtype(cfg.dtype),
               len(GEOMETRY_FEATURES) if cfg.page_geometry else 0, cfg.geometry_skip, trunk=cfg.trunk,
               blocks=cfg.blocks, image_size=cfg.image_size)


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


def _indexed_step(state: TrainState, inputs, labels, index, cfg: TrainConfig, loss: dict | None = None):
    """``train_step`` on the examples at ``index``; the step's key is a function of (key, step).

    ``inputs``: the data set on the device, ``{"image": uint8 [N,S,S]}`` and optionally
    ``"geometry"`` (``ArrayDataset.inputs``); ``labels`` int [N].
    """
    rng = jax.random.fold_in(state.key, state.step)
    batch = {name: values[index] for name, values in inputs.items()}
    return train_step(state, {**batch, "label": labels[index]}, rng, cfg, loss)


def _epoch_plan(state: TrainState, num_examples: int, cfg: TrainConfig):
    steps = steps_per_epoch(num_examples, cfg.batch_size)
    return epoch_batches(state.key, state.step // steps, num_examples, cfg.batch_size)


def train_epoch(state: TrainState, inputs, labels, cfg: TrainConfig, num_steps: int | None = None,
                loss: dict | None = None):
    """One epoch as a single scan over steps; returns the state and the steps' mean metrics.

    With ``num_steps``, only the next ``num_steps`` steps of the state's current epoch, from where
    the state stands in it (they must not pass the epoch's end): an epoch in chunks is the same
    epoch as in one piece. ``loss``: the ``objective`` (default: ``cfg``'s).
    """
    plan = _epoch_plan(state, labels.shape[0], cfg)
    batches = plan if num_steps is None else jax.lax.dynamic_slice_in_dim(
        plan, state.step % plan.shape[0], num_steps)
    state, metrics = jax.lax.scan(lambda s, index: _indexed_step(s, inputs, labels, index, cfg, loss),
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


# Population versions: the same functions vmapped over a leading seed axis of the state.
@functools.partial(jax.jit, static_argnames=("cfg", "num_steps"), donate_argnames="state",
                   compiler_options=COMPILER_OPTIONS)
def train_epoch_population(state: TrainState, inputs, labels, cfg: TrainConfig, num_steps: int | None = None,
                           loss: dict | None = None):
    """``train_epoch`` for every seed in one compiled program (the fast path on GPUs)."""
    return jax.vmap(train_epoch, in_axes=(0, None, None, None, None, None))(state, inputs, labels, cfg, num_steps,
                                                                            loss)


@functools.partial(jax.jit, static_argnames="batch_size", compiler_options=COMPILER_OPTIONS)
def evaluate_population(state: TrainState, inputs, labels, batch_size: int):
    return jax.vmap(evaluate, in_axes=(0, None, None, None))(state, inputs, labels, batch_size)


@functools.partial(jax.jit, static_argnames=("num_examples", "cfg"))
def _epoch_plan_population(state: TrainState, num_examples, cfg: TrainConfig):
    return jax.vmap(_epoch_plan, in_axes=(0, None, None))(state, num_examples, cfg)


@functools.partial(jax.jit, static_argnames="cfg", donate_argnames="state", compiler_options=COMPILER_OPTIONS)
def _step_population(state: TrainState, inputs, labels, index, cfg: TrainConfig, loss: dict | None = None):
    return jax.vmap(_indexed_step, in_axes=(0, None, None, 0, None, None))(state, inputs, labels, index, cfg, loss)


def train_epoch_stepwise(state: TrainState, inputs, labels, cfg: TrainConfig, num_steps: int | None = None,
                         loss: dict | None = None):
    """The same steps as ``train_epoch_population``, one dispatched step at a time.

    XLA:CPU runs kernel-gradient convolutions inside a while loop far slower than outside one
    (jax-ml/jax#12868), so on the CPU a Python loop over device-resident steps is faster. The
    loop only dispatches: data, indices and metrics stay on the device until the steps end.
    """
    batches = _epoch_plan_population(state, labels.shape[0], cfg)
    first = 0 if num_steps is None else int(to_host(state.step).flat[0]) % batches.shape[1]
    metrics = []
    for i in range(first, first + (num_steps or batches.shape[1])):
        state, m = _step_population(state, inputs, labels, _plan_column(batches, i), cfg, loss)
        metrics.append(m)
    return state, mean_of(metrics)


@jax.jit
def _plan_column(batches, i):
    return jax.lax.dynamic_index_in_dim(batches, i, axis=1, keepdims=False)


@jax.jit
def mean_of(metrics: list):
    """The mean of a list of metric pytrees (one compiled program per list length)."""
    return jax.tree.map(lambda *ms: jnp.mean(jnp.stack(ms), axis=0), *metrics)


def each_member(fn, state: TrainState, *args, parallel: bool | None = None):
    """``fn(state, *args)`` on the whole population at once, or member by member (outputs concatenated).

    On XLA:CPU, vmapping over seeds turns each convolution into a grouped one, which is slower than
    running the members in turn, so ``parallel`` defaults to True only on accelerators; in float64
    the CPU always runs them in turn (its grouped kernel gradients are wrong there, tests/tolerances.py).
    """
    parallel = jax.default_backend() != "cpu" if parallel is None else parallel
    if jax.default_backend() == "cpu" and jax.tree.leaves(state.params)[0].dtype == np.float64:
        parallel = False  # XLA:CPU's grouped convolutions give wrong float64 kernel gradients (jaxlib 0.10.2)
    size = jax.tree.leaves(state)[0].shape[0]
    if parallel or size == 1:
        return fn(state, *args)
    return _joined([fn(_member(state, i), *args) for i in range(size)])


@jax.jit
def _member(tree, index):
    """Member ``index`` of a population, keeping its axis (one program per tree structure)."""
    return jax.tree.map(lambda x: jax.lax.dynamic_slice_in_dim(x, index, 1), tree)


@jax.jit
def _joined(members: list):
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *members)


@jax.jit
def _stacked(members: list):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *members)


def create_population(seeds, num_classes: int, cfg: TrainConfig, num_examples: int) -> TrainState:
    """One fresh state per seed, stacked on a leading axis (initialised one by one: a single
    program per model, whatever the population's size).

    The optimiser is cached per (optimiser fields, steps), so such runs get an equal state
    structure and the jitted programs compile once per process, not once per run.
    """
    model = make_model(num_classes, cfg.model)
    tx = make_optimizer(cfg, steps_per_epoch(num_examples, cfg.batch_size))
    return _stacked([create_train_state(jax.random.PRNGKey(s), model, tx, cfg.ema_decay > 0) for s in seeds])


@jax.jit
def unstack(tree, index: int):
    """The ``index``-th member of a population pytree (one program per tree structure)."""
    return jax.tree.map(lambda x: x[index], tree)


def host_metrics(metrics) -> dict:
    """Device metrics -> plain Python floats (one transfer, at logging time)."""
    return {k: np.asarray(v).tolist() for k, v in flax.core.unfreeze(to_host(metrics)).items()}


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
