"""Data parallelism: a step on a mesh of N devices computes what the plain step computes on one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.tolerances import CROSS_PROGRAM

# Runs in a fresh interpreter: the fake device count must be set before jax is imported.
TWO_DEVICE_SCRIPT = f"TOLERANCE = {CROSS_PROGRAM!r}\n" + textwrap.dedent("""
    import functools, json
    import jax, numpy as np, optax
    from jaxcnn.training import sharding as S
    from jaxcnn.training import steps as T
    from jaxcnn.config import ModelConfig, TrainConfig

    cfg = TrainConfig(batch_size=16, model=ModelConfig(widths=(4, 8), hidden=16))
    model, tx = T.make_model(10, cfg.model), optax.sgd(0.1, momentum=0.9)
    state = jax.jit(lambda key: T.create_train_state(key, model, tx))(jax.random.PRNGKey(0))
    data = np.random.default_rng(0)
    batches = [{"image": data.integers(0, 256, (16, 28, 28), dtype=np.uint8),
                "label": data.integers(0, 10, 16).astype(np.int32)} for _ in range(2)]
    keys = [jax.random.PRNGKey(i) for i in (1, 2)]

    mesh = S.data_mesh()
    plain, sharded = jax.jit(functools.partial(T.train_step, cfg=cfg)), S.sharded_train_step(mesh, cfg)
    plain_state, sharded_state = state, S.replicate(state, mesh)
    for batch, key in zip(batches, keys):
        plain_state, plain_metrics = plain(plain_state, batch, key)
        sharded_batch = S.shard_batch(batch, mesh)
        sharded_state, sharded_metrics = sharded(sharded_state, sharded_batch, key)

    paths = jax.tree_util.tree_flatten_with_path((plain_state, plain_metrics))[0]
    leaves = zip(paths, jax.tree.leaves((sharded_state, sharded_metrics)))
    mismatched = [jax.tree_util.keystr(path) for (path, a), b in leaves
                  if not np.allclose(np.asarray(a), np.asarray(b), **TOLERANCE)]
    moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(plain_state.params)))
    try:
        S.shard_batch({"image": np.zeros((15, 28, 28), np.uint8)}, mesh)
        odd_batch_rejected = False
    except ValueError:
        odd_batch_rejected = True
    print(json.dumps({
        "devices": mesh.size,
        "rows_per_device": sorted(s.data.shape[0] for s in sharded_batch["image"].addressable_shards),
        "state_replicated": all(x.sharding.is_fully_replicated for x in jax.tree.leaves(sharded_state)),
        "mismatched": mismatched, "params_moved": moved, "odd_batch_rejected": odd_batch_rejected}))
""")


@pytest.fixture(scope="module")
def two_device_report() -> dict:
    """Runs the comparison on two fake CPU devices and returns what it measured."""
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip())
    result = subprocess.run([sys.executable, "-c", TWO_DEVICE_SCRIPT], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_two_device_step_equals_single_device_step(two_device_report):
    assert two_device_report["devices"] == 2
    assert two_device_report["mismatched"] == []
    assert two_device_report["params_moved"] > 1e-3  # the steps did change the model


def test_batch_is_split_and_state_replicated(two_device_report):
    assert two_device_report["rows_per_device"] == [8, 8]
    assert two_device_report["state_replicated"]


def test_batch_that_does_not_split_evenly_is_rejected(two_device_report):
    assert two_device_report["odd_batch_rejected"]


def test_one_device_mesh_runs_the_same_step():
    import functools

    import jax
    import optax

    from jaxcnn.training import sharding as S
    from jaxcnn.training import steps as T
    from jaxcnn.config import NO_AUGMENT
    from jaxcnn.config import ModelConfig, TrainConfig

    cfg = TrainConfig(batch_size=8, model=ModelConfig(widths=(4, 8), hidden=16), augment=NO_AUGMENT)
    model, tx = T.make_model(10, cfg.model), optax.sgd(0.1)
    state = jax.jit(lambda key: T.create_train_state(key, model, tx))(jax.random.PRNGKey(0))
    data = np.random.default_rng(1)
    batch = {"image": data.integers(0, 256, (8, 28, 28), dtype=np.uint8),
             "label": data.integers(0, 10, 8).astype(np.int32)}
    mesh = S.data_mesh(jax.devices()[:1])
    expected, _ = jax.jit(functools.partial(T.train_step, cfg=cfg))(state, batch, jax.random.PRNGKey(3))
    got, _ = S.sharded_train_step(mesh, cfg)(S.replicate(state, mesh), S.shard_batch(batch, mesh),
                                             jax.random.PRNGKey(3))
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **CROSS_PROGRAM)
