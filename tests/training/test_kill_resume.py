"""Interrupted runs, bad checkpoints and unusable work directories.

A tiny training runs in a child process (``tests/faults.py``), is SIGKILLed at chosen points
(between steps, right after a checkpoint, inside Orbax's checkpoint write and deletion), then
resumed; the result must equal an uninterrupted run bit for bit. Children share a JAX compilation
cache, so only the first one compiles.
"""

import errno
import json
import os
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxcnn.errors import CheckpointError, JaxcnnError
from jaxcnn.training import population as P
from jaxcnn.training.checkpoint import RunCheckpoints
from jaxcnn.training.loop import fit, without_timing
from tests import faults

TMP_SUFFIX = ".orbax-checkpoint-tmp"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return faults.child_env(tmp_path_factory.mktemp("jax-compilation-cache"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, env):
    """The reference: the same tiny run, never interrupted. Returns its folder (run/, result.*)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    done = faults.run_child(root / "run", root / "result", env)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def checkpoints(workdir: Path) -> RunCheckpoints:
    """The run's checkpoints as ``evaluate`` sees them (read-only, leftovers untouched)."""
    return RunCheckpoints(workdir / "checkpoints", read_only=True)


def leftovers(workdir: Path) -> list[Path]:
    return sorted((workdir / "checkpoints").glob(f"*{TMP_SUFFIX}*"))


def assert_same_run(workdir: Path, result: Path, reference: Path) -> None:
    """Final state, history, metrics log and kept checkpoints all equal the reference run's."""
    leaves, history = faults.load_result(result)
    want_leaves, want_history = faults.load_result(reference / "result")
    assert leaves.keys() == want_leaves.keys()
    for name, want in want_leaves.items():
        assert leaves[name].dtype == want.dtype and np.array_equal(leaves[name], want), f"{name} differs"
    assert history == want_history and len(history) == faults.EPOCHS
    logged = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert without_timing(logged) == want_history
    got, want = checkpoints(workdir), checkpoints(reference / "run")
    assert (got.epochs(), got.best_epoch()) == (want.epochs(), want.best_epoch())
    assert not leftovers(workdir)


def assert_killed_state(workdir: Path, point: str, reported: str, latest: int | None) -> None:
    """What a reader finds after the kill: the last complete checkpoint, never a half-written one."""
    ckpts = checkpoints(workdir)
    assert ckpts.latest_epoch() == latest
    if latest is not None:
        assert len(ckpts.read_meta()["history"]) == latest
    if point.startswith("commit"):  # the kill hit Orbax's write window: a temporary folder is left
        assert leftovers(workdir)
    if point == "delete":  # the checkpoint being deleted has lost its arrays and is not the latest
        half_deleted = int(reported.rpartition(":")[2])
        assert not (workdir / "checkpoints" / str(half_deleted) / "state").exists() and half_deleted != latest
    if point.startswith("saved"):  # killed before the epoch's line reached metrics.jsonl
        assert len((workdir / "metrics.jsonl").read_text().splitlines()) == latest - 1


# (fault, the latest complete epoch left on disk after the kill), killed one after another.
KILLS = {
    "after-epoch-1-checkpoint": [("saved:1", 1)],
    "mid-epoch-2": [(f"step:{faults.STEPS_PER_EPOCH + 4}", 1)],
    "arrays-written-not-committed": [("commit-item:2", 1)],
    "checkpoint-written-not-renamed": [("commit:2", 1)],
    "mid-deletion-of-an-old-checkpoint": [("delete", 3)],
    "after-the-last-checkpoint": [(f"saved:{faults.EPOCHS}", faults.EPOCHS)],
    "killed-twice": [("step:2", None), ("commit:3", 2)],
}


@pytest.mark.slow
@pytest.mark.parametrize("kills", KILLS.values(), ids=KILLS.keys())
def test_a_killed_run_resumes_to_the_same_bits(tmp_path, env, uninterrupted, kills):
    workdir = tmp_path / "run"
    for i, (point, latest) in enumerate(kills):
        reported = faults.kill_at(point, workdir, env, resume=i > 0)
        assert_killed_state(workdir, point, reported, latest)
    done = faults.run_child(workdir, tmp_path / "result", env, resume=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(workdir, tmp_path / "result", uninterrupted)


@pytest.fixture(scope="module")
def disk_filled(tmp_path_factory, env):
    """A run whose disk fills after epoch 1's checkpoint: (its workdir, the failed child)."""
    root = tmp_path_factory.mktemp("disk-filled")
    return root / "run", faults.run_child(root / "run", root / "unused", env, fault="full-after:1")


@pytest.mark.slow
def test_a_full_disk_mid_run_keeps_the_last_checkpoint_and_resumes_to_the_same_bits(tmp_path, env, uninterrupted,
                                                                                    disk_filled):
    workdir, failed = disk_filled
    assert failed.returncode != 0 and "File too large" in failed.stderr
    assert checkpoints(workdir).latest_epoch() == 1 and leftovers(workdir)  # epoch 2 half-written, ignored
    done = faults.run_child(workdir, tmp_path / "result", env, resume=True)  # space freed again
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(workdir, tmp_path / "result", uninterrupted)


def error_lines(stderr: str) -> list[str]:
    """The child's ``error: ...`` lines. A full disk also makes Orbax's own threads print tracebacks,
    and on a loaded machine one may land in front of the line, so it is found anywhere in a line."""
    return re.findall(r"(?<![A-Za-z])error: [^\n]*", stderr)


@pytest.mark.slow
def test_a_full_disk_mid_run_is_one_checkpoint_error(disk_filled):
    workdir, failed = disk_filled
    assert failed.returncode == 2
    (line,) = error_lines(failed.stderr)
    assert line.startswith(f"error: CheckpointError: {workdir / 'checkpoints'}")


def copy_run(reference: Path, tmp_path: Path) -> Path:
    workdir = tmp_path / "run"
    shutil.copytree(reference / "run", workdir)
    return workdir


def largest_array_file(step_dir: Path) -> Path:
    return max((p for p in step_dir.glob("state/**/d/*") if p.is_file()), key=lambda p: p.stat().st_size)


def truncate_arrays(step_dir: Path) -> None:
    path = largest_array_file(step_dir)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def truncate_metadata(step_dir: Path) -> None:
    path = step_dir / "meta" / "metadata"
    path.write_bytes(path.read_bytes()[:20])


@pytest.mark.slow
@pytest.mark.parametrize("damage, problem", [(truncate_arrays, "damaged checkpoint, cannot restore"),
                                             (truncate_metadata, "unreadable checkpoint metadata")],
                         ids=["truncated-array-file", "truncated-history"])
def test_resuming_from_a_damaged_latest_checkpoint_is_one_checkpoint_error(tmp_path, env, uninterrupted, damage, problem):
    workdir = copy_run(uninterrupted, tmp_path)
    latest = workdir / "checkpoints" / str(faults.EPOCHS)
    damage(latest)
    failed = faults.run_child(workdir, tmp_path / "unused", env, resume=True)
    assert failed.returncode == 2, failed.stderr[-3000:]
    (line,) = error_lines(failed.stderr)
    assert line.startswith(f"error: CheckpointError: {latest}: {problem}")


def abstract_state():
    """The tiny run's state as shapes only: a restore target that needs no compilation."""
    cfg = faults.tiny_config()
    shapes = jax.eval_shape(lambda: P.create_population(cfg.seeds, 3, cfg, 48))
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


@pytest.mark.slow
def test_a_flipped_byte_in_a_checkpoint_is_detected(tmp_path, uninterrupted):
    workdir = copy_run(uninterrupted, tmp_path)
    path = largest_array_file(workdir / "checkpoints" / str(faults.EPOCHS))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight, as bit rot or a bad copy would do
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged checkpoint"):
        checkpoints(workdir).restore(abstract_state())


# Work directories that cannot hold a run must fail when the run claims them, before data reaches the device.


def fit_tiny(workdir):
    train, val = faults.tiny_datasets()
    return fit(train, val, faults.tiny_config(), workdir)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to make writes fail with ENOSPC")
def test_a_full_disk_fails_before_training(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".jaxcnn-run.tmp").symlink_to("/dev/full")  # the marker's write gets a real ENOSPC
    monkeypatch.setattr(P, "create_population", lambda *a, **k: pytest.fail("training started"))
    message = f"{tmp_path / 'run'}: cannot use it as the work directory ({os.strerror(errno.ENOSPC)})"
    with pytest.raises(JaxcnnError, match=f"^{re.escape(message)}$"):
        fit_tiny(tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("layout", ["parent-is-a-file", "workdir-is-a-file", "checkpoints-is-a-file"])
def test_a_workdir_that_cannot_be_a_folder_fails_before_training(tmp_path, monkeypatch, layout):
    blocker = {"parent-is-a-file": tmp_path / "runs", "workdir-is-a-file": tmp_path / "runs" / "run",
               "checkpoints-is-a-file": tmp_path / "runs" / "run" / "checkpoints"}[layout]
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    monkeypatch.setattr(P, "create_population", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(JaxcnnError, match=f"^{re.escape(str(tmp_path / 'runs' / 'run'))}: .*work directory"):
        fit_tiny(tmp_path / "runs" / "run")
