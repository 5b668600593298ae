"""What part 1's input size and trunk cost: seconds per training epoch of the recipe's step (batch
128, augmentation and page geometry on, one seed) for each crop size and trunk, on synthetic data
held on the device, compile time apart. It sizes the screen of docs/part1.md before it runs.

    python benchmarks/part1_inputs.py --sizes 28,32,48,64 --trunks vgg,resnet
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

from jaxcnn.config import ModelConfig, TrainConfig
from jaxcnn.data.chars74k import CLASS_NAMES
from jaxcnn.data.preprocess import GEOMETRY_FEATURES
from jaxcnn.experiments.part1.config import IMAGES_PER_CLASS
from jaxcnn.training.population import create_population, train_epoch_stepwise
from jaxcnn.training.steps import program_config, steps_per_epoch
from machine import describe  # beside this file

EPOCH_IMAGES = IMAGES_PER_CLASS * len(CLASS_NAMES) * 4 // 5  # a class-stratified fold's training images (1,984)


def epoch_seconds(trunk: str, size: int, steps: int) -> tuple[float, float, int]:
    """(compile s, steady s per epoch, parameters) of the recipe's step at ``trunk`` and ``size``."""
    cfg = TrainConfig(model=ModelConfig(trunk=trunk, image_size=size, page_geometry=True))
    rng = np.random.default_rng(0)
    inputs = {"image": jax.device_put(rng.integers(0, 256, (EPOCH_IMAGES, size, size), dtype=np.uint8)),
              "geometry": jax.device_put(rng.normal(size=(EPOCH_IMAGES, len(GEOMETRY_FEATURES))).astype(np.float32))}
    labels = jax.device_put(rng.integers(0, len(CLASS_NAMES), EPOCH_IMAGES).astype(np.int32))
    state = create_population((0,), len(CLASS_NAMES), cfg, EPOCH_IMAGES)
    start = time.perf_counter()
    state, _ = train_epoch_stepwise(state, inputs, labels, program_config(cfg), num_steps=1)
    jax.block_until_ready(state)
    first = time.perf_counter() - start
    start = time.perf_counter()
    state, _ = train_epoch_stepwise(state, inputs, labels, program_config(cfg), num_steps=steps)
    jax.block_until_ready(state)
    per_step = (time.perf_counter() - start) / steps
    params = sum(x.size for x in jax.tree.leaves(state.params))
    return max(0.0, first - per_step), per_step * steps_per_epoch(EPOCH_IMAGES, cfg.batch_size), params


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="28,32,48,64", help="crop sides in pixels (default: %(default)s)")
    p.add_argument("--trunks", default="vgg,resnet", help="trunks (default: %(default)s)")
    p.add_argument("--steps", type=int, default=5, help="steps timed per row (default: %(default)s)")
    args = p.parse_args()
    print(describe(len(os.sched_getaffinity(0))))
    print(f"| trunk | crop | parameters | compile s | s per epoch ({EPOCH_IMAGES} images) | 60 epochs, min |")
    print("|---|---|---|---|---|---|")
    for trunk in args.trunks.split(","):
        for size in map(int, args.sizes.split(",")):
            compile_s, epoch_s, params = epoch_seconds(trunk, size, args.steps)
            print(f"| {trunk} | {size} | {params:,} | {compile_s:.1f} | {epoch_s:.1f} | {60 * epoch_s / 60:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
