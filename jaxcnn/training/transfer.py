"""Transfer by name: copy a pretrained model's trunk into a fresh train state, strictly, as
big_vision's ``models/common.py:merge_params`` does: every target leaf is either found in the
source or listed as kept fresh (``fullmatch`` patterns); anything else is an error."""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxcnn.errors import CheckpointError
from jaxcnn.training.checkpoint import load_run
from jaxcnn.training.population import unstack
from jaxcnn.training.steps import TrainState, inference_variables

logger = logging.getLogger("jaxcnn")

KEEP_HEAD_FRESH = ("head/.*",)


def transfer_plan(target: dict, source: dict, keep_fresh: tuple[str, ...] = KEEP_HEAD_FRESH) -> dict:
    """Which leaves of ``target`` come from ``source``: ``{"copied": [...], "kept_fresh": [...]}``.

    Trees are variable collections such as ``{"params": ..., "batch_stats": ...}``; paths look like
    ``params/trunk/conv0_0/kernel``, and ``keep_fresh`` patterns must match the whole path after the
    collection name (``re.fullmatch``, e.g. ``head/.*``). Target leaves may carry a leading seed
    axis. Raises CheckpointError, naming the leaf, for a target leaf that the source lacks and no
    pattern keeps fresh, or whose shape differs from the source's. Works on arrays and on shapes.
    """
    flat_source = _flat(source)
    plan = {"copied": [], "kept_fresh": []}
    for path, leaf in _flat(target).items():
        if any(re.fullmatch(p, path.split("/", 1)[-1]) for p in keep_fresh):
            plan["kept_fresh"].append(path)
            continue
        if path not in flat_source:
            raise CheckpointError(f"cannot graft {path}: the source checkpoint has no such array; "
                                  "check that it is the right model, or keep the layer fresh")
        shape = tuple(flat_source[path].shape)
        if shape != tuple(leaf.shape[len(leaf.shape) - len(shape):]):
            raise CheckpointError(f"cannot graft {path}: source shape {shape}, target shape {tuple(leaf.shape)}")
        plan["copied"].append(path)
    return plan


def graft(fresh: dict, source: dict, keep_fresh: tuple[str, ...] = KEEP_HEAD_FRESH) -> tuple[dict, dict]:
    """``fresh`` with every leaf of ``transfer_plan``'s ``copied`` taken from ``source`` (broadcast to
    every seed of a population); returns the new tree and the plan."""
    plan = transfer_plan(fresh, source, keep_fresh)
    logger.info("grafted %d arrays, kept %d fresh", len(plan["copied"]), len(plan["kept_fresh"]))
    return _grafted(fresh, source, frozenset(plan["copied"])), plan


@functools.partial(jax.jit, static_argnums=2)
def _grafted(fresh: dict, source: dict, copied: frozenset):
    """``fresh`` with the leaves at the ``copied`` paths taken from ``source`` (one program)."""
    flat_source = _flat(source)

    def take(key, leaf):
        path = _path(key)
        if path not in copied:
            return leaf
        return jnp.broadcast_to(jnp.asarray(flat_source[path], leaf.dtype), leaf.shape)

    return jax.tree_util.tree_map_with_path(take, fresh)


def _flat(tree: dict) -> dict:
    return {_path(k): v for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def _path(key) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in key)


def pretrained_variables(run_dir: str | Path, which: str = "best", member: int = 0) -> tuple[dict, dict]:
    """``{"params", "batch_stats"}`` of one member of a saved population, restored from its checkpoint
    (the weight average, for a run that keeps one), and where they came from:
    ``{"checkpoint", "epoch", "member"}``."""
    state, _, _, epoch = load_run(run_dir, which)
    return unstack(inference_variables(state), member), {"checkpoint": str(run_dir), "epoch": epoch,
                                                         "member": member}


def graft_init(source: dict, keep_fresh: tuple[str, ...] = KEEP_HEAD_FRESH):
    """``fit``'s ``init``: every member gets ``source``'s layers (parameters and BatchNorm statistics)
    but those of ``keep_fresh`` (by default the head).

    The kept layers stay freshly initialised, and so does the optimiser state (Adam's moments start
    at zero, as they should for a new task).
    """
    def init(state: TrainState) -> TrainState:
        grafted, _ = graft({"params": state.params, "batch_stats": state.batch_stats}, source, keep_fresh)
        return state.replace(params=grafted["params"], batch_stats=grafted["batch_stats"],
                             ema=None if state.ema is None else grafted)
    return init


def transfer_record(source: dict, variables: dict, state: TrainState,
                    keep_fresh: tuple[str, ...] = KEEP_HEAD_FRESH) -> dict:
    """What a grafted run received: its source and ``transfer_plan`` (copied and fresh leaves)."""
    return {**source, **transfer_plan({"params": state.params, "batch_stats": state.batch_stats}, variables,
                                      keep_fresh)}
