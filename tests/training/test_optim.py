"""The optimiser: a frozen trunk (its BatchNorm optionally trained), a scaled trunk learning rate, and
the L2-SP pull toward a grafted trunk (``decay_toward_start``)."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.training.optim import decay_toward_start, is_batch_norm, make_optimizer
from jaxcnn.training.population import unstack
from jaxcnn.training.steps import TrainState, steps_per_epoch, train_step
from tests.training.patterns import CFG, CFG64, NUM_EXAMPLES, TOLERANCE


def test_decay_to_start_pulls_toward_the_first_weights_it_saw():
    """An optax transform: the first update records the weights, later ones add ``rate * (params - start)``
    to the masked leaves, so a descent step moves them back toward the start."""
    mask = lambda params: {"kernel": True, "bias": False}
    tx = decay_toward_start(0.5, mask)
    first = {"kernel": jnp.array([1.0, 2.0]), "bias": jnp.array([3.0])}
    zero = jax.tree.map(jnp.zeros_like, first)
    updates, state = tx.update(zero, tx.init(first), first)
    chex.assert_trees_all_equal(updates, zero)  # nothing to pull back at the start
    moved = {"kernel": jnp.array([2.0, 2.0]), "bias": jnp.array([5.0])}
    updates, state = tx.update(zero, state, moved)
    chex.assert_trees_all_equal(updates, {"kernel": jnp.array([0.5, 0.0]), "bias": jnp.array([0.0])})
    chex.assert_trees_all_equal(state.start, first)
    stepped = optax.apply_updates(moved, jax.tree.map(jnp.negative, updates))  # a descent step of rate 1
    chex.assert_trees_all_equal(stepped, {"kernel": jnp.array([1.5, 2.0]), "bias": jnp.array([5.0])})


def test_frozen_trunk_stays_bit_identical_while_the_head_learns(population, data):
    cfg = dataclasses.replace(CFG, freeze_trunk=True)
    member = unstack(population, 0)
    state = TrainState.create(apply_fn=member.apply_fn, params=member.params, batch_stats=member.batch_stats,
                              key=member.key, tx=make_optimizer(cfg, steps_per_epoch(NUM_EXAMPLES, 16)))
    step = jax.jit(train_step, static_argnames="cfg")
    trained = state
    for i in range(3):
        batch = {"image": data[0][16 * i:16 * (i + 1)], "label": data[1][16 * i:16 * (i + 1)]}
        trained, _ = step(trained, batch, jax.random.fold_in(state.key, i), cfg)
    chex.assert_trees_all_equal(trained.params["trunk"], state.params["trunk"], strict=True)
    chex.assert_trees_all_equal(trained.batch_stats["trunk"], state.batch_stats["trunk"], strict=True)
    for collection in ("params", "batch_stats"):
        before, after = getattr(state, collection)["head"], getattr(trained, collection)["head"]
        assert all(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before)))


def test_a_frozen_trunk_may_still_train_its_batch_norm_and_re_estimate_its_statistics(population64, data):
    cfg = dataclasses.replace(CFG64, freeze_trunk=True, train_trunk_batch_norm=True)
    state, trained = _one_step(population64, data, cfg)
    for layer, before in state.params["trunk"].items():
        after = trained.params["trunk"][layer]
        if is_batch_norm(layer):  # scale and offset learn, the statistics follow the new data
            assert all(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before)))
            assert not np.array_equal(trained.batch_stats["trunk"][layer]["mean"], state.batch_stats["trunk"][layer]["mean"])
        else:
            chex.assert_trees_all_equal(after, before)  # the convolutions stay exactly as they were


def _one_step(population64, data, cfg, graft_from=None):
    """One float64 train step of member 0 from a fresh optimiser state (its trunk replaced by
    ``graft_from``'s). Two configs give two programs, so their results are compared in float64."""
    with jax.enable_x64(True):
        member = unstack(population64, 0)
        params = member.params if graft_from is None else {**member.params, "trunk": graft_from["trunk"]}
        state = TrainState.create(apply_fn=member.apply_fn, params=params, batch_stats=member.batch_stats,
                                  key=member.key, tx=make_optimizer(cfg, steps_per_epoch(NUM_EXAMPLES, 16)))
        batch = {"image": data[0][:16], "label": data[1][:16]}
        return state, jax.jit(train_step, static_argnames="cfg")(state, batch, state.key, cfg)[0]


@pytest.mark.equivalence
def test_a_scaled_trunk_learning_rate_scales_the_trunks_first_update_only(population64, data):
    """Adam's first update is the learning rate times a gradient-size-free ratio: a tenth of the
    rate moves the trunk a tenth as far, and the head as far."""
    start, plain = _one_step(population64, data, CFG64)
    _, slow = _one_step(population64, data, dataclasses.replace(CFG64, trunk_lr_scale=0.1))
    moved = lambda after, part: jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b),  # on the host, in float64
                                             after.params[part], start.params[part])
    chex.assert_trees_all_close(moved(slow, "trunk"), jax.tree.map(lambda d: 0.1 * d, moved(plain, "trunk")),
                                **TOLERANCE)
    chex.assert_trees_all_close(slow.params["head"], plain.params["head"], **TOLERANCE)


@pytest.mark.equivalence
def test_decay_to_start_anchors_a_grafted_trunk_at_the_graft_not_the_random_init(population64, data):
    with jax.enable_x64(True):
        source = unstack(population64, 1).params  # another seed's weights stand in for a pretrained trunk
    assert jax.tree.leaves(source)[0].dtype == np.float64
    cfg = dataclasses.replace(CFG64, decay_to_start=0.1)
    state, trained = _one_step(population64, data, cfg, graft_from=source)
    anchor = trained.opt_state.inner_states["trunk"].inner_state[2].start["trunk"]  # the head: masked out
    chex.assert_trees_all_equal(anchor, source["trunk"])
    _, plain = _one_step(population64, data, CFG64, graft_from=source)  # the first step: no pull yet
    chex.assert_trees_all_close(trained.params, plain.params, **TOLERANCE)

