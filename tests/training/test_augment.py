"""Augmentation: the random affine and elastic jitter of an image, the page geometry's jitter, and
mixup/CutMix pairs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.config import NO_AUGMENT, AugmentConfig
from jaxcnn.training.augment import GEOMETRY_SHIFT, _cutmix_box, augment_batch, augment_geometry, mix_batch
from jaxcnn.training.steps import to_float
from tests.training.patterns import TOLERANCE


def test_augmentation_keeps_the_shape_and_range_and_changes_pixels(data):
    images = to_float(jnp.asarray(data[0][:8]))
    augment = jax.jit(augment_batch, static_argnames="cfg")
    out = augment(jax.random.PRNGKey(0), images, AugmentConfig())
    chex.assert_shape(out, images.shape)
    chex.assert_type(out, jnp.float32)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert float(jnp.abs(out - images).mean()) > 0.01
    chex.assert_trees_all_equal(out, augment(jax.random.PRNGKey(0), images, AugmentConfig()))
    assert not np.array_equal(out, augment(jax.random.PRNGKey(1), images, AugmentConfig()))


def test_no_augment_is_the_identity(data):
    images = to_float(jnp.asarray(data[0][:8]))
    assert not NO_AUGMENT.enabled
    chex.assert_trees_all_equal(augment_batch(jax.random.PRNGKey(0), images, NO_AUGMENT), images)


@pytest.mark.parametrize("mixup_alpha, cutmix_alpha", [(0.4, 0.0), (0.0, 1.0)])
def test_mixing_pairs_each_image_with_the_next_and_weighs_what_it_kept(data, mixup_alpha, cutmix_alpha):
    images = to_float(jnp.asarray(data[0][:8]))
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


def test_page_geometry_is_jittered_with_one_scale_for_its_sizes_and_a_small_shift():
    geometry = jnp.tile(jnp.array([[-0.7, -1.0, 0.02, -0.01, -2.8]]), (256, 1))
    out = augment_geometry(jax.random.PRNGKey(0), geometry, AugmentConfig())
    moved = np.asarray(out - geometry)
    np.testing.assert_allclose(moved[:, 0], moved[:, 1], atol=1e-6)  # height, width and stroke share a scale
    np.testing.assert_allclose(moved[:, 0], moved[:, 4], atol=1e-6)
    assert np.abs(moved[:, 0]).max() <= -np.log1p(-AugmentConfig().scale) + 1e-6 and moved[:, 0].std() > 0.01
    assert np.abs(moved[:, 2:4]).max() <= GEOMETRY_SHIFT + 1e-6
    chex.assert_trees_all_equal(augment_geometry(jax.random.PRNGKey(0), geometry, NO_AUGMENT), geometry)

