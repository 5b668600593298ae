"""The compilation counter and where the persistent compilation cache is turned on."""

import jax
import numpy as np

from jaxcnn.compilation import counting_compilations, use_persistent_cache


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
