"""XLA's persistent compilation cache: a second process, or a resumed run, loads the programs that
an earlier one compiled instead of compiling them again (seconds per program on a GPU)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import jax

from jaxcnn import paths

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax's monitoring event, per program
# What a first call spends before it runs: tracing to a jaxpr, lowering to MLIR, compiling (jax's events).
PREPARE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  COMPILE_EVENT)
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


class CompileClock:
    """While active, collects the wall intervals that jax spends tracing, lowering and compiling
    programs (``PREPARE_EVENTS``); ``seconds_between`` counts them in a window of ``time.perf_counter``.

    A nested program is traced inside its caller's trace: intervals are merged, never added twice.
    """

    def __init__(self):
        self.intervals: list[tuple[float, float]] = []

    def _listener(self, event: str, seconds: float, **kwargs):
        if event in PREPARE_EVENTS:
            end = time.perf_counter()
            self.intervals.append((end - seconds, end))

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listener)

    def seconds_between(self, start: float, end: float) -> float:
        """Seconds of ``[start, end]`` covered by at least one interval."""
        return covered_seconds(self.intervals, start, end)


def covered_seconds(intervals, start: float, end: float) -> float:
    """The length of the union of ``intervals`` (``(begin, end)`` pairs) inside ``[start, end]``."""
    total, reached = 0.0, start
    for begin, stop in sorted(intervals):
        begin, stop = max(begin, reached), min(stop, end)
        if stop > begin:
            total += stop - begin
            reached = stop
    return total
