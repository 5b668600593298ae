"""The pure steps: a step learns, compiles once, evaluates deterministically, and keeps a weight average."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.model import make_model
from jaxcnn.training import steps as T
from jaxcnn.training.population import create_population, evaluate_population, train_epoch_stepwise, unstack
from tests.training.patterns import CFG, NUM_CLASSES, NUM_EXAMPLES, TOLERANCE, as_inputs, copy


@pytest.fixture(scope="module")
def counted_step():
    """``train_step`` jitted, wrapped to fail if it is traced more than once."""
    chex.clear_trace_counter()
    return jax.jit(chex.assert_max_traces(T.train_step, n=1), static_argnames="cfg")


@pytest.fixture(scope="module")
def fixed_batch_run(population, data, counted_step):
    """20 steps on one fixed batch of 16."""
    state = unstack(population, 0)
    batch = {"image": data[0][:16], "label": data[1][:16]}
    metrics = []
    for i in range(20):
        state, m = counted_step(state, batch, jax.random.fold_in(state.key, i), CFG)
        metrics.append(jax.device_get(m))
    return state, {k: np.array([m[k] for m in metrics]) for k in metrics[0]}


def test_loss_falls_on_a_fixed_batch(fixed_batch_run):
    _, metrics = fixed_batch_run
    loss = metrics["loss"]
    assert loss[-5:].mean() < 0.5 * loss[:2].mean(), loss
    assert metrics["accuracy"][-1] == 1.0


def test_gradients_are_finite(fixed_batch_run):
    state, metrics = fixed_batch_run
    assert np.isfinite(metrics["grad_norm"]).all() and (metrics["grad_norm"] > 0).all()
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state.params))


def test_train_step_compiles_once_across_steps(fixed_batch_run, counted_step, data):
    state, _ = fixed_batch_run  # 20 steps ran; assert_max_traces(n=1) would have raised on a retrace
    assert int(state.step) == 20
    for i in range(3):  # new batches, keys and states of the same shapes reuse the compiled step
        batch = {"image": data[0][16 * i:16 * (i + 1)], "label": data[1][16 * i:16 * (i + 1)]}
        state, _ = counted_step(state, batch, jax.random.PRNGKey(i), CFG)
    assert int(state.step) == 23


def test_a_second_trace_is_caught(population, data):
    """The guard above is live: a step retraced (here for a new batch size) fails."""
    step = jax.jit(chex.assert_max_traces(T.eval_step, n=1))
    state = unstack(population, 0)
    step(state, {"image": data[0][:2], "label": data[1][:2]})
    with pytest.raises(AssertionError, match="traced > 1 times"):
        step(state, {"image": data[0][:3], "label": data[1][:3]})


def test_eval_step_is_deterministic_and_ignores_dropout(population, data):
    state = unstack(population, 0)
    batch = {"image": data[0][:16], "label": data[1][:16]}
    first, second = T.eval_step(state, batch), T.eval_step(state, batch)
    chex.assert_trees_all_equal(first, second)
    for dropout in (0.0, 0.9):
        model = make_model(NUM_CLASSES, dataclasses.replace(CFG.model, dropout=dropout))
        chex.assert_trees_all_close(T.eval_step(state.replace(apply_fn=model.apply), batch), first,
                                    rtol=1e-6, atol=1e-6)


def test_mixing_changes_the_loss_and_no_mixing_draws_as_before(population, data):
    member = unstack(population, 0)
    batch = {"image": data[0][:16], "label": data[1][:16]}
    rng = jax.random.PRNGKey(5)
    step = jax.jit(T.train_step, static_argnames="cfg")
    _, plain = step(member, batch, rng, CFG)
    _, mixed = step(member, batch, rng, dataclasses.replace(CFG, mixup_alpha=0.4))
    assert float(mixed["loss"]) != float(plain["loss"])


def test_weight_average_follows_the_weights_and_is_what_is_evaluated(data):
    cfg = dataclasses.replace(CFG, seeds=(0,), ema_decay=0.9)
    state = create_population(cfg.seeds, NUM_CLASSES, cfg, NUM_EXAMPLES)
    chex.assert_trees_all_equal(state.ema, {"params": state.params, "batch_stats": state.batch_stats})
    trained, _ = train_epoch_stepwise(copy(state), *as_inputs(data), cfg)
    distance = lambda a, b: optax.global_norm(jax.tree.map(jnp.subtract, a, b))
    # the average lies between the start and the current weights
    assert 0 < float(distance(trained.ema["params"], trained.params)) < float(distance(state.params, trained.params))
    logits, _ = evaluate_population(trained, *as_inputs(data), 32)
    averaged = trained.replace(params=trained.ema["params"], batch_stats=trained.ema["batch_stats"], ema=None)
    np.testing.assert_allclose(logits, evaluate_population(averaged, *as_inputs(data), 32)[0], **TOLERANCE)


def test_weight_average_ramps_up_from_the_first_steps():
    """At step t the average moves by 1 - min(decay, (1 + t) / (10 + t)): 90% at the first step."""
    cfg = dataclasses.replace(CFG, seeds=(0,), ema_decay=0.999)
    state = unstack(create_population(cfg.seeds, NUM_CLASSES, cfg, NUM_EXAMPLES), 0)
    moved = state.replace(step=jnp.asarray(0), params=jax.tree.map(lambda p: p + 1.0, state.params))
    updated = T.update_ema(moved, cfg.ema_decay)
    chex.assert_trees_all_close(updated.ema["params"], jax.tree.map(lambda p: p + 0.9, state.params), atol=1e-6)

