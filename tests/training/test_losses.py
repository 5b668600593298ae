"""The losses: each of ``config.LOSSES`` as data (``objective``) is that loss alone, value and gradient,
and runs that differ only in their loss share one compiled step."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.config import TrainConfig
from jaxcnn.errors import ConfigError
from jaxcnn.training import population as P
from jaxcnn.training.losses import batch_loss, complementary_risk, objective, training_loss
from jaxcnn.training.steps import program_config
from tests.training.patterns import CFG, NUM_CLASSES, NUM_EXAMPLES, as_inputs, copy


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
        loss = objective(cfg, NUM_CLASSES)
        np.testing.assert_allclose(batch_loss(logits, labels, loss), reference_loss(logits, labels, cfg), rtol=1e-6)
        weighed = jax.grad(lambda x: batch_loss(x, labels, loss))(logits)
        index = list(loss["weights"]).index(1.0)
        alone = jax.grad(lambda x: jnp.concatenate([training_loss(x, labels, loss).mean(1),
                                                  complementary_risk(x, labels)[None]])[index])(logits)
        np.testing.assert_array_equal(weighed, alone)


def test_runs_that_differ_only_in_their_loss_share_one_compiled_step(population, data):
    """Part 3's models (one per loss) reuse one program: the loss is an argument, not the static config."""
    inputs, labels = jax.device_put(as_inputs(data))
    index = jnp.arange(2 * 16).reshape(2, 16) % NUM_EXAMPLES
    before = P._step_population._cache_size()
    for cfg in LOSS_CONFIGS:
        cfg = dataclasses.replace(CFG, **{f: getattr(cfg, f) for f in ("loss", "label_transition", "gce_q",
                                                                       "label_smoothing")})
        P._step_population(copy(population), inputs, labels, index, program_config(cfg),
                           jax.device_put(objective(cfg, NUM_CLASSES)))
    assert P._step_population._cache_size() - before <= 1


def test_a_transition_matrix_of_another_size_is_one_line():
    with pytest.raises(ConfigError, match=r"TrainConfig.label_transition must be 3x3 for 3 classes, got 4x4"):
        objective(TrainConfig(loss="forward", label_transition=FLIP), 3)
