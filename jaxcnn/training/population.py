"""The seed population: a leading seed axis on the train state, and its compiled programs.

``train_epoch_population`` and ``evaluate_population`` vmap the steps' epoch and evaluation over
the seeds (the fast path on accelerators); ``train_epoch_stepwise`` dispatches the same steps one
at a time (faster on XLA:CPU); ``each_member`` runs any of them member by member.
"""

from __future__ import annotations

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.config import TrainConfig
from jaxcnn.model import make_model
from jaxcnn.processes import to_host
from jaxcnn.training.optim import make_optimizer
from jaxcnn.training.steps import (COMPILER_OPTIONS, TrainState, create_train_state, epoch_plan, evaluate,
                                   indexed_step, steps_per_epoch, train_epoch)


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
    return jax.vmap(epoch_plan, in_axes=(0, None, None))(state, num_examples, cfg)


@functools.partial(jax.jit, static_argnames="cfg", donate_argnames="state", compiler_options=COMPILER_OPTIONS)
def _step_population(state: TrainState, inputs, labels, index, cfg: TrainConfig, loss: dict | None = None):
    return jax.vmap(indexed_step, in_axes=(0, None, None, 0, None, None))(state, inputs, labels, index, cfg, loss)


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
