"""Fault injection for the reliability tests: a tiny training run in a child process that stops
at a chosen point so the test can SIGKILL it there, and forged image files.

Run as ``python -m tests.faults WORKDIR OUT [--resume] [--fault FAULT --marker FILE]``: trains
``tiny_config()`` on ``tiny_datasets()`` with ``jaxcnn.training.loop.fit`` and writes the final state
(``OUT.npz``) and history (``OUT.json``); a JaxcnnError exits with status 2 and one line
``error: <class>: <message>``. The fault hooks are patched in here, never in the library.

Pause points (the child writes FILE there and waits to be killed): ``saved:N`` (epoch N's
checkpoint is complete), ``step:K`` (after the K-th training step: one seed's step, the seeds
take turns on the CPU), ``commit-item:N`` (epoch N's arrays are in Orbax's temporary folder, not
yet committed), ``commit:N`` (every item of epoch N is written, the temporary folder not yet
renamed), ``delete`` (half-way through deleting an old checkpoint: its ``state/`` is gone).
Other faults: ``full-after:N`` (after epoch N's checkpoint no file may grow past
FULL_DISK_BYTES, so the next checkpoint write fails as on a full disk).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PAUSE_SECONDS = 300  # a paused child exits by itself if nobody kills it
FULL_DISK_BYTES = 4096  # after full-after:N, no file may grow past this (the array files are larger)

EPOCHS = 4
STEPS_PER_EPOCH = 3 * 2  # 48 images / batch 16, for each of the 2 seeds in turn


def tiny_config():
    """Two seeds, four epochs of three steps, a two-layer CNN: seconds on a CPU."""
    from jaxcnn.config import ModelConfig, TrainConfig

    return TrainConfig(seeds=(0, 1), epochs=EPOCHS, batch_size=16, eval_batch_size=16, warmup_epochs=1,
                       checkpoint_every=0, model=ModelConfig(widths=(4, 8), hidden=16))  # a checkpoint per epoch


def tiny_datasets():
    """(train, val): 48 and 12 noisy images of 3 classes, a bright bar whose row is the class."""
    from jaxcnn.data.dataset import ArrayDataset

    def make(n, seed):
        rng = np.random.default_rng(seed)
        labels = (np.arange(n) % 3).astype(np.int32)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for image, label in zip(images, labels):
            image[6 + 7 * label: 9 + 7 * label, 4:24] = 255
        return ArrayDataset(images, labels, np.full(n, -1, np.int32), ("a", "b", "c"))

    return make(48, 0), make(12, 1)


# ---------------------------------------------------------------------------------------------
# The child process.


def _pause(marker: Path, point: str) -> None:
    """Tell the parent we are at ``point`` and wait to be killed."""
    marker.write_text(point)
    time.sleep(PAUSE_SECONDS)
    os._exit(3)


def install_fault(point: str, marker: Path) -> None:
    """Patch the hook for ``point`` (see the module docstring) into this process."""
    from orbax.checkpoint._src.path import atomicity, deleter

    from jaxcnn.training import population
    from jaxcnn.training.checkpoint import RunCheckpoints

    kind, _, arg = point.partition(":")
    if kind == "saved":
        save = RunCheckpoints.save

        def save_then_pause(self, epoch, *args, **kwargs):
            save(self, epoch, *args, **kwargs)
            if epoch == int(arg):
                _pause(marker, point)

        RunCheckpoints.save = save_then_pause
    elif kind == "step":
        step, calls = population._step_population, [0]

        def step_then_pause(*args, **kwargs):
            out = step(*args, **kwargs)
            calls[0] += 1
            if calls[0] == int(arg):
                _pause(marker, point)
            return out

        population._step_population = step_then_pause
    elif kind in ("commit-item", "commit"):
        finalize = atomicity.AtomicRenameTemporaryPath.finalize
        step_tmp = f"{arg}{atomicity.TMP_DIR_SUFFIX}"

        def is_target(tmp: Path) -> bool:
            if kind == "commit":  # the epoch's own folder: every item in it is committed
                return tmp.name == step_tmp
            return tmp.parent.name == step_tmp and tmp.name.startswith("state")  # the epoch's arrays

        async def pause_before_commit(self):
            if is_target(Path(self.get())):
                _pause(marker, point)
            return await finalize(self)

        atomicity.AtomicRenameTemporaryPath.finalize = pause_before_commit
    elif kind == "full-after":
        save = RunCheckpoints.save

        def save_then_fill_disk(self, epoch, *args, **kwargs):
            save(self, epoch, *args, **kwargs)
            if epoch == int(arg):
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
                resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_DISK_BYTES, FULL_DISK_BYTES))

        RunCheckpoints.save = save_then_fill_disk
    elif kind == "delete":
        def delete_half_then_pause(self, path, **kwargs):
            shutil.rmtree(Path(path) / "state")
            _pause(marker, f"{point}:{Path(path).name}")

        deleter.PathDeleter.delete = delete_half_then_pause
    else:
        raise ValueError(f"unknown fault {point!r}")


def save_result(out: Path, state, history) -> None:
    """The final state as ``out.npz`` (one array per leaf) and the history as ``out.json``."""
    import flax
    import jax

    leaves = jax.tree_util.tree_leaves_with_path(flax.serialization.to_state_dict(state))
    np.savez(out.with_suffix(".npz"), **{jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves})
    out.with_suffix(".json").write_text(json.dumps(history))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--fault")
    parser.add_argument("--marker", type=Path)
    args = parser.parse_args(argv)

    from jaxcnn.errors import JaxcnnError
    from jaxcnn.training.loop import fit

    if args.fault:
        install_fault(args.fault, args.marker)
    train, val = tiny_datasets()
    try:
        state, history = fit(train, val, tiny_config(), args.workdir, resume=args.resume)
    except JaxcnnError as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    save_result(args.out, state, history)
    return 0


# ---------------------------------------------------------------------------------------------
# The parent's side.


def child_env(compile_cache: Path) -> dict:
    """The environment of every child: CPU only, and a shared compilation cache so only the first
    child compiles (the cache holds the same executables, so results are unchanged)."""
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(compile_cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _command(workdir: Path, out: Path, resume: bool, extra=()) -> list[str]:
    return [sys.executable, "-m", "tests.faults", str(workdir), str(out), *(["--resume"] if resume else []), *extra]


def run_child(workdir: Path, out: Path, env: dict, *, resume: bool = False, fault: str | None = None,
              timeout: float = 300):
    """Runs a whole tiny training in a child; returns the CompletedProcess (output captured)."""
    extra = ["--fault", fault, "--marker", str(workdir.parent / "unused")] if fault else []
    return subprocess.run(_command(workdir, out, resume, extra), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def kill_at(point: str, workdir: Path, env: dict, *, resume: bool = False, timeout: float = 300) -> str:
    """Starts a tiny training, SIGKILLs it once it reaches ``point``; returns what the child reported."""
    marker, log = workdir.parent / f"{workdir.name}.paused", workdir.parent / f"{workdir.name}.stderr"
    marker.unlink(missing_ok=True)
    extra = ["--fault", point, "--marker", str(marker)]
    with open(log, "w") as stderr:  # a file, not a pipe: a full pipe would stall the child
        child = subprocess.Popen(_command(workdir, workdir.parent / "unused", resume, extra), cwd=REPO, env=env,
                                 stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + timeout
    try:
        while not marker.exists() or not marker.read_text():
            if child.poll() is not None:
                raise AssertionError(f"child exited ({child.returncode}) before {point}: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"child did not reach {point} within {timeout} s")
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return marker.read_text()


def load_result(out: Path) -> tuple[dict, list]:
    """(state leaves by name, history without the wall-clock times) as a child saved them."""
    from jaxcnn.training.loop import without_timing
    with np.load(out.with_suffix(".npz")) as stored:
        leaves = {name: stored[name] for name in stored.files}
    history = without_timing(json.loads(out.with_suffix(".json").read_text()))
    return leaves, history


# ---------------------------------------------------------------------------------------------
# Forged files.


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int, bit_depth: int = 8, colour_type: int = 0) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but which holds 64 bytes of pixels: a
    decompression-bomb probe that allocates nothing."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def bmp_claiming(width: int, height: int) -> bytes:
    """An 8-bit BMP whose header claims ``width`` x ``height`` (negative: stored top-down) but
    which holds 64 bytes of pixels."""
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 0, 0, 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + 64, 0, 0, offset) + info + palette + b"\0" * 64


if __name__ == "__main__":
    sys.exit(main())
