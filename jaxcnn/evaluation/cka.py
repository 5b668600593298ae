"""What transfer changes inside a network: per trunk layer, how alike two models' features are (linear
CKA, Kornblith et al. 2019) and how far one model's weights moved from another's (relative distance,
as in Neyshabur et al. 2020 and Raghu et al. 2019's Transfusion).

Features are the outputs of every convolution inside the trunk, found by module name, so the VGG
trunk (``trunk/conv0_0``...) and the residual one (``trunk/stage0_block0/conv0``...) are read alike.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.evaluation.convergence import stat
from jaxcnn.training.population import unstack
from jaxcnn.training.steps import inference_variables, to_float

TRUNK = "trunk"


def centered_gram(features) -> np.ndarray:
    """The centred Gram matrix H X X^T H (float64 [N, N]) of features [N, ...], one row per example."""
    x = np.asarray(features, np.float64).reshape(len(features), -1)
    x = x - x.mean(0, keepdims=True)
    return x @ x.T


def cka_of_grams(k: np.ndarray, l: np.ndarray) -> float:
    """Linear CKA of two centred Gram matrices: <K, L> / (||K|| ||L||), in [0, 1]."""
    return float(np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l)))


def linear_cka(x, y) -> float:
    """Linear CKA between features x [N, p] and y [N, q] of the same N examples: 1 for features
    equal up to an orthogonal transform and an isotropic scaling, near 0 for unrelated ones."""
    return cka_of_grams(centered_gram(x), centered_gram(y))


def is_trunk_conv(module: nn.Module, method_name: str) -> bool:
    """``capture_intermediates``' filter: the output of every convolution inside the trunk."""
    return method_name == "__call__" and isinstance(module, nn.Conv) and module.path[:1] == (TRUNK,)


def in_call_order(tree: dict, prefix: str = "") -> list[tuple[str, jax.Array]]:
    """Captured outputs ``{name: {..., "__call__": (x,)}}`` as ``(path, x)`` in the order they were
    made (a dict keeps it; a pytree's keys would be sorted, putting ``stem`` last)."""
    layers = []
    for name, value in tree.items():
        if name == "__call__":
            layers.append((prefix.rstrip("/"), value[0]))
        else:
            layers += in_call_order(value, f"{prefix}{name}/")
    return layers


@functools.partial(jax.jit, static_argnums=0)
def _trunk_grams(apply_fn, variables: dict, images):
    """Each trunk convolution's centred Gram matrix of ``images`` (float32 [N, N]), keyed
    ``"<call index> <path>"`` so that a sorted pytree keeps the call order."""
    _, captured = apply_fn(variables, to_float(images), train=False, capture_intermediates=is_trunk_conv,
                           mutable=["intermediates"])
    grams = {}
    for index, (name, x) in enumerate(in_call_order(captured["intermediates"][TRUNK])):
        x = x.reshape(x.shape[0], -1)
        x = x - x.mean(0, keepdims=True)
        grams[f"{index:03d} {name}"] = jnp.dot(x, x.T, precision=jax.lax.Precision.HIGHEST)
    return grams


def trunk_grams(apply_fn, variables: dict, images) -> dict[str, np.ndarray]:
    """The centred Gram matrix (float64 [N, N]) of each trunk convolution's output on ``images``
    (uint8 [N, S, S]), by its path under the trunk (``conv0_0``) in the order the trunk runs them,
    in inference mode."""
    grams = _trunk_grams(apply_fn, variables, jnp.asarray(images))
    return {key.split(" ", 1)[1]: np.asarray(grams[key], np.float64) for key in sorted(grams)}


def with_trunk(variables: dict, source: dict) -> dict:
    """``variables`` with ``source``'s trunk in every collection (parameters, BatchNorm statistics):
    a source of another head (another task) is read through this model's head, which is ignored."""
    return {name: {**tree, TRUNK: source[name][TRUNK]} for name, tree in variables.items() if TRUNK in tree}


def trunk_kernels(variables: dict) -> dict[str, np.ndarray]:
    """Every convolution kernel of the trunk, by its path under the trunk (``conv0_0``)."""
    return {"/".join(str(k.key) for k in path[:-1]): np.asarray(leaf) for path, leaf
            in jax.tree_util.tree_leaves_with_path(variables["params"][TRUNK])
            if getattr(path[-1], "key", None) == "kernel" and np.ndim(leaf) == 4}


def relative_distance(variables: dict, start: dict) -> dict[str, float]:
    """Per trunk convolution, ||W - W_start|| / ||W_start|| (Frobenius): how far training moved it."""
    now, then = trunk_kernels(variables), trunk_kernels(start)
    return {name: float(np.linalg.norm(now[name] - then[name]) / np.linalg.norm(then[name])) for name in then}


def transfer_changes(state, source: dict, scratch, images, members: int | None = None) -> dict:
    """What fine-tuning did to a grafted population ``state`` (C) of ``source``'s trunk (A), against
    ``scratch`` (B, the same seeds from random weights; None: left out), on ``images``.

    Per trunk layer, over C's seeds: ``cka_source`` (C's features vs A's), ``cka_scratch`` (C vs B
    of the same seed) and ``distance`` (||W_C - W_A|| / ||W_A||), each a ``stat``; ``layers`` in
    order; ``images`` their number. High CKA to A and a small distance: A's features kept.
    """
    seeds = len(np.asarray(state.step)) if members is None else members
    member = lambda s, k: unstack(inference_variables(s), k)
    fine = [member(state, k) for k in range(seeds)]
    source_grams = trunk_grams(state.apply_fn, with_trunk(fine[0], source), images)
    layers = list(source_grams)
    rows = {"cka_source": [], "cka_scratch": [], "distance": []}
    for k, variables in enumerate(fine):
        grams = trunk_grams(state.apply_fn, variables, images)
        rows["cka_source"].append([cka_of_grams(grams[n], source_grams[n]) for n in layers])
        distance = relative_distance(variables, source)
        rows["distance"].append([distance[n] for n in layers])
        if scratch is not None:
            other = trunk_grams(scratch.apply_fn, member(scratch, k), images)
            rows["cka_scratch"].append([cka_of_grams(grams[n], other[n]) for n in layers])
    summary = {key: {name: stat([row[i] for row in values]) for i, name in enumerate(layers)}
               for key, values in rows.items() if values}
    return {"layers": layers, "images": len(images), **summary}
