"""Several processes (hosts) training one model: ``jax.distributed`` and what only one of them does.

Set ``JAXCNN_COORDINATOR=HOST:PORT``, ``JAXCNN_NUM_PROCESSES`` and ``JAXCNN_PROCESS_ID`` in every
process (``JAXCNN_COORDINATOR=auto``: let JAX read them from SLURM, Open MPI, Kubernetes or a TPU
pod) and run the same command in each: the devices of all processes form one mesh, each batch is
split over all of them, and process 0 alone writes files: run directories, logs, results, figures,
part 3's generated set and the report (Orbax writes each checkpoint once, its arrays from the
processes that hold them). With the variables unset nothing changes.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxcnn.errors import JaxcnnError


def initialize_from_environment() -> None:
    """``jax.distributed.initialize`` from the ``JAXCNN_*`` variables, when they are set."""
    coordinator = os.environ.get("JAXCNN_COORDINATOR")
    if not coordinator:
        return
    if coordinator == "auto":
        jax.distributed.initialize()
        return
    try:
        count, index = int(os.environ["JAXCNN_NUM_PROCESSES"]), int(os.environ["JAXCNN_PROCESS_ID"])
    except (KeyError, ValueError) as err:
        raise ValueError("JAXCNN_COORDINATOR is set: set JAXCNN_NUM_PROCESSES and JAXCNN_PROCESS_ID to "
                         f"integers too ({err})") from None
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=count, process_id=index)


def is_primary() -> bool:
    """True in the process that writes files: the only one, or process 0 of several."""
    return jax.process_index() == 0


def agree(ok: bool) -> bool:
    """Whether process 0 said ``ok``, in every process (a barrier when there are several)."""
    if jax.process_count() == 1:
        return ok
    return bool(multihost_utils.broadcast_one_to_all(np.int32(ok)))


def on_primary(work, what: str):
    """``work()`` in process 0 only (the only process, usually); every process returns its result
    once it is done (None outside process 0), or raises if it failed. ``what`` names it in errors."""
    result, error = None, None
    if is_primary():
        try:
            result = work()
        except Exception as err:  # every process must reach ``agree``, or the others wait forever
            error = err
    if not agree(error is None):
        raise error or JaxcnnError(f"{what}: process 0 failed at it (its error says why)")
    return result


def to_host(tree):
    """Every array of ``tree`` as NumPy, gathered from the processes that hold it."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return jax.tree.map(lambda x: np.asarray(x) if getattr(x, "is_fully_addressable", True)
                        else multihost_utils.process_allgather(x, tiled=True), tree)
