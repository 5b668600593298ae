"""Linear CKA and the per-layer reading of what transfer changes inside a trunk."""

import numpy as np
import pytest

from jaxcnn.config import ModelConfig, TrainConfig
from jaxcnn.evaluation.cka import linear_cka, relative_distance, transfer_changes
from jaxcnn.training.population import create_population, unstack
from jaxcnn.training.steps import inference_variables
from jaxcnn.training.transfer import graft_init

RNG = np.random.default_rng(0)
X = RNG.standard_normal((200, 12))


def test_linear_cka_is_one_for_the_same_features_up_to_rotation_and_isotropic_scale():
    rotation, _ = np.linalg.qr(RNG.standard_normal((12, 12)))
    assert linear_cka(X, X) == pytest.approx(1.0)
    assert linear_cka(X, X @ rotation) == pytest.approx(1.0)
    assert linear_cka(X, 7.5 * X + 3.0) == pytest.approx(1.0)  # a shift is centred away


def test_linear_cka_tells_unrelated_and_unevenly_scaled_features_apart():
    assert linear_cka(X, RNG.standard_normal((200, 12))) < 0.2
    stretched = X * np.r_[10.0, np.ones(11)]  # one direction scaled alone: not an isotropic change
    assert linear_cka(X, stretched) < 0.9
    assert linear_cka(X[:, :6], X) == pytest.approx(linear_cka(X, X[:, :6]))  # symmetric, any widths


def population(model: ModelConfig, seeds, num_classes: int):
    return create_population(seeds, num_classes, TrainConfig(seeds=seeds, model=model), 64)


@pytest.mark.parametrize("model, layers", [
    (ModelConfig(widths=(4, 8), hidden=16), ["conv0_0", "conv0_1", "conv1_0", "conv1_1"]),
    (ModelConfig(trunk="resnet", widths=(4, 8), blocks=1, hidden=16),
     ["stem", "stage0_block0/conv0", "stage0_block0/conv1", "stage1_block0/shortcut", "stage1_block0/conv0",
      "stage1_block0/conv1"]),
])
def test_a_graft_before_training_has_its_sources_features_and_weights_not_the_scratch_ones(model, layers):
    source = unstack(inference_variables(population(model, (7,), 62)), 0)  # another task's head
    grafted = graft_init(source)(population(model, (0, 1), 10))
    scratch = population(model, (0, 1), 10)
    images = RNG.integers(0, 255, (64, 28, 28), dtype=np.uint8)
    changes = transfer_changes(grafted, source, scratch, images)
    assert changes["layers"] == layers and changes["images"] == 64  # in the order the trunk runs them
    for layer in layers:
        assert changes["cka_source"][layer]["values"] == pytest.approx([1.0, 1.0], abs=1e-6)
        assert changes["distance"][layer]["values"] == pytest.approx([0.0, 0.0], abs=1e-6)
        assert changes["cka_scratch"][layer]["mean"] < 0.999  # random weights of another seed
    moved = unstack(inference_variables(scratch), 0)
    assert all(d > 0.5 for d in relative_distance(moved, source).values())


def test_without_a_scratch_model_only_the_source_is_compared():
    model = ModelConfig(widths=(4,), hidden=8)
    source = unstack(inference_variables(population(model, (3,), 10)), 0)
    state = graft_init(source)(population(model, (0,), 10))
    changes = transfer_changes(state, source, None, RNG.integers(0, 255, (16, 28, 28), dtype=np.uint8))
    assert set(changes) == {"layers", "images", "cka_source", "distance"}
