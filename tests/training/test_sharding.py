"""Data parallelism: a step on a mesh of N devices computes what the plain step computes on one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.tolerances import FLOAT64_CROSS_PROGRAM, ONE_FLOAT32_STEP

ROOT = Path(__file__).resolve().parents[2]  # the repository: the script imports tests.sharded
pytestmark = pytest.mark.equivalence  # two programs compared: CI runs these again on one core

# Runs in a fresh interpreter (the fake device count must be set before jax is imported), in float64:
# two programs that train several steps are compared where rounding cannot flip steps (tests/tolerances.py).
FLOAT64_ENV = {"JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": "1"}
TWO_DEVICE_SCRIPT = f"TOLERANCE = {FLOAT64_CROSS_PROGRAM!r}\n" + textwrap.dedent("""
    import functools, json
    import jax, numpy as np, optax
    from jaxcnn.training import sharding as S
    from jaxcnn.training import steps as T
    from jaxcnn.config import ModelConfig, TrainConfig
    from jaxcnn.model import make_model
    from tests import sharded as H

    cfg = TrainConfig(batch_size=16, model=ModelConfig(widths=(4, 8), hidden=16, dtype="float64"))
    model, tx = make_model(10, cfg.model), optax.sgd(0.1, momentum=0.9)
    state = jax.jit(lambda key: T.create_train_state(key, model, tx))(jax.random.PRNGKey(0))
    data = np.random.default_rng(0)
    batches = [{"image": data.integers(0, 256, (16, 28, 28), dtype=np.uint8),
                "label": data.integers(0, 10, 16).astype(np.int32)} for _ in range(2)]
    keys = [jax.random.PRNGKey(i) for i in (1, 2)]

    mesh = S.data_mesh()
    plain, sharded = jax.jit(functools.partial(T.train_step, cfg=cfg)), H.sharded_train_step(mesh, cfg)
    plain_state, sharded_state = state, S.replicate(state, mesh)
    for batch, key in zip(batches, keys):
        plain_state, plain_metrics = plain(plain_state, batch, key)
        sharded_batch = H.shard_batch(batch, mesh)
        sharded_state, sharded_metrics = sharded(sharded_state, sharded_batch, key)

    paths = jax.tree_util.tree_flatten_with_path((plain_state, plain_metrics))[0]
    leaves = zip(paths, jax.tree.leaves((sharded_state, sharded_metrics)))
    mismatched = [jax.tree_util.keystr(path) for (path, a), b in leaves
                  if not np.allclose(np.asarray(a), np.asarray(b), **TOLERANCE)]
    moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(plain_state.params)))
    try:
        H.shard_batch({"image": np.zeros((15, 28, 28), np.uint8)}, mesh)
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
    env = dict(os.environ, **FLOAT64_ENV, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
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
    from jaxcnn.model import make_model
    from tests import sharded as H

    cfg = TrainConfig(batch_size=8, model=ModelConfig(widths=(4, 8), hidden=16), augment=NO_AUGMENT)
    model, tx = make_model(10, cfg.model), optax.sgd(0.1)
    state = jax.jit(lambda key: T.create_train_state(key, model, tx))(jax.random.PRNGKey(0))
    data = np.random.default_rng(1)
    batch = {"image": data.integers(0, 256, (8, 28, 28), dtype=np.uint8),
             "label": data.integers(0, 10, 8).astype(np.int32)}
    mesh = S.data_mesh(jax.devices()[:1])
    expected, _ = jax.jit(functools.partial(T.train_step, cfg=cfg))(state, batch, jax.random.PRNGKey(3))
    got, _ = H.sharded_train_step(mesh, cfg)(S.replicate(state, mesh), H.shard_batch(batch, mesh),
                                             jax.random.PRNGKey(3))
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):  # one SGD step: nothing to amplify
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **ONE_FLOAT32_STEP)


# fit on two fake CPU devices (every batch split over them) against fit on one, in a fresh interpreter.
FIT_SCRIPT = f"TOLERANCE = {FLOAT64_CROSS_PROGRAM!r}\n" + textwrap.dedent("""
    import dataclasses, json, sys
    from pathlib import Path
    import jax, numpy as np
    from jaxcnn.config import ModelConfig, TrainConfig
    from jaxcnn.data.dataset import ArrayDataset
    from jaxcnn.training import population as P
    from jaxcnn.training import sharding as S
    from jaxcnn.training.loop import fit

    def digits(n, seed):
        rng = np.random.default_rng(seed)
        return ArrayDataset(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.int32),
                            np.full(n, -1, np.int32), tuple("0123456789"))

    root = Path(sys.argv[1])
    cfg = TrainConfig(seeds=(0, 1), epochs=2, batch_size=16, learning_rate=1e-2, warmup_epochs=0,
                      model=ModelConfig(widths=(4, 8), hidden=16, dtype="float64"))
    runs = {n: fit(digits(64, 0), digits(40, 1), dataclasses.replace(cfg, devices=n), root / f"d{n}")
            for n in (2, 1)}
    (two, two_history), (one, one_history) = runs[2], runs[1]
    gaps = np.concatenate([np.abs(np.asarray(a) - np.asarray(b)).ravel()
                           for a, b in zip(jax.tree.leaves(two.params), jax.tree.leaves(one.params))])
    mesh = S.training_mesh(dataclasses.replace(cfg, devices=2))
    with jax.set_mesh(mesh):
        index = np.zeros((2, 16), np.int32)
        state = S.on_devices(P.create_population(cfg.seeds, 10, cfg, 64), mesh)
        data = S.on_devices(({"image": digits(64, 0).images}, digits(64, 0).labels), mesh)
        hlo = P._step_population.lower(state, *data, index, cfg).compile().as_text()
    try:
        fit(digits(64, 0), None, dataclasses.replace(cfg, devices=3), root / "d3")
        refused = ""
    except ValueError as err:
        refused = str(err)
    print(json.dumps({
        "replicated_on": len(jax.tree.leaves(two)[0].sharding.device_set),
        "all_reduce": "all-reduce" in hlo,
        "losses_close": bool(np.allclose([r["train_loss"] + r["val_loss"] for r in two_history],
                                         [r["train_loss"] + r["val_loss"] for r in one_history], **TOLERANCE)),
        "params_max_gap": float(gaps.max()),
        "steps": int(np.asarray(two.step)[0]), "refused": refused, "d3_written": (root / "d3").exists()}))
""")


def test_fit_on_two_devices_splits_every_batch_and_trains_what_one_device_trains(tmp_path):
    env = dict(os.environ, **FLOAT64_ENV,
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip())
    result = subprocess.run([sys.executable, "-c", FIT_SCRIPT, str(tmp_path)], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicated_on"] == 2 and report["all_reduce"]  # one state on both, the batch split
    assert report["losses_close"] and report["steps"] == 8
    assert report["params_max_gap"] <= FLOAT64_CROSS_PROGRAM["atol"]  # in float64: no step flipped by rounding
    assert "train.devices is 3 but there are 2 devices" in report["refused"] and not report["d3_written"]
