"""The CNN's own pieces against the Flax ones they stand in for."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from jaxcnn.model import max_pool_2x2


@pytest.mark.parametrize("side", [28, 7], ids=["even", "odd"])
def test_max_pool_2x2_and_its_gradient_after_a_relu_equal_nn_max_pool(side):
    rng = np.random.default_rng(side)
    x = rng.standard_normal((4, side, side, 3)).astype(np.float32)
    x[0, :2, :2] = -1.0  # a window of ReLU zeros: tied maxima, whose gradient the ReLU stops
    g = rng.standard_normal((4, side // 2, side // 2, 3)).astype(np.float32)
    stock = lambda a: nn.max_pool(jax.nn.relu(a), (2, 2), strides=(2, 2))
    ours = lambda a: max_pool_2x2(jax.nn.relu(a))
    np.testing.assert_array_equal(ours(x), stock(x))
    grad = lambda f: jax.vjp(f, x)[1](g)[0]
    np.testing.assert_array_equal(grad(ours), grad(stock))
