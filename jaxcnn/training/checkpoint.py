"""Orbax checkpoints of a run: the train state (params, BatchNorm statistics, optimiser state,
step, PRNG key) beside a JSON item with the config and the metric history.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so a
half-written checkpoint is never listed. Restoring goes through an abstract target built from the
saved config, and shapes are compared leaf by leaf first, so a mismatch names the layer. Orbax
keeps no checksum of the arrays, so the JSON item carries a SHA-256 of the state, checked on
restore: a flipped bit is an error, not silently different weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple

import flax
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as policy

from jaxcnn.config import TrainConfig, from_dict
from jaxcnn.errors import CheckpointError
from jaxcnn.processes import to_host
from jaxcnn.training import population as P

KEEP_LATEST = 2
DIGEST_KEY = "state_sha256"


def _manager(directory: Path, read_only: bool = False) -> ocp.CheckpointManager:
    preserve = policy.AnyPreservationPolicy([
        policy.LatestN(KEEP_LATEST),
        policy.BestN(get_metric_fn=lambda m: m["val_accuracy"], n=1, keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(preservation_policy=preserve, best_fn=lambda m: m["val_accuracy"],
                                           enable_async_checkpointing=False,
                                           read_only=read_only, create=not read_only,
                                           cleanup_tmp_directories=not read_only)
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(directory.absolute(), options=options, item_handlers=handlers)


def _arrays(state) -> dict:
    """The state as a dict of arrays, without fields that are None (a run with no weight average
    writes the same checkpoint as before the field existed, and restores from one)."""
    return {k: v for k, v in flax.serialization.to_state_dict(state).items() if v is not None}


def _restore_target(leaf) -> jax.ShapeDtypeStruct:
    """Where a leaf is restored: on ``leaf``'s devices, or on this process's first device for a
    NumPy leaf, whatever devices saved it (a run saved over two processes restores in one)."""
    sharding = getattr(leaf, "sharding", None) or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.ShapeDtypeStruct(np.shape(leaf), leaf.dtype, sharding=sharding)


class RunCheckpoints:
    """The checkpoints of one run under ``directory``, each of a finished epoch (``fit`` decides which)."""

    def __init__(self, directory: str | Path, read_only: bool = False):
        self.directory = Path(directory)
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"{self.directory}: no checkpoint directory here")
        self._manager = _manager(self.directory, read_only)

    def epochs(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_epoch(self) -> int | None:
        return self._manager.latest_step()

    def best_epoch(self) -> int | None:
        return self._manager.best_step()

    def save(self, epoch: int, state, meta: dict, val_accuracy: float) -> None:
        """Saves synchronously: when this returns, the checkpoint is complete on disk."""
        arrays = _arrays(state)
        try:
            self._manager.save(epoch, args=ocp.args.Composite(
                state=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave({**meta, DIGEST_KEY: digest(arrays)})),
                metrics={"val_accuracy": float(val_accuracy)})
            self._manager.wait_until_finished()
        except Exception as err:  # a full disk or a lost mount surfaces as many Orbax error types
            raise CheckpointError(f"{self.directory / str(epoch)}: cannot write the checkpoint "
                                  f"({_first_line(err)})") from err

    def read_meta(self, epoch: int | str = "latest") -> dict:
        """The JSON item (config, class names, history) of a checkpoint, without loading arrays."""
        meta = self._read_json(self.resolve(epoch))
        meta.pop(DIGEST_KEY, None)
        return meta

    def _read_json(self, epoch: int) -> dict:
        try:
            return self._manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as err:  # Orbax raises many kinds; the user needs the path and the cause
            raise CheckpointError(f"{self.directory / str(epoch)}: unreadable checkpoint metadata ({err})") from err

    def restore(self, target, epoch: int | str = "latest"):
        """Restores the state saved at ``epoch`` ("latest", "best" or a number) into ``target``'s shape."""
        epoch = self.resolve(epoch)
        abstract = jax.tree.map(_restore_target, _arrays(target))
        path = self.directory / str(epoch)
        check_shapes(self._saved_shapes(epoch, path), abstract, path)
        expected = self._read_json(epoch).get(DIGEST_KEY)  # checkpoints of older versions have none
        try:
            with _silent_if_it_fails():
                restored = self._manager.restore(epoch, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract)))["state"]
        except Exception as err:
            raise CheckpointError(f"{path}: damaged checkpoint, cannot restore ({_first_line(err)})") from err
        if expected is not None and digest(restored) != expected:
            raise CheckpointError(f"{path}: damaged checkpoint, its arrays do not match the SHA-256 saved "
                                  "with them (a changed byte: bit rot or a bad copy)")
        absent = {k: v for k, v in flax.serialization.to_state_dict(target).items() if v is None}
        return flax.serialization.from_state_dict(target, {**absent, **restored})

    def _saved_shapes(self, epoch: int, path: Path):
        try:
            saved = self._manager.item_metadata(epoch)["state"]
        except Exception as err:
            raise CheckpointError(f"{path}: damaged checkpoint, cannot read its layout ({_first_line(err)})") from err
        if not saved:  # Orbax reads a missing or emptied state/_METADATA as an empty layout
            raise CheckpointError(f"{path}: damaged checkpoint, its array layout (state/_METADATA) is missing or empty")
        return saved

    def resolve(self, epoch: int | str) -> int:
        """The epoch number meant by ``epoch``: "latest", "best" or a number of a saved epoch."""
        if epoch not in ("latest", "best") and not str(epoch).isdigit():
            raise CheckpointError(f"{self.directory}: no checkpoint {epoch!r}: choose best, latest or an "
                                  f"epoch number (have epochs {self.epochs()})")
        chosen = {"latest": self.latest_epoch, "best": self.best_epoch}.get(epoch, lambda: int(epoch))()
        if chosen is None or chosen not in self.epochs():
            raise CheckpointError(f"{self.directory}: no {epoch} checkpoint (have epochs {self.epochs()})")
        return chosen

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> RunCheckpoints:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def _silent_if_it_fails(settle_seconds: float = 0.5):
    """Sends the process's stderr (the file descriptor) to /dev/null during a restore, and for a moment
    after one that failed: Orbax then closes its event loop while TensorStore reads are still landing,
    and their threads print an "Event loop is closed" traceback from C++ that would bury the error."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    except BaseException:
        time.sleep(settle_seconds)
        raise
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _first_line(err: Exception) -> str:
    """The cause in a few words: TensorStore appends its whole spec after ". See full ..."."""
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return line.split(". See full")[0][:300]


def digest(tree) -> str:
    """SHA-256 of a pytree of arrays: every leaf's path, dtype, shape and bytes, in path order."""
    sha = hashlib.sha256()
    for key, leaf in sorted(jax.tree_util.tree_leaves_with_path(to_host(tree)),
                            key=lambda kv: jax.tree_util.keystr(kv[0])):
        array = np.ascontiguousarray(leaf)
        sha.update(f"{jax.tree_util.keystr(key)}|{array.dtype.str}|{array.shape}|".encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


def check_shapes(saved, expected, path: Path) -> None:
    """Raises CheckpointError naming the first leaf whose presence or shape differs."""
    saved_leaves = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(saved)}
    for key, leaf in jax.tree_util.tree_leaves_with_path(expected):
        name = jax.tree_util.keystr(key)
        if name not in saved_leaves:
            raise CheckpointError(f"{path}: checkpoint has no {name}; it was saved from a different model")
        shape = tuple(getattr(saved_leaves[name], "shape", ()) or ())
        if shape != tuple(leaf.shape):
            raise CheckpointError(f"{path}: {name} has shape {shape} in the checkpoint but the model "
                                  f"expects {tuple(leaf.shape)}; it was saved from a different model")
    extra = set(saved_leaves) - {jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_leaves_with_path(expected)}
    if extra:
        raise CheckpointError(f"{path}: checkpoint has {sorted(extra)[0]} which the model lacks; "
                              "it was saved from a different model")


def checkpoint_dir(path: str | Path) -> Path:
    """Accepts a run's work directory or its ``checkpoints/`` folder."""
    path = Path(path)
    return path / "checkpoints" if (path / "checkpoints").is_dir() else path


def _open_run(path: str | Path) -> RunCheckpoints:
    ckpts = RunCheckpoints(checkpoint_dir(path), read_only=True)
    if not ckpts.epochs():
        ckpts.close()
        raise CheckpointError(f"{path}: no checkpoints here (train first, or check the path)")
    return ckpts


class RunInputs(NamedTuple):
    """What a saved run takes: the classes it predicts, how its images were preprocessed ("mnist"
    for runs that do not say) and their size (the model's ``image_size``)."""

    class_names: tuple[str, ...]
    preprocess: str
    image_size: int


def run_inputs(path: str | Path, which: str = "best") -> RunInputs:
    """A saved run's ``RunInputs``, read from its metadata without loading arrays."""
    with _open_run(path) as ckpts:
        meta = ckpts.read_meta(which)
    model = from_dict(TrainConfig, meta["config"]).model
    return RunInputs(tuple(meta["class_names"]), meta.get("preprocess", "mnist"), model.image_size)


def load_run(path: str | Path, which: str = "best"):
    """Restores a saved population: ``(state, config, class_names, epoch)``."""
    with _open_run(path) as ckpts:
        epoch = ckpts.resolve(which)
        meta = ckpts.read_meta(epoch)
        cfg = from_dict(TrainConfig, meta["config"])
        class_names = tuple(meta["class_names"])
        target = jax.eval_shape(lambda: P.create_population(cfg.seeds, len(class_names), cfg, cfg.batch_size))
        target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), target)
        return ckpts.restore(target, epoch), cfg, class_names, epoch


def has_checkpoints(path: str | Path) -> bool:
    """Whether ``path`` (a run's work directory or its ``checkpoints/``) holds a saved epoch."""
    folder = checkpoint_dir(path)
    return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())
