"""XLA's persistent compilation cache: a second process, or a resumed run, loads the programs that
an earlier one compiled instead of compiling them again (seconds per program on a GPU)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import jax

from jaxcnn import paths

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax's monitoring event, per program
# The programs that train: the stepwise engine's step and the scanned engine's epoch chunk.
TRAIN_STEP_PROGRAMS = ("jit(_step_population)", "jit(train_epoch_population)")


def use_persistent_cache(cache_dir: str | os.PathLike | None = None) -> Path | None:
    """Turns the cache on under ``<cache dir>/xla`` on an accelerator and returns its folder.

    A folder the user chose (``JAX_COMPILATION_CACHE_DIR``) is kept. Not on the CPU: XLA:CPU's
    cached programs are tied to the host's instruction set and rejected on reload, with error
    logs, even on the same host (jax-ml/jax#38445), and the CPU's programs compile in seconds.
    """
    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    if jax.default_backend() == "cpu":
        return None
    folder = paths.cache_dir(cache_dir) / "xla"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return folder


@contextlib.contextmanager
def counting_compilations():
    """Yields a list that collects ``(program name, seconds)`` for every XLA compilation (or load
    from the persistent cache) while the block runs, e.g. ``("jit(_step_population)", 4.2)``."""
    compiled = []

    def listener(event: str, seconds: float, **kwargs):
        if event == COMPILE_EVENT:
            compiled.append((kwargs.get("fun_name", "?"), seconds))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield compiled
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
