"""Fixtures of the step, population, optimiser and loss tests (``tests/training/patterns.py``), one per
module: compilation dominates on the CPU, so a module's tests share the programs they build."""

import jax
import pytest

from jaxcnn.training.population import create_population
from tests.training.patterns import CFG, CFG64, NUM_CLASSES, NUM_EXAMPLES, pattern_images


@pytest.fixture(scope="module")
def data():
    return pattern_images(NUM_EXAMPLES)


@pytest.fixture(scope="module")
def population():
    return create_population(CFG.seeds, NUM_CLASSES, CFG, NUM_EXAMPLES)


@pytest.fixture(scope="module")
def population64():
    """The population of CFG64, in float64: what programs that should agree are compared on."""
    with jax.enable_x64(True):
        return create_population(CFG64.seeds, NUM_CLASSES, CFG64, NUM_EXAMPLES)
