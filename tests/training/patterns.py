"""The small problem that the step, population, optimiser and loss tests train on: four patterns in
28-px images, two seeds of a two-stage CNN, in float32 and float64."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.config import NO_AUGMENT, ModelConfig, TrainConfig
from tests.tolerances import FLOAT64_CROSS_PROGRAM

NUM_CLASSES = 4
NUM_EXAMPLES = 64
CFG = TrainConfig(seeds=(0, 1), epochs=20, batch_size=16, learning_rate=1e-2, warmup_epochs=0,
                  label_smoothing=0.0, model=ModelConfig(widths=(4, 8), hidden=16), augment=NO_AUGMENT)
CFG64 = dataclasses.replace(CFG, model=dataclasses.replace(CFG.model, dtype="float64"))
TOLERANCE = FLOAT64_CROSS_PROGRAM  # the tests comparing two programs train in float64 (tests/tolerances.py)


def pattern_images(n: int, seed: int = 0):
    """uint8 [n, 28, 28] images whose class (i % 4) is a bar, a column, a diagonal or a frame, plus noise."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % NUM_CLASSES).astype(np.int32)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for image, label in zip(images, labels):
        if label == 0:
            image[12:16, 4:24] = 255
        elif label == 1:
            image[4:24, 12:16] = 255
        elif label == 2:
            image[np.arange(4, 24), np.arange(4, 24)] = 255
        else:
            image[4:24, 4] = image[4:24, 23] = image[4, 4:24] = image[23, 4:24] = 255
    return images, labels


def as_inputs(data):
    """``(images, labels)`` -> the ``(inputs, labels)`` the epoch functions take."""
    return {"image": data[0]}, data[1]


def copy(tree):
    """A copy of a state, for the jitted epochs that donate their input."""
    return jax.tree.map(jnp.copy, tree)
