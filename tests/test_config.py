"""Configs as data: ``--set`` overrides of nested, tuple and boolean fields, and the JSON round trip."""

import json

import pytest

from jaxcnn.augment import AugmentConfig
from jaxcnn.config import ModelConfig, TrainConfig, from_dict, override, to_dict
from jaxcnn.part1 import Part1Config


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
    Part1Config(classes=("A", "b"), folds=4, cv_dir="elsewhere"),
])
def test_to_dict_from_dict_round_trip_through_json(cfg):
    data = json.loads(json.dumps(to_dict(cfg)))
    assert from_dict(type(cfg), data) == cfg


def test_from_dict_rejects_an_unknown_key():
    data = to_dict(TrainConfig())
    data["model"]["depth"] = 3
    with pytest.raises(ValueError, match="ModelConfig has no field 'depth'"):
        from_dict(TrainConfig, data)
