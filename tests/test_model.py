"""The CNN's own pieces against the Flax ones they stand in for."""

import flax.linen as nn
import jax
import jax.numpy as jnp
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


def test_geometry_skip_adds_a_linear_path_from_the_page_to_the_logits():
    """With ``geometry_skip`` the logits are the plain head's plus a linear map of the standardised
    geometry (inference mode: the BatchNorm is affine, so the difference is linear in the geometry)."""
    from jaxcnn.model import CNN

    images = jnp.zeros((3, 28, 28, 1))
    geometry = jnp.asarray(np.random.default_rng(0).standard_normal((3, 5)), jnp.float32)
    model = CNN(62, (4, 8), 16, geometry_features=5, geometry_skip=True)
    variables = model.init(jax.random.PRNGKey(0), images, geometry=geometry)
    plain_variables = CNN(62, (4, 8), 16, geometry_features=5).init(jax.random.PRNGKey(0), images, geometry=geometry)
    head = variables["params"]["head"]
    assert head["geometry_logits"]["kernel"].shape == (5, 62)
    assert set(head) - set(plain_variables["params"]["head"]) == {"geometry_logits"}
    without = {**variables, "params": {**variables["params"], "head": {
        **head, "geometry_logits": {"kernel": jnp.zeros((5, 62))}}}}
    skip = model.apply(variables, images, geometry=geometry) - model.apply(without, images, geometry=geometry)
    bn = variables["batch_stats"]["head"]["geometry_bn"]
    standard = (geometry - bn["mean"]) / jnp.sqrt(bn["var"] + 1e-5) * head["geometry_bn"]["scale"] + head["geometry_bn"]["bias"]
    np.testing.assert_allclose(skip, standard @ head["geometry_logits"]["kernel"], rtol=1e-5, atol=1e-5)


def test_residual_trunk_has_the_same_parameter_tree_at_two_input_sizes():
    from jaxcnn.model import CNN

    shapes = [jax.tree.map(jnp.shape, CNN(10, (4, 8), 16, trunk="resnet", image_size=size).init(
        jax.random.PRNGKey(0), jnp.zeros((1, size, size, 1)))) for size in (28, 48)]
    assert shapes[0] == shapes[1]
    assert {"stem", "stage1_block0", "bn_out"} <= set(shapes[0]["params"]["trunk"])


def test_a_residual_part1_trunk_grafts_into_an_mnist_model_by_name():
    """A 62-class, page-geometry model at 48 px gives its whole trunk to a 10-class MNIST model at 28 px."""
    from jaxcnn.model import CNN
    from jaxcnn.training.transfer import transfer_plan

    source = CNN(62, (4, 8), 16, geometry_features=5, trunk="resnet", image_size=48).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 48, 48, 1)), geometry=jnp.zeros((1, 5)))
    target = CNN(10, (4, 8), 16, trunk="resnet").init(jax.random.PRNGKey(1), jnp.zeros((1, 28, 28, 1)))
    plan = transfer_plan(target, source)
    trunk_leaves = len(jax.tree.leaves(target["params"]["trunk"])) + len(jax.tree.leaves(target["batch_stats"]["trunk"]))
    assert len(plan["copied"]) == trunk_leaves
    assert all(p.split("/")[1] == "head" for p in plan["kept_fresh"])
