"""Part 3's configuration: what it refuses, and the quick part 1 it falls back on."""

import dataclasses

import pytest

from jaxcnn.experiments import part1, part3
from jaxcnn.experiments.part3 import config


@pytest.mark.parametrize("change, message", [
    ({"models": ("relabel", "magic")}, "unknown model 'magic'"),
    ({"models": ("self_train", "comp_forward")}, "list it before self_train"),
    ({"teacher": "self_train"}, "teacher must be"),
    ({"free_folds": 1}, "at least 2")])
def test_bad_part3_configs_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(part3.get_config(), **change)


def test_the_quick_part1_that_part3_falls_back_on_is_part1s_quick_recipe_with_part3s_model():
    quick = part3.get_config("quick")
    part1_quick = part1.get_config("quick")
    assert quick.part1_fallback == dataclasses.replace(part1_quick.train, model=quick.model)
    assert (config.PART1_DATA, config.PART1_PREPROCESS) == (part1_quick.data_subdir, part1_quick.preprocess)
