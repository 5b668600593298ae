"""Data parallelism by hand, outside ``fit``: a train step compiled for a mesh and a batch split over
it. ``fit`` splits its batches by itself (``jaxcnn.training.sharding``); these check that the step
it runs computes on N devices what it computes on one."""

from __future__ import annotations

import functools

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxcnn.config import TrainConfig
from jaxcnn.training.sharding import replicated
from jaxcnn.training.steps import COMPILER_OPTIONS, DATA_AXIS, train_step


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The sharding of an array split along its first (batch) axis over the ``"data"`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def shard_batch(batch, mesh: Mesh):
    """A global batch split along axis 0 over the mesh, from this process's slice of it.

    ``batch`` is a pytree of arrays with a leading batch axis (e.g. ``{"image", "label"}``); on one
    host it is the whole batch. Its length must divide evenly over this process's devices.
    """
    local_devices = len(mesh.local_devices)
    for leaf in jax.tree.leaves(batch):
        if leaf.shape[0] % local_devices:
            raise ValueError(f"a batch of {leaf.shape[0]} examples does not split evenly over "
                             f"{local_devices} devices; use a batch size divisible by {local_devices}")
    return jax.make_array_from_process_local_data(batch_sharded(mesh), batch)


def sharded_train_step(mesh: Mesh, cfg: TrainConfig):
    """``steps.train_step`` compiled for ``mesh``: ``step(state, batch, rng) -> (state, metrics)``.

    The state and ``rng`` are replicated, the batch is split over the ``"data"`` axis (see
    ``replicate`` and ``shard_batch``); the new state and the metrics come back replicated.
    """
    return jax.jit(functools.partial(train_step, cfg=cfg),
                   in_shardings=(replicated(mesh), batch_sharded(mesh), replicated(mesh)),
                   out_shardings=replicated(mesh), compiler_options=COMPILER_OPTIONS)
