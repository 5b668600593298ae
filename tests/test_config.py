"""Configs as data: ``--set`` overrides of nested, tuple and boolean fields, and the JSON round trip."""

import json
import math

import pytest
from hypothesis import assume, given, strategies as st

from jaxcnn.config import AugmentConfig
from jaxcnn.config import ModelConfig, TrainConfig, from_dict, override, to_dict
from jaxcnn.errors import ConfigError
from jaxcnn.experiments import part_module
from jaxcnn.experiments.part1 import Part1Config


def test_override_reaches_nested_fields():
    cfg = override(Part1Config(), "train.model.hidden=64")
    cfg = override(cfg, "train.augment.rotate_deg=0")
    assert cfg.train.model.hidden == 64 and isinstance(cfg.train.model.hidden, int)
    assert cfg.train.augment.rotate_deg == 0.0 and isinstance(cfg.train.augment.rotate_deg, float)
    assert cfg.train.model.widths == ModelConfig().widths  # siblings untouched
    assert Part1Config().train.model.hidden == 256  # the original is not mutated


def test_override_parses_numbers_to_the_field_type():
    cfg = override(override(TrainConfig(), "epochs=30"), "learning_rate=1e-3")
    assert cfg.epochs == 30 and isinstance(cfg.epochs, int)
    assert cfg.learning_rate == pytest.approx(1e-3) and isinstance(cfg.learning_rate, float)


@pytest.mark.parametrize("assignment, seeds", [
    ("train.seeds=0,1,2", (0, 1, 2)),
    ("train.seeds=3", (3,)),
    ("train.seeds=[4, 5]", (4, 5)),
    ("train.seeds=6, 7", (6, 7)),
])
def test_override_of_a_tuple_field_gives_a_tuple_of_ints(assignment, seeds):
    assert override(Part1Config(), assignment).train.seeds == seeds


@pytest.mark.parametrize("assignment, classes", [
    ("classes=A,b,7", ("A", "b", "7")),
    ("classes=A", ("A",)),
    ("classes=0,1", ("0", "1")),
])
def test_override_of_a_string_tuple_keeps_strings(assignment, classes):
    assert override(Part1Config(), assignment).classes == classes


def test_override_keeps_a_string_field_whole_even_with_commas():
    from jaxcnn.experiments.part3 import Part3Config
    assert override(Part3Config(), "data=/x/a,b.zip").data == "/x/a,b.zip"
    assert override(Part3Config(), "models=comp_forward, comp_nn").models == ("comp_forward", "comp_nn")


@pytest.mark.parametrize("text, value", [("true", True), ("True", True), ("1", True), ("yes", True),
                                         ("false", False), ("False", False), ("0", False), ("no", False)])
def test_override_of_a_boolean(text, value):
    assert override(TrainConfig(), f"freeze_trunk={text}").freeze_trunk is value


def test_a_non_boolean_for_a_boolean_field_is_an_error():
    with pytest.raises(ValueError, match="maybe"):
        override(TrainConfig(), "freeze_trunk=maybe")


@pytest.mark.parametrize("assignment, named", [
    ("train.nope=1", "'nope'"),
    ("nope=1", "'nope'"),
    ("train.model.depth=3", "'depth'"),
])
def test_an_unknown_field_is_an_error_naming_it_and_the_choices(assignment, named):
    with pytest.raises(ValueError, match=named) as err:
        override(Part1Config(), assignment)
    assert "fields:" in str(err.value)


def test_an_assignment_without_equals_is_an_error():
    with pytest.raises(ValueError, match="path.to.field=value"):
        override(TrainConfig(), "epochs")


def test_a_fractional_value_for_an_integer_field_is_an_error():
    with pytest.raises(ValueError):
        override(TrainConfig(), "epochs=2.5")


@pytest.mark.parametrize("cfg", [
    TrainConfig(),
    TrainConfig(seeds=(3, 4), freeze_trunk=True, model=ModelConfig(widths=(4, 8), hidden=16),
                augment=AugmentConfig(elastic_alpha=3.0)),
    Part1Config(classes=("A", "b"), folds=4, folds_by="writer"),
])
def test_to_dict_from_dict_round_trip_through_json(cfg):
    data = json.loads(json.dumps(to_dict(cfg)))
    assert from_dict(type(cfg), data) == cfg


def test_from_dict_rejects_an_unknown_key():
    data = to_dict(TrainConfig())
    data["model"]["depth"] = 3
    with pytest.raises(ValueError, match="ModelConfig has no field 'depth'"):
        from_dict(TrainConfig, data)


@pytest.mark.parametrize("assignment, named", [
    ("train.learning_rate=-0.01", "TrainConfig.learning_rate must be > 0, got -0.01"),
    ("train.model.dropout=1.5", "ModelConfig.dropout must be in [0, 1), got 1.5"),
    ("train.label_smoothing=2", "TrainConfig.label_smoothing must be in [0, 1), got 2.0"),
    ("train.batch_size=0", "TrainConfig.batch_size must be >= 1, got 0"),
    ("train.seeds=[]", "TrainConfig.seeds must be a non-empty list"),
    ("train.seeds=1,1", "TrainConfig.seeds must be a non-empty list of distinct"),
    ("train.eval_batch_size=0", "TrainConfig.eval_batch_size must be >= 1, got 0"),
    ("train.epochs=0", "TrainConfig.epochs must be >= 1, got 0"),
    ("train.loss=forward", "TrainConfig.label_transition must be a square matrix"),
    ("train.loss=hinge", "TrainConfig.loss must be one of"),
    ("train.model.widths=[]", "ModelConfig.widths must be"),
    ("train.model.dtype=float8", "ModelConfig.dtype must be one of"),
    ("train.augment.shear_deg=90", "AugmentConfig.shear_deg must be in [0, 90)"),
    ("train.learning_rate=NaN", "TrainConfig.learning_rate must be > 0, got nan"),
    ("classes=A,A", "Part1Config.classes must be distinct"),
    ("folds=1", "Part1Config.folds must be at least 2"),
    ("preprocess=fancy", "Part1Config.preprocess must be one of"),
    ("train.ema_decay=1", "TrainConfig.ema_decay must be in [0, 1)"),
    ("train.mixup_alpha=-1", "TrainConfig.mixup_alpha must be >= 0"),
    ("train.trunk_lr_scale=0", "TrainConfig.trunk_lr_scale must be > 0, got 0.0"),
    ("train.train_trunk_batch_norm=true", "TrainConfig.train_trunk_batch_norm must be false unless freeze_trunk"),
    ("train.decay_to_start=-0.1", "TrainConfig.decay_to_start must be >= 0 (0: off), got -0.1"),
])
def test_an_out_of_range_value_is_refused_when_the_config_is_built(assignment, named):
    with pytest.raises(ConfigError) as err:
        override(Part1Config(), assignment)
    assert named in str(err.value) and "\n" not in str(err.value)


def test_one_way_of_mixing_at_a_time_and_none_with_the_complementary_risk():
    with pytest.raises(ConfigError, match="TrainConfig.cutmix_alpha must be 0 when mixup_alpha is set"):
        TrainConfig(mixup_alpha=0.2, cutmix_alpha=1.0)
    with pytest.raises(ConfigError, match="TrainConfig.loss must be not complementary_nn when mixing"):
        TrainConfig(loss="complementary_nn", cutmix_alpha=1.0)


def test_part2_ranges_are_checked():
    from jaxcnn.experiments.part2 import Part2Config
    with pytest.raises(ConfigError, match="Part2Config.subset_sizes must be a list of sizes >= 1"):
        override(Part2Config(), "subset_sizes=0,100")
    with pytest.raises(ConfigError, match="Part2Config.thresholds must be"):
        override(Part2Config(), "thresholds=1.5")
    with pytest.raises(ConfigError, match="Part2Config.variants must be a list of C_slow, C_l2sp, C_frozen_bn"):
        override(Part2Config(), "variants=C_fast")


# Each numeric field and the range the docs promise it accepts.
RANGES = {
    "epochs": lambda v: v >= 1, "batch_size": lambda v: v >= 1, "eval_batch_size": lambda v: v >= 1,
    "warmup_epochs": lambda v: v >= 0, "probe_every": lambda v: v >= 0,
    "learning_rate": lambda v: math.isfinite(v) and v > 0, "weight_decay": lambda v: math.isfinite(v) and v >= 0,
    "label_smoothing": lambda v: 0 <= v < 1, "gce_q": lambda v: 0 < v <= 1,
    "checkpoint_every": lambda v: 0 <= v < math.inf,
    "trunk_lr_scale": lambda v: math.isfinite(v) and v > 0, "decay_to_start": lambda v: math.isfinite(v) and v >= 0,
}
numbers = st.one_of(st.integers(-3, 300), st.floats(allow_nan=True, allow_infinity=True, width=32))


@given(field=st.sampled_from(sorted(RANGES)), value=numbers)
def test_a_train_config_is_built_exactly_when_every_value_is_in_range(field, value):
    if field in ("epochs", "batch_size", "eval_batch_size", "warmup_epochs", "probe_every"):
        assume(isinstance(value, int))
    try:
        cfg = TrainConfig(**{field: value})
    except ConfigError as err:
        assert not RANGES[field](value)
        assert str(err).startswith(f"TrainConfig.{field} must be ")
        return
    assert RANGES[field](value)
    assert from_dict(TrainConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg


@given(seeds=st.lists(st.integers(-2, 5), max_size=4), dropout=st.floats(-1, 2), widths=st.lists(st.integers(-1, 4), max_size=3))
def test_seeds_dropout_and_widths_are_valid_exactly_in_range(seeds, dropout, widths):
    valid = bool(seeds) and len(set(seeds)) == len(seeds) and min(seeds) >= 0 and 0 <= dropout < 1 \
        and bool(widths) and min(widths) >= 1
    try:
        TrainConfig(seeds=tuple(seeds), model=ModelConfig(widths=tuple(widths), dropout=dropout))
    except ConfigError:
        assert not valid
    else:
        assert valid


def test_a_geometry_skip_needs_the_page_geometry():
    assert ModelConfig(page_geometry=True, geometry_skip=True).geometry_skip
    with pytest.raises(ConfigError, match="ModelConfig.geometry_skip must be false without page_geometry"):
        ModelConfig(geometry_skip=True)


@pytest.mark.parametrize("part, field", [("part2", "digits"), ("part2", "mnist"), ("part3", "reference")])
def test_a_model_that_a_part_shares_is_refused_for_one_of_its_trainings(part, field):
    cfg = part_module(part).get_config()
    with pytest.raises(ValueError, match=rf"^{field}.model.widths: .* set model.widths instead$"):
        override(cfg, f"{field}.model.widths=8,16,32")
    assert getattr(override(cfg, "model.widths=8,16,32"), field).model.widths == (8, 16, 32)
