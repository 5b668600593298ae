"""Transfer by name: copy a pretrained model's trunk into a fresh train state (big_vision's
``load`` with ``dont_load`` patterns, reduced to what this study needs)."""

from __future__ import annotations

import logging
import re

import jax
import jax.numpy as jnp

from jaxcnn.errors import CheckpointError

logger = logging.getLogger("jaxcnn")


def graft(fresh: dict, source: dict, keep_fresh: tuple[str, ...] = ("^head/",)) -> tuple[dict, dict]:
    """Copies every leaf of ``source`` into ``fresh`` by its path, except those matching ``keep_fresh``.

    Trees are variable collections such as ``{"params": ..., "batch_stats": ...}``; paths look like
    ``params/trunk/conv0_0/kernel`` (the collection name is ignored when matching ``keep_fresh``).
    A leaf of ``fresh`` with a leading seed axis receives the source leaf broadcast to every seed.
    Returns the new tree and a report ``{"copied": [...], "kept_fresh": [...]}``; a shape mismatch
    of a copied layer raises CheckpointError naming it.
    """
    flat_source = {_path(k): v for k, v in jax.tree_util.tree_leaves_with_path(source)}
    report = {"copied": [], "kept_fresh": []}

    def take(key, leaf):
        path = _path(key)
        inner = path.split("/", 1)[-1]
        if any(re.search(p, inner) for p in keep_fresh) or path not in flat_source:
            report["kept_fresh"].append(path)
            return leaf
        value = jnp.asarray(flat_source[path], leaf.dtype)
        expected = leaf.shape[leaf.ndim - value.ndim:]
        if value.shape != expected:
            raise CheckpointError(f"cannot graft {path}: source shape {value.shape}, target shape {expected}")
        report["copied"].append(path)
        return jnp.broadcast_to(value, leaf.shape)

    grafted = jax.tree_util.tree_map_with_path(take, fresh)
    logger.info("grafted %d arrays, kept %d fresh", len(report["copied"]), len(report["kept_fresh"]))
    return grafted, report


def _path(key) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in key)
