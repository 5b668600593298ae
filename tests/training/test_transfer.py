"""Grafting a pretrained trunk into a fresh population by name."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.config import NO_AUGMENT, ModelConfig, TrainConfig
from jaxcnn.errors import CheckpointError
from jaxcnn.model import make_model
from jaxcnn.training.checkpoint import load_run
from jaxcnn.training.loop import fit
from jaxcnn.training.population import create_population, unstack
from jaxcnn.training.transfer import graft, graft_init, pretrained_variables, transfer_plan
from tests.conftest import digits_dataset

TINY = ModelConfig(widths=(4, 8), hidden=16)


def random_like(shapes, seed):
    """Random arrays with the shapes of an abstract tree: distinct values so copies are visible."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)


def model_variables(num_classes, model_cfg=TINY, seed=0):
    """One model's ``{"params", "batch_stats"}``, as a pretrained source would be."""
    model = make_model(num_classes, model_cfg)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1))))
    return random_like(dict(shapes), seed)


def population_variables(seeds, num_classes, seed=1):
    """A fresh population's variables, with a leading seed axis."""
    cfg = TrainConfig(seeds=seeds, model=TINY)
    state = jax.eval_shape(lambda: create_population(seeds, num_classes, cfg, 64))
    return random_like({"params": state.params, "batch_stats": state.batch_stats}, seed)


def test_graft_copies_exactly_the_trunk_and_leaves_the_head_fresh():
    source, fresh = model_variables(62), model_variables(10, seed=1)
    grafted, report = graft(fresh, source)
    for collection in ("params", "batch_stats"):
        chex.assert_trees_all_equal(grafted[collection]["trunk"], source[collection]["trunk"])
        chex.assert_trees_all_equal(grafted[collection]["head"], fresh[collection]["head"])
    assert report["copied"] and all("/trunk/" in p for p in report["copied"])
    assert report["kept_fresh"] and all("/head/" in p for p in report["kept_fresh"])
    assert "params/trunk/conv1_1/kernel" in report["copied"]
    assert "batch_stats/trunk/bn0_0/mean" in report["copied"]


def test_graft_broadcasts_the_trunk_to_every_seed_of_a_population():
    source, fresh = model_variables(62), population_variables((0, 1, 2), 10)
    grafted, _ = graft(fresh, source)
    chex.assert_trees_all_equal_shapes(grafted, fresh)
    for seed in range(3):
        member = jax.tree.map(lambda x: x[seed], grafted)
        chex.assert_trees_all_equal(member["params"]["trunk"], source["params"]["trunk"])
        chex.assert_trees_all_equal(member["batch_stats"]["trunk"], source["batch_stats"]["trunk"])
    chex.assert_trees_all_equal(grafted["params"]["head"], fresh["params"]["head"])
    heads = grafted["params"]["head"]["dense"]["kernel"]
    assert not np.array_equal(heads[0], heads[1])  # the heads stay the seeds' own


def test_keep_fresh_patterns_choose_what_is_copied():
    source, fresh = model_variables(10), model_variables(10, seed=1)
    grafted, report = graft(fresh, source, keep_fresh=("trunk/conv0_0/.*",))
    chex.assert_trees_all_equal(grafted["params"]["trunk"]["conv0_0"], fresh["params"]["trunk"]["conv0_0"])
    chex.assert_trees_all_equal(grafted["params"]["trunk"]["conv0_1"], source["params"]["trunk"]["conv0_1"])
    chex.assert_trees_all_equal(grafted["params"]["head"], source["params"]["head"])
    assert report["kept_fresh"] == ["params/trunk/conv0_0/kernel"]


def test_a_pattern_must_match_the_whole_path():
    """``conv0_0`` alone matches no path in full, so nothing is kept fresh (``re.search`` would)."""
    source, fresh = model_variables(10), model_variables(10, seed=1)
    grafted, report = graft(fresh, source, keep_fresh=("conv0_0", "trunk/conv0"))
    assert report["kept_fresh"] == []
    chex.assert_trees_all_equal(grafted, source)


def test_the_plan_needs_only_shapes_and_matches_the_graft():
    source, fresh = model_variables(62), population_variables((0, 1), 10)
    _, report = graft(fresh, source)
    assert transfer_plan(jax.eval_shape(lambda: fresh), source) == report


def test_a_mismatched_trunk_shape_is_refused_naming_the_layer():
    source = model_variables(62, ModelConfig(widths=(4, 16), hidden=16))
    fresh = population_variables((0, 1), 10)
    with pytest.raises(CheckpointError, match=r"cannot graft \S+/trunk/(conv|bn)1_\d/\S+: source shape \(.*16,?\)"):
        graft(fresh, source)


def test_a_layer_missing_from_the_source_is_refused_unless_kept_fresh():
    source = model_variables(62, ModelConfig(widths=(4,), hidden=16))
    fresh = model_variables(10, seed=1)
    with pytest.raises(CheckpointError, match=r"cannot graft \S+/trunk/(conv|bn)1_\d/\S+: the source checkpoint has no"):
        graft(fresh, source)
    grafted, report = graft(fresh, source, keep_fresh=("head/.*", "trunk/(conv|bn)1_.*"))
    chex.assert_trees_all_equal(grafted["params"]["trunk"]["conv0_0"], source["params"]["trunk"]["conv0_0"])
    chex.assert_trees_all_equal(grafted["params"]["trunk"]["conv1_0"], fresh["params"]["trunk"]["conv1_0"])
    assert "params/trunk/conv1_0/kernel" in report["kept_fresh"]


def test_graft_init_gives_every_member_a_saved_trunk_exactly_and_a_fresh_head(tmp_path):
    tiny = TrainConfig(seeds=(3, 4), epochs=1, batch_size=16, model=ModelConfig(widths=(4,), hidden=8),
                       augment=NO_AUGMENT)
    fit(digits_dataset(32), digits_dataset(20, seed=1), tiny, tmp_path / "A")
    saved, _, _, _ = load_run(tmp_path / "A", "best")
    source, record = pretrained_variables(tmp_path / "A")
    assert record == {"checkpoint": str(tmp_path / "A"), "epoch": 1, "member": 0}
    fresh = create_population((0, 1, 2), 10, tiny, 32)

    grafted = graft_init(source)(fresh)

    for collection in ("params", "batch_stats"):
        a_trunk = getattr(saved, collection)["trunk"]
        for member in range(3):
            jax.tree.map(np.testing.assert_array_equal, unstack(getattr(grafted, collection)["trunk"], member),
                         unstack(a_trunk, 0))
        jax.tree.map(np.testing.assert_array_equal, getattr(grafted, collection)["head"],
                     getattr(fresh, collection)["head"])
    kernel = lambda state, member: np.asarray(state.params["trunk"]["conv0_0"]["kernel"][member])
    assert not np.array_equal(kernel(saved, 0), kernel(saved, 1))  # so "member 0" is a real choice
    assert not np.array_equal(kernel(saved, 0), kernel(fresh, 0))  # so the graft is not a no-op
    jax.tree.map(np.testing.assert_array_equal, grafted.opt_state, fresh.opt_state)
