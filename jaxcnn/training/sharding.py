"""Data parallelism with ``jax.sharding``: one train state on every device, each batch split over them.

The mesh has one axis, ``"data"``. The state is replicated, the batch is split along its first axis,
and ``steps.train_step`` runs unchanged: XLA's SPMD partitioner (GSPMD) turns the batch means of the
loss and of BatchNorm into all-reduces, so a step on N devices computes the same numbers as on one
(BatchNorm statistics are over the global batch). The same code runs on 1 device and on N.

``fit`` does this by itself when there is more than one device (``train.devices``, default all):
it replicates the state and the data set on ``training_mesh(cfg)`` and trains inside
``jax.set_mesh``, where ``steps.split_over_devices`` splits every gathered batch.

Several hosts (e.g. a multi-node GPU cluster): every process runs the same command;
``processes.initialize_from_environment`` joins them (``jax.distributed``) before anything else
touches JAX, and the mesh then spans the devices of all processes.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxcnn.config import TrainConfig
from jaxcnn.training.steps import DATA_AXIS


def data_mesh(devices=None) -> Mesh:
    """A one-axis mesh named ``"data"`` over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def training_mesh(cfg: TrainConfig) -> Mesh | None:
    """The mesh ``fit`` splits batches over: the first ``cfg.devices`` devices (0: all); None for one."""
    count = cfg.devices or jax.device_count()
    if count > jax.device_count():
        raise ValueError(f"train.devices is {cfg.devices} but there are {jax.device_count()} devices; "
                         "set it to at most that, or 0 for all")
    if count == 1:
        return None
    if cfg.batch_size % count:
        raise ValueError(f"train.batch_size {cfg.batch_size} does not split evenly over {count} devices; "
                         f"use a multiple of {count}, or --set train.devices=1")
    return data_mesh(jax.devices()[:count])


def on_devices(tree, mesh: Mesh | None):
    """``tree`` on the device (no mesh) or replicated on every device of ``mesh``. Without a mesh
    every array is committed to the first device: a grafted or restored state (committed) and a fresh
    one (not) would otherwise be two signatures, and two compilations, of the same step."""
    return jax.device_put(tree, jax.local_devices()[0]) if mesh is None else replicate(tree, mesh)


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of an array held whole on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def replicate(tree, mesh: Mesh):
    """A copy of ``tree`` (e.g. a ``TrainState``) on every device of ``mesh``.

    With several processes every process must pass the same values; they are checked to agree.
    """
    if jax.process_count() > 1:
        tree = jax.device_get(tree)  # device_put only checks and spreads host values across processes
    return jax.device_put(tree, replicated(mesh))
