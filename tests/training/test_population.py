"""The seed population: a scanned epoch, the stepwise loop, chunks of an epoch and each seed alone
agree, and the library's compiler options change XLA:CPU's kernels, not the numbers."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.config import ModelConfig
from jaxcnn.training import population as P
from jaxcnn.training import steps as T
from jaxcnn.training.losses import batch_loss, objective
from tests.tolerances import ONE_FLOAT32_STEP
from tests.training.patterns import CFG, CFG64, NUM_CLASSES, NUM_EXAMPLES, TOLERANCE, as_inputs, copy


@pytest.fixture(scope="module")
def scanned_epoch(population64, data):
    """One float64 epoch (4 steps) of both seeds as scanned programs (in turn: see ``each_member``)."""
    with jax.enable_x64(True):
        return P.each_member(P.train_epoch_population, copy(population64), *as_inputs(data), CFG64)


@pytest.mark.equivalence
def test_scanned_epoch_equals_the_stepwise_loop(population64, data, scanned_epoch):
    with jax.enable_x64(True):
        stepwise = P.each_member(P.train_epoch_stepwise, copy(population64), *as_inputs(data), CFG64)
    chex.assert_trees_all_close(stepwise, scanned_epoch, **TOLERANCE)
    assert np.asarray(scanned_epoch[0].step).tolist() == [4, 4]
    assert scanned_epoch[0].params["head"]["logits"]["kernel"].dtype == np.float64


@pytest.mark.equivalence
@pytest.mark.parametrize("epoch_fn", [P.train_epoch_population, P.train_epoch_stepwise], ids=["scan", "stepwise"])
def test_an_epoch_in_chunks_equals_the_epoch_in_one_piece(population64, data, scanned_epoch, epoch_fn):
    with jax.enable_x64(True):
        state, first = P.each_member(epoch_fn, copy(population64), *as_inputs(data), CFG64, 3)
        state, rest = P.each_member(epoch_fn, state, *as_inputs(data), CFG64, 1)
        chex.assert_trees_all_close(state, scanned_epoch[0], **TOLERANCE)
        np.testing.assert_allclose((3 * first["loss"] + rest["loss"]) / 4, scanned_epoch[1]["loss"], **TOLERANCE)


@pytest.mark.equivalence
def test_seeds_trained_as_a_population_equal_each_trained_alone(population64, data, scanned_epoch):
    """The population's epoch against each seed alone: a plain loop of the single-state step,
    following the documented contract (data order from ``epoch_batches``, the step key
    ``fold_in(key, step)``). The vmapped programs are compared in float32 over one step below."""
    images, labels = data
    step = jax.jit(T.train_step, static_argnames="cfg")
    together, together_metrics = scanned_epoch
    with jax.enable_x64(True):
        for i in range(len(CFG64.seeds)):
            alone = P.unstack(population64, i)
            losses = []
            for index in T.epoch_batches(alone.key, 0, NUM_EXAMPLES, CFG64.batch_size):
                rng = jax.random.fold_in(alone.key, alone.step)
                alone, m = step(alone, {"image": images[index], "label": labels[index]}, rng, CFG64)
                losses.append(m["loss"])
            member = P.unstack(together, i)
            np.testing.assert_allclose(np.mean(losses), together_metrics["loss"][i], **TOLERANCE)
            chex.assert_trees_all_equal(alone.step, member.step)
            chex.assert_trees_all_equal(alone.key, member.key)
            chex.assert_trees_all_close((alone.params, alone.batch_stats), (member.params, member.batch_stats),
                                        **TOLERANCE)
    kernels = together.params["head"]["logits"]["kernel"]
    assert not np.allclose(kernels[0], kernels[1])  # the seeds really differ


@pytest.mark.equivalence
@pytest.mark.parametrize("epoch_fn", [P.train_epoch_population, P.train_epoch_stepwise], ids=["scan", "stepwise"])
def test_one_float32_step_of_the_population_equals_each_seed_alone(population, data, epoch_fn):
    """The float32 vmapped programs themselves, over one step and on what rounding cannot flip: the
    loss, the gradient's norm and the BatchNorm statistics (Adam's first update is about lr * sign(g),
    which rounding flips where g is ~0, so the weights are compared in float64 above)."""
    images, labels = data
    together, together_metrics = epoch_fn(copy(population), {"image": images}, labels, CFG, 1)
    for i in range(len(CFG.seeds)):
        alone = P.unstack(population, i)
        index = T.epoch_batches(alone.key, 0, NUM_EXAMPLES, CFG.batch_size)[0]
        batch = {"image": images[index], "label": labels[index]}
        alone, metrics = jax.jit(T.train_step, static_argnames="cfg")(alone, batch,
                                                                      jax.random.fold_in(alone.key, alone.step), CFG)
        chex.assert_trees_all_close(metrics, P.unstack(together_metrics, i), **ONE_FLOAT32_STEP)
        chex.assert_trees_all_close(alone.batch_stats, P.unstack(together, i).batch_stats, **ONE_FLOAT32_STEP)
        assert int(alone.step) == int(P.unstack(together, i).step) == 1


@pytest.mark.equivalence
def test_the_library_compiles_the_cpu_step_without_ynnpack_and_equal_to_xla_defaults(data):
    """``COMPILER_OPTIONS`` swap XLA:CPU's convolution kernels (YNNPACK for Eigen), not the numbers.

    Gradients are compared, and one step's loss and gradient norm, in float32: parameters after AdamW
    steps are not, as AdamW moves a weight by the learning rate whatever its gradient's size, so a
    gradient of 1e-9 whose sign two programs round differently moves it by 2e-2 and says nothing
    about the kernels.
    """
    cfg = dataclasses.replace(CFG, model=ModelConfig(widths=(32,), hidden=16))  # YNNPACK skips 16 channels or fewer
    population = P.create_population((0,), NUM_CLASSES, cfg, NUM_EXAMPLES)
    images, labels = jnp.asarray(data[0]), jnp.asarray(data[1])
    index = jnp.arange(16).reshape(1, 16)
    if jax.default_backend() == "cpu":
        text = P._step_population.lower(population, {"image": images}, labels, index, cfg).compile().as_text()
        assert "convolution(" in text and "__ynn_fusion" not in text
    member = P.unstack(population, 0)

    def grads(params):
        def loss(p):
            logits, _ = member.apply_fn({"params": p, "batch_stats": member.batch_stats}, T.to_float(images[:16]),
                                        train=True, rngs={"dropout": member.key}, mutable=["batch_stats"])
            return batch_loss(logits, labels[:16], objective(cfg, NUM_CLASSES))
        return jax.grad(loss)(params)

    library_grads = jax.jit(grads, compiler_options=T.COMPILER_OPTIONS)(member.params)
    chex.assert_trees_all_close(library_grads, jax.jit(grads)(member.params), **ONE_FLOAT32_STEP)
    default_step = jax.jit(T.train_step, static_argnames="cfg")  # XLA's default options
    _, library_metrics = P._step_population(copy(population), {"image": images}, labels, index, cfg)
    batch = {"image": images[index[0]], "label": labels[index[0]]}
    _, default_metrics = default_step(member, batch, jax.random.fold_in(member.key, member.step), cfg)
    for name in ("loss", "grad_norm"):
        np.testing.assert_allclose(library_metrics[name][0], default_metrics[name], **ONE_FLOAT32_STEP)
