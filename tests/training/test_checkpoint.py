"""Orbax checkpoints of a run: exact round trip, best/latest, and damaged or foreign checkpoints."""

import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.config import ModelConfig, TrainConfig
from jaxcnn.errors import CheckpointError
from jaxcnn.training.checkpoint import RunCheckpoints
from jaxcnn.training.population import create_population

TINY = ModelConfig(widths=(4, 8), hidden=16)
META = {"history": [{"epoch": 1}], "config": {"epochs": 3}, "class_names": ["0", "1", "A", "a"]}


def population(seed: int = 0, model: ModelConfig = TINY, num_classes: int = 4):
    """A two-seed train state filled with distinct random values (no compilation needed)."""
    cfg = TrainConfig(seeds=(0, 1), model=model)
    shapes = jax.eval_shape(lambda: create_population(cfg.seeds, num_classes, cfg, 64))
    rng = np.random.default_rng(seed)

    def fill(s):
        if jnp.issubdtype(s.dtype, jnp.integer):
            return rng.integers(0, 2**31 - 1, s.shape).astype(s.dtype)
        return rng.standard_normal(s.shape).astype(s.dtype)

    return jax.tree.map(fill, shapes)


def zeros_like(state):
    return jax.tree.map(np.zeros_like, state)


def assert_states_equal(restored, saved):
    for field in ("params", "batch_stats", "opt_state", "step", "key"):
        chex.assert_trees_all_equal(getattr(restored, field), getattr(saved, field), strict=True)


def save_epochs(directory, accuracies):
    """Saves one distinct state per epoch with the given validation accuracies; returns the states."""
    ckpts = RunCheckpoints(directory)
    states = {}
    for epoch, accuracy in enumerate(accuracies, start=1):
        states[epoch] = population(seed=epoch)
        ckpts.save(epoch, states[epoch], META, accuracy)
    ckpts.close()
    return states


def test_save_then_restore_is_exact(tmp_path):
    state = population()
    ckpts = RunCheckpoints(tmp_path / "ckpts")
    ckpts.save(1, state, META, 0.5)
    ckpts.close()
    reopened = RunCheckpoints(tmp_path / "ckpts", read_only=True)
    assert_states_equal(reopened.restore(zeros_like(state)), state)
    assert reopened.read_meta() == META
    reopened.close()


def test_the_weight_average_is_saved_and_a_run_without_one_writes_no_field_for_it(tmp_path):
    plain = population()
    cfg = TrainConfig(seeds=(0, 1), model=TINY, ema_decay=0.99)
    averaged = jax.tree.map(lambda s: np.ones(s.shape, s.dtype), jax.eval_shape(
        lambda: create_population(cfg.seeds, 4, cfg, 64)))
    for name, state in (("plain", plain), ("averaged", averaged)):
        with RunCheckpoints(tmp_path / name) as ckpts:
            ckpts.save(1, state, META, 0.5)
    with RunCheckpoints(tmp_path / "plain", read_only=True) as ckpts:
        assert "ema" not in ckpts._manager.item_metadata(1)["state"]  # the layout of runs from before the field
        assert ckpts.restore(zeros_like(plain)).ema is None
    with RunCheckpoints(tmp_path / "averaged", read_only=True) as ckpts:
        chex.assert_trees_all_equal(ckpts.restore(zeros_like(averaged)).ema, averaged.ema, strict=True)


def test_best_and_latest_are_chosen_by_metric_and_epoch(tmp_path):
    states = save_epochs(tmp_path, [0.5, 0.9, 0.6, 0.7])
    ckpts = RunCheckpoints(tmp_path, read_only=True)
    assert ckpts.best_epoch() == 2 and ckpts.latest_epoch() == 4
    assert ckpts.epochs() == [2, 3, 4]  # the latest two and the best; epoch 1 is pruned
    target = zeros_like(states[1])
    assert_states_equal(ckpts.restore(target, "best"), states[2])
    assert_states_equal(ckpts.restore(target, "latest"), states[4])
    assert_states_equal(ckpts.restore(target, 3), states[3])
    with pytest.raises(CheckpointError, match=r"no 1 checkpoint \(have epochs \[2, 3, 4\]\)"):
        ckpts.restore(target, 1)
    ckpts.close()


@pytest.mark.parametrize("model, num_classes, layer", [
    (ModelConfig(widths=(4, 16), hidden=16), 4, r"\['trunk'\]\['(conv|bn)1_0'\].* has shape"),
    (TINY, 10, r"\['head'\]\['logits'\].* has shape"),
    (ModelConfig(widths=(4, 8, 8), hidden=16), 4, r"checkpoint has no .*\['trunk'\]\['(conv|bn)2_0'\]"),
])
def test_restoring_into_a_different_architecture_names_the_layer(tmp_path, model, num_classes, layer):
    save_epochs(tmp_path, [0.5])
    ckpts = RunCheckpoints(tmp_path, read_only=True)
    with pytest.raises(CheckpointError, match=layer) as err:
        ckpts.restore(zeros_like(population(model=model, num_classes=num_classes)))
    assert str(tmp_path / "1") in str(err.value) and "\n" not in str(err.value)
    ckpts.close()


@pytest.mark.parametrize("leftover", ["3.orbax-checkpoint-tmp", "3.orbax-checkpoint-tmp-1718000000123"])
def test_an_interrupted_write_is_not_taken_as_latest(tmp_path, leftover):
    states = save_epochs(tmp_path, [0.5, 0.6])
    partial = tmp_path / leftover / "state"
    partial.mkdir(parents=True)
    (partial / "_METADATA").write_text("{half a file")
    for read_only in (True, False):  # evaluate opens read-only, a resumed fit read-write
        ckpts = RunCheckpoints(tmp_path, read_only=read_only)
        assert ckpts.latest_epoch() == 2 and ckpts.epochs() == [1, 2]
        assert_states_equal(ckpts.restore(zeros_like(states[2])), states[2])
        ckpts.close()
    ckpts = RunCheckpoints(tmp_path)  # and the resumed run can write epoch 3 after all
    ckpts.save(3, states[1], META, 0.7)
    assert ckpts.latest_epoch() == 3
    ckpts.close()


def _array_files(step_dir):
    return sorted((p for p in step_dir.glob("state/**/d/*") if p.is_file()), key=lambda p: p.stat().st_size)


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _scramble(path):
    data = bytearray(path.read_bytes())
    for i in range(64, len(data), 97):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _flip_one_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _remove_data_folder(path):
    shutil.rmtree(path.parent)


@pytest.mark.parametrize("damage", [_truncate, _scramble, _flip_one_bit, _remove_data_folder])
def test_a_damaged_array_file_gives_a_checkpoint_error(tmp_path, damage):
    states = save_epochs(tmp_path, [0.5])
    files = _array_files(tmp_path / "1")
    assert files, "expected Orbax array data files under state/**/d/"
    damage(files[-1])  # the largest: it holds the bulk of the arrays
    ckpts = RunCheckpoints(tmp_path, read_only=True)
    with pytest.raises(CheckpointError, match="damaged checkpoint") as err:
        ckpts.restore(zeros_like(states[1]))
    assert str(tmp_path / "1") in str(err.value) and "\n" not in str(err.value)
    ckpts.close()


def test_a_missing_directory_gives_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        RunCheckpoints(tmp_path / "nowhere", read_only=True)


@pytest.mark.parametrize("damage", [lambda p: p.unlink(), lambda p: p.write_text("{}")], ids=["deleted", "emptied"])
def test_a_lost_array_layout_is_named_not_taken_for_another_model(tmp_path, damage):
    states = save_epochs(tmp_path, [0.5])
    damage(tmp_path / "1" / "state" / "_METADATA")
    with RunCheckpoints(tmp_path, read_only=True) as ckpts:
        with pytest.raises(CheckpointError, match=r"damaged checkpoint, (its array layout|cannot read its layout)") as err:
            ckpts.restore(zeros_like(states[1]))
    assert "different model" not in str(err.value)


@pytest.mark.parametrize("which", ["foo", "-1", "1.5", ""])
def test_an_unknown_epoch_name_says_what_is_accepted(tmp_path, which):
    save_epochs(tmp_path, [0.5])
    with RunCheckpoints(tmp_path, read_only=True) as ckpts:
        with pytest.raises(CheckpointError, match="choose best, latest or an epoch number"):
            ckpts.resolve(which)
