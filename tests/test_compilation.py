"""The compilation counter, the compile clock and where the persistent compilation cache is turned on."""

import time

import jax
import numpy as np

from jaxcnn.compilation import CompileClock, counting_compilations, covered_seconds, use_persistent_cache


def test_the_counter_sees_each_program_once_and_stops_at_the_block_end():
    def triple_plus_one(x):
        return x * 3 + 1

    program = jax.jit(triple_plus_one)
    three, four = np.ones(3, np.float32), np.ones(4, np.float32)
    with counting_compilations() as compiled:
        program(three)
        program(three)  # the same program again: no compilation
        program(four)  # another shape: another
    program(np.ones(5, np.float32))
    assert [name for name, _ in compiled] == ["jit(triple_plus_one)"] * 2
    assert all(seconds >= 0 for _, seconds in compiled)


def test_the_persistent_cache_is_for_accelerators_and_a_folder_set_by_the_user_is_kept(tmp_path):
    saved = jax.config.jax_compilation_cache_dir  # the test suite's own cache
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        folder = use_persistent_cache(tmp_path)
        if jax.default_backend() == "cpu":
            assert folder is None and jax.config.jax_compilation_cache_dir is None
        else:
            assert folder == tmp_path / "xla" and jax.config.jax_compilation_cache_dir == str(folder)
        jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
        assert use_persistent_cache(tmp_path) == tmp_path / "mine"
    finally:
        jax.config.update("jax_compilation_cache_dir", saved)


def test_overlapping_compile_intervals_count_once_and_only_inside_the_window():
    nested = [(1.0, 4.0), (2.0, 3.0), (6.0, 7.0)]  # a program traced inside its caller's trace
    assert covered_seconds(nested, 0.0, 10.0) == 4.0
    assert covered_seconds(nested, 3.5, 6.5) == 1.0 and covered_seconds(nested, 4.0, 6.0) == 0.0


def test_the_compile_clock_times_a_first_call_and_not_a_warm_one():
    program = jax.jit(lambda x: jax.numpy.sin(x) @ x.T)
    x = np.ones((64, 64), np.float32)
    with CompileClock() as clock:
        start = time.perf_counter()
        program(x).block_until_ready()
        first = time.perf_counter()
        program(x).block_until_ready()
        second = time.perf_counter()
    assert 0 < clock.seconds_between(start, first) <= first - start
    assert clock.seconds_between(first, second) == 0.0
