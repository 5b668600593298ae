"""The pure steps and whole epochs: learning, one compilation, determinism, and equal paths.

Compilation dominates on the CPU, so the expensive programs run once in module fixtures and several
tests assert on their results.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.config import ModelConfig, TrainConfig
from jaxcnn.config import NO_AUGMENT, AugmentConfig
from jaxcnn.errors import ConfigError
from jaxcnn.training import steps as T
from jaxcnn.training.augment import _cutmix_box, augment_batch, mix_batch
from tests.tolerances import FLOAT64_CROSS_PROGRAM, ONE_FLOAT32_STEP

NUM_CLASSES = 4
NUM_EXAMPLES = 64
CFG = TrainConfig(seeds=(0, 1), epochs=20, batch_size=16, learning_rate=1e-2, warmup_epochs=0,
                  label_smoothing=0.0, model=ModelConfig(widths=(4, 8), hidden=16), augment=NO_AUGMENT)
CFG64 = dataclasses.replace(CFG, model=dataclasses.replace(CFG.model, dtype="float64"))
TOLERANCE = FLOAT64_CROSS_PROGRAM  # the tests comparing two programs train in float64 (tests/tolerances.py)


def pattern_images(n: int, seed: int = 0):
    """uint8 [n, 28, 28] images whose class (i % 4) is a bar, a column, a diagonal or a frame, plus noise."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % NUM_CLASSES).astype(np.int32)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for image, label in zip(images, labels):
        if label == 0:
            image[12:16, 4:24] = 255
        elif label == 1:
            image[4:24, 12:16] = 255
        elif label == 2:
            image[np.arange(4, 24), np.arange(4, 24)] = 255
        else:
            image[4:24, 4] = image[4:24, 23] = image[4, 4:24] = image[23, 4:24] = 255
    return images, labels


def as_inputs(data):
    """``(images, labels)`` -> the ``(inputs, labels)`` the epoch functions take."""
    return {"image": data[0]}, data[1]


def copy(tree):
    """A copy of a state, for the jitted epochs that donate their input."""
    return jax.tree.map(jnp.copy, tree)


@pytest.fixture(scope="module")
def data():
    return pattern_images(NUM_EXAMPLES)


@pytest.fixture(scope="module")
def population():
    return T.create_population(CFG.seeds, NUM_CLASSES, CFG, NUM_EXAMPLES)


@pytest.fixture(scope="module")
def counted_step():
    """``train_step`` jitted, wrapped to fail if it is traced more than once."""
    chex.clear_trace_counter()
    return jax.jit(chex.assert_max_traces(T.train_step, n=1), static_argnames="cfg")


@pytest.fixture(scope="module")
def fixed_batch_run(population, data, counted_step):
    """20 steps on one fixed batch of 16."""
    state = T.unstack(population, 0)
    batch = {"image": data[0][:16], "label": data[1][:16]}
    metrics = []
    for i in range(20):
        state, m = counted_step(state, batch, jax.random.fold_in(state.key, i), CFG)
        metrics.append(jax.device_get(m))
    return state, {k: np.array([m[k] for m in metrics]) for k in metrics[0]}


@pytest.fixture(scope="module")
def population64():
    """The population of CFG64, in float64: what programs that should agree are compared on."""
    with jax.enable_x64(True):
        return T.create_population(CFG64.seeds, NUM_CLASSES, CFG64, NUM_EXAMPLES)


@pytest.fixture(scope="module")
def scanned_epoch(population64, data):
    """One float64 epoch (4 steps) of both seeds as scanned programs (in turn: see ``each_member``)."""
    with jax.enable_x64(True):
        return T.each_member(T.train_epoch_population, copy(population64), *as_inputs(data), CFG64)


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
    state = T.unstack(population, 0)
    step(state, {"image": data[0][:2], "label": data[1][:2]})
    with pytest.raises(AssertionError, match="traced > 1 times"):
        step(state, {"image": data[0][:3], "label": data[1][:3]})


def test_eval_step_is_deterministic_and_ignores_dropout(population, data):
    state = T.unstack(population, 0)
    batch = {"image": data[0][:16], "label": data[1][:16]}
    first, second = T.eval_step(state, batch), T.eval_step(state, batch)
    chex.assert_trees_all_equal(first, second)
    for dropout in (0.0, 0.9):
        model = T.make_model(NUM_CLASSES, dataclasses.replace(CFG.model, dropout=dropout))
        chex.assert_trees_all_close(T.eval_step(state.replace(apply_fn=model.apply), batch), first,
                                    rtol=1e-6, atol=1e-6)


def test_augmentation_keeps_the_shape_and_range_and_changes_pixels(data):
    images = T.to_float(jnp.asarray(data[0][:8]))
    augment = jax.jit(augment_batch, static_argnames="cfg")
    out = augment(jax.random.PRNGKey(0), images, AugmentConfig())
    chex.assert_shape(out, images.shape)
    chex.assert_type(out, jnp.float32)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert float(jnp.abs(out - images).mean()) > 0.01
    chex.assert_trees_all_equal(out, augment(jax.random.PRNGKey(0), images, AugmentConfig()))
    assert not np.array_equal(out, augment(jax.random.PRNGKey(1), images, AugmentConfig()))


def test_no_augment_is_the_identity(data):
    images = T.to_float(jnp.asarray(data[0][:8]))
    assert not NO_AUGMENT.enabled
    chex.assert_trees_all_equal(augment_batch(jax.random.PRNGKey(0), images, NO_AUGMENT), images)


@pytest.mark.equivalence
def test_scanned_epoch_equals_the_stepwise_loop(population64, data, scanned_epoch):
    with jax.enable_x64(True):
        stepwise = T.each_member(T.train_epoch_stepwise, copy(population64), *as_inputs(data), CFG64)
    chex.assert_trees_all_close(stepwise, scanned_epoch, **TOLERANCE)
    assert np.asarray(scanned_epoch[0].step).tolist() == [4, 4]
    assert scanned_epoch[0].params["head"]["logits"]["kernel"].dtype == np.float64


@pytest.mark.equivalence
@pytest.mark.parametrize("epoch_fn", [T.train_epoch_population, T.train_epoch_stepwise], ids=["scan", "stepwise"])
def test_an_epoch_in_chunks_equals_the_epoch_in_one_piece(population64, data, scanned_epoch, epoch_fn):
    with jax.enable_x64(True):
        state, first = T.each_member(epoch_fn, copy(population64), *as_inputs(data), CFG64, 3)
        state, rest = T.each_member(epoch_fn, state, *as_inputs(data), CFG64, 1)
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
            alone = T.unstack(population64, i)
            losses = []
            for index in T.epoch_batches(alone.key, 0, NUM_EXAMPLES, CFG64.batch_size):
                rng = jax.random.fold_in(alone.key, alone.step)
                alone, m = step(alone, {"image": images[index], "label": labels[index]}, rng, CFG64)
                losses.append(m["loss"])
            member = T.unstack(together, i)
            np.testing.assert_allclose(np.mean(losses), together_metrics["loss"][i], **TOLERANCE)
            chex.assert_trees_all_equal(alone.step, member.step)
            chex.assert_trees_all_equal(alone.key, member.key)
            chex.assert_trees_all_close((alone.params, alone.batch_stats), (member.params, member.batch_stats),
                                        **TOLERANCE)
    kernels = together.params["head"]["logits"]["kernel"]
    assert not np.allclose(kernels[0], kernels[1])  # the seeds really differ


@pytest.mark.equivalence
@pytest.mark.parametrize("epoch_fn", [T.train_epoch_population, T.train_epoch_stepwise], ids=["scan", "stepwise"])
def test_one_float32_step_of_the_population_equals_each_seed_alone(population, data, epoch_fn):
    """The float32 vmapped programs themselves, over one step and on what rounding cannot flip: the
    loss, the gradient's norm and the BatchNorm statistics (Adam's first update is about lr * sign(g),
    which rounding flips where g is ~0, so the weights are compared in float64 above)."""
    images, labels = data
    together, together_metrics = epoch_fn(copy(population), {"image": images}, labels, CFG, 1)
    for i in range(len(CFG.seeds)):
        alone = T.unstack(population, i)
        index = T.epoch_batches(alone.key, 0, NUM_EXAMPLES, CFG.batch_size)[0]
        batch = {"image": images[index], "label": labels[index]}
        alone, metrics = jax.jit(T.train_step, static_argnames="cfg")(alone, batch,
                                                                      jax.random.fold_in(alone.key, alone.step), CFG)
        chex.assert_trees_all_close(metrics, T.unstack(together_metrics, i), **ONE_FLOAT32_STEP)
        chex.assert_trees_all_close(alone.batch_stats, T.unstack(together, i).batch_stats, **ONE_FLOAT32_STEP)
        assert int(alone.step) == int(T.unstack(together, i).step) == 1


def test_frozen_trunk_stays_bit_identical_while_the_head_learns(population, data):
    cfg = dataclasses.replace(CFG, freeze_trunk=True)
    member = T.unstack(population, 0)
    state = T.TrainState.create(apply_fn=member.apply_fn, params=member.params, batch_stats=member.batch_stats,
                                key=member.key, tx=T.make_optimizer(cfg, T.steps_per_epoch(NUM_EXAMPLES, 16)))
    step = jax.jit(T.train_step, static_argnames="cfg")
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
        if T.is_batch_norm(layer):  # scale and offset learn, the statistics follow the new data
            assert all(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before)))
            assert not np.array_equal(trained.batch_stats["trunk"][layer]["mean"], state.batch_stats["trunk"][layer]["mean"])
        else:
            chex.assert_trees_all_equal(after, before)  # the convolutions stay exactly as they were


def _one_step(population64, data, cfg, graft_from=None):
    """One float64 train step of member 0 from a fresh optimiser state (its trunk replaced by
    ``graft_from``'s). Two configs give two programs, so their results are compared in float64."""
    with jax.enable_x64(True):
        member = T.unstack(population64, 0)
        params = member.params if graft_from is None else {**member.params, "trunk": graft_from["trunk"]}
        state = T.TrainState.create(apply_fn=member.apply_fn, params=params, batch_stats=member.batch_stats,
                                    key=member.key, tx=T.make_optimizer(cfg, T.steps_per_epoch(NUM_EXAMPLES, 16)))
        batch = {"image": data[0][:16], "label": data[1][:16]}
        return state, jax.jit(T.train_step, static_argnames="cfg")(state, batch, state.key, cfg)[0]


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


def test_decay_to_start_pulls_toward_the_first_weights_it_saw():
    mask = lambda params: {"kernel": True, "bias": False}
    tx = T.decay_toward_start(0.5, mask)
    first = {"kernel": jnp.array([1.0, 2.0]), "bias": jnp.array([3.0])}
    zero = jax.tree.map(jnp.zeros_like, first)
    updates, state = tx.update(zero, tx.init(first), first)
    chex.assert_trees_all_equal(updates, zero)  # nothing to pull back at the start
    moved = {"kernel": jnp.array([2.0, 2.0]), "bias": jnp.array([5.0])}
    updates, state = tx.update(zero, state, moved)
    chex.assert_trees_all_equal(updates, {"kernel": jnp.array([0.5, 0.0]), "bias": jnp.array([0.0])})
    chex.assert_trees_all_equal(state.start, first)


@pytest.mark.equivalence
def test_decay_to_start_anchors_a_grafted_trunk_at_the_graft_not_the_random_init(population64, data):
    with jax.enable_x64(True):
        source = T.unstack(population64, 1).params  # another seed's weights stand in for a pretrained trunk
    assert jax.tree.leaves(source)[0].dtype == np.float64
    cfg = dataclasses.replace(CFG64, decay_to_start=0.1)
    state, trained = _one_step(population64, data, cfg, graft_from=source)
    anchor = trained.opt_state.inner_states["trunk"].inner_state[2].start["trunk"]  # the head: masked out
    chex.assert_trees_all_equal(anchor, source["trunk"])
    _, plain = _one_step(population64, data, CFG64, graft_from=source)  # the first step: no pull yet
    chex.assert_trees_all_close(trained.params, plain.params, **TOLERANCE)


@pytest.mark.equivalence
def test_the_library_compiles_the_cpu_step_without_ynnpack_and_equal_to_xla_defaults(data):
    """``COMPILER_OPTIONS`` swap XLA:CPU's convolution kernels (YNNPACK for Eigen), not the numbers.

    Gradients are compared, and one step's loss and gradient norm, in float32: parameters after AdamW
    steps are not, as AdamW moves a weight by the learning rate whatever its gradient's size, so a
    gradient of 1e-9 whose sign two programs round differently moves it by 2e-2 and says nothing
    about the kernels.
    """
    cfg = dataclasses.replace(CFG, model=ModelConfig(widths=(32,), hidden=16))  # YNNPACK skips 16 channels or fewer
    population = T.create_population((0,), NUM_CLASSES, cfg, NUM_EXAMPLES)
    images, labels = jnp.asarray(data[0]), jnp.asarray(data[1])
    index = jnp.arange(16).reshape(1, 16)
    if jax.default_backend() == "cpu":
        text = T._step_population.lower(population, {"image": images}, labels, index, cfg).compile().as_text()
        assert "convolution(" in text and "__ynn_fusion" not in text
    member = T.unstack(population, 0)

    def grads(params):
        def loss(p):
            logits, _ = member.apply_fn({"params": p, "batch_stats": member.batch_stats}, T.to_float(images[:16]),
                                        train=True, rngs={"dropout": member.key}, mutable=["batch_stats"])
            return T.batch_loss(logits, labels[:16], T.objective(cfg, NUM_CLASSES))
        return jax.grad(loss)(params)

    library_grads = jax.jit(grads, compiler_options=T.COMPILER_OPTIONS)(member.params)
    chex.assert_trees_all_close(library_grads, jax.jit(grads)(member.params), **ONE_FLOAT32_STEP)
    default_step = jax.jit(T.train_step, static_argnames="cfg")  # XLA's default options
    _, library_metrics = T._step_population(copy(population), {"image": images}, labels, index, cfg)
    batch = {"image": images[index[0]], "label": labels[index[0]]}
    _, default_metrics = default_step(member, batch, jax.random.fold_in(member.key, member.step), cfg)
    for name in ("loss", "grad_norm"):
        np.testing.assert_allclose(library_metrics[name][0], default_metrics[name], **ONE_FLOAT32_STEP)


@pytest.mark.parametrize("mixup_alpha, cutmix_alpha", [(0.4, 0.0), (0.0, 1.0)])
def test_mixing_pairs_each_image_with_the_next_and_weighs_what_it_kept(data, mixup_alpha, cutmix_alpha):
    images = T.to_float(jnp.asarray(data[0][:8]))
    mixed, partner, weight = mix_batch(jax.random.PRNGKey(3), images, mixup_alpha, cutmix_alpha)
    np.testing.assert_array_equal(partner, np.roll(np.arange(8), -1))
    assert 0 <= float(weight) <= 1
    if mixup_alpha:
        np.testing.assert_allclose(mixed, weight * images + (1 - weight) * images[partner], **TOLERANCE)
    else:  # every pixel is its own image's or its partner's, and ``weight`` is the share kept
        own = np.asarray(mixed == images).all(axis=(0, 3))
        assert (own | np.asarray(mixed == images[partner]).all(axis=(0, 3))).all()
        np.testing.assert_allclose(float(weight), own.mean(), atol=1 / 784)


def test_cutmix_boxes_cover_about_one_minus_lambda():
    areas = [float(_cutmix_box(jax.random.PRNGKey(i), (28, 28), 0.75).mean()) for i in range(200)]
    assert max(areas) <= 0.25 + 0.04  # a 14x14 box, clipped at the edges: never more
    assert 0.12 < np.mean(areas) < 0.25


def test_mixing_changes_the_loss_and_no_mixing_draws_as_before(population, data):
    member = T.unstack(population, 0)
    batch = {"image": data[0][:16], "label": data[1][:16]}
    rng = jax.random.PRNGKey(5)
    step = jax.jit(T.train_step, static_argnames="cfg")
    _, plain = step(member, batch, rng, CFG)
    _, mixed = step(member, batch, rng, dataclasses.replace(CFG, mixup_alpha=0.4))
    assert float(mixed["loss"]) != float(plain["loss"])


def test_weight_average_follows_the_weights_and_is_what_is_evaluated(data):
    cfg = dataclasses.replace(CFG, seeds=(0,), ema_decay=0.9)
    state = T.create_population(cfg.seeds, NUM_CLASSES, cfg, NUM_EXAMPLES)
    chex.assert_trees_all_equal(state.ema, {"params": state.params, "batch_stats": state.batch_stats})
    trained, _ = T.train_epoch_stepwise(copy(state), *as_inputs(data), cfg)
    distance = lambda a, b: optax.global_norm(jax.tree.map(jnp.subtract, a, b))
    # the average lies between the start and the current weights
    assert 0 < float(distance(trained.ema["params"], trained.params)) < float(distance(state.params, trained.params))
    logits, _ = T.evaluate_population(trained, *as_inputs(data), 32)
    averaged = trained.replace(params=trained.ema["params"], batch_stats=trained.ema["batch_stats"], ema=None)
    np.testing.assert_allclose(logits, T.evaluate_population(averaged, *as_inputs(data), 32)[0], **TOLERANCE)


def test_weight_average_ramps_up_from_the_first_steps():
    """At step t the average moves by 1 - min(decay, (1 + t) / (10 + t)): 90% at the first step."""
    cfg = dataclasses.replace(CFG, seeds=(0,), ema_decay=0.999)
    state = T.unstack(T.create_population(cfg.seeds, NUM_CLASSES, cfg, NUM_EXAMPLES), 0)
    moved = state.replace(step=jnp.asarray(0), params=jax.tree.map(lambda p: p + 1.0, state.params))
    updated = T.update_ema(moved, cfg.ema_decay)
    chex.assert_trees_all_close(updated.ema["params"], jax.tree.map(lambda p: p + 0.9, state.params), atol=1e-6)


def test_page_geometry_is_jittered_with_one_scale_for_its_sizes_and_a_small_shift():
    from jaxcnn.training.augment import GEOMETRY_SHIFT, augment_geometry

    geometry = jnp.tile(jnp.array([[-0.7, -1.0, 0.02, -0.01, -2.8]]), (256, 1))
    out = augment_geometry(jax.random.PRNGKey(0), geometry, AugmentConfig())
    moved = np.asarray(out - geometry)
    np.testing.assert_allclose(moved[:, 0], moved[:, 1], atol=1e-6)  # height, width and stroke share a scale
    np.testing.assert_allclose(moved[:, 0], moved[:, 4], atol=1e-6)
    assert np.abs(moved[:, 0]).max() <= -np.log1p(-AugmentConfig().scale) + 1e-6 and moved[:, 0].std() > 0.01
    assert np.abs(moved[:, 2:4]).max() <= GEOMETRY_SHIFT + 1e-6
    chex.assert_trees_all_equal(augment_geometry(jax.random.PRNGKey(0), geometry, NO_AUGMENT), geometry)


def reference_loss(logits, labels, cfg: TrainConfig):
    """Each loss of ``config.LOSSES`` written out on its own, in float64 NumPy."""
    logits, k = np.asarray(logits, np.float64), logits.shape[-1]
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    probs, rows = np.exp(log_probs), np.arange(len(labels))
    if cfg.loss == "cross_entropy":
        targets = np.eye(k)[labels] * (1 - cfg.label_smoothing) + cfg.label_smoothing / k
        return -(targets * log_probs).sum(-1).mean()
    if cfg.loss == "forward":
        return -np.log((probs @ np.asarray(cfg.label_transition))[rows, labels] + 1e-8).mean()
    if cfg.loss == "gce":
        return ((1 - (probs[rows, labels] + 1e-8) ** cfg.gce_q) / cfg.gce_q).mean()
    risks = (-log_probs * (1 - (k - 1) * np.eye(k)[labels])).mean(0)
    return np.maximum(risks, 0).sum()


FLIP = tuple(tuple(0.8 if i == j else 0.2 / 3 for j in range(NUM_CLASSES)) for i in range(NUM_CLASSES))
LOSS_CONFIGS = [TrainConfig(loss="cross_entropy", label_smoothing=0.1), TrainConfig(loss="forward", label_transition=FLIP),
                TrainConfig(loss="gce", gce_q=0.5), TrainConfig(loss="complementary_nn")]


@pytest.mark.parametrize("cfg", LOSS_CONFIGS, ids=[c.loss for c in LOSS_CONFIGS])
def test_the_objective_as_data_is_each_loss_and_adds_nothing_of_the_others(cfg):
    """The step weighs every loss by a one-hot of ``cfg.loss``: the value is that loss alone, and
    the other losses add exactly nothing to the gradient (float64, one program against another)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        logits = jnp.asarray(rng.normal(size=(32, NUM_CLASSES)) * 3)
        labels = jnp.asarray(rng.integers(0, NUM_CLASSES, 32), jnp.int32)
        loss = T.objective(cfg, NUM_CLASSES)
        np.testing.assert_allclose(T.batch_loss(logits, labels, loss), reference_loss(logits, labels, cfg), rtol=1e-6)
        weighed = jax.grad(lambda x: T.batch_loss(x, labels, loss))(logits)
        index = list(loss["weights"]).index(1.0)
        alone = jax.grad(lambda x: jnp.concatenate([T.training_loss(x, labels, loss).mean(1),
                                                    T.complementary_risk(x, labels)[None]])[index])(logits)
        np.testing.assert_array_equal(weighed, alone)


def test_runs_that_differ_only_in_their_loss_share_one_compiled_step(population, data):
    """Part 3's models (one per loss) reuse one program: the loss is an argument, not the static config."""
    inputs, labels = jax.device_put(as_inputs(data))
    index = jnp.arange(2 * 16).reshape(2, 16) % NUM_EXAMPLES
    before = T._step_population._cache_size()
    for cfg in LOSS_CONFIGS:
        cfg = dataclasses.replace(CFG, **{f: getattr(cfg, f) for f in ("loss", "label_transition", "gce_q",
                                                                       "label_smoothing")})
        T._step_population(copy(population), inputs, labels, index, T.program_config(cfg),
                           jax.device_put(T.objective(cfg, NUM_CLASSES)))
    assert T._step_population._cache_size() - before <= 1


def test_a_transition_matrix_of_another_size_is_one_line():
    with pytest.raises(ConfigError, match=r"TrainConfig.label_transition must be 3x3 for 3 classes, got 4x4"):
        T.objective(TrainConfig(loss="forward", label_transition=FLIP), 3)
