"""Seconds of training from a fresh CNN to 99% on MNIST's test set, one seed.

Issue 22's target on an H200: <= 0.3 s of training, <= 3 s with compilation and a warm
compilation cache (anchor: 0.76 s on a GTX 1660 Ti, tuomaso/train_mnist_fast).

    python benchmarks/mnist_to_99.py --data-root DATA
    python benchmarks/mnist_to_99.py --data-root DATA --set batch_size=256 --set epochs=2

The project's CNN and training step (``jaxcnn.training.steps``, ``population``) with the configuration below (any
``TrainConfig`` field by ``--set``); the train and test sets are on the device. Training runs in
chunks of about ``--chunk`` steps, each one call of the epoch engine ``fit`` uses on the backend
(the scanned epoch on accelerators, a loop of dispatched steps on the CPU); the test set is
scored after every chunk, outside the timed part. ``train s`` sums the chunks' wall times (each
ended by ``block_until_ready``); ``compile s`` is the first call of each program less a steady
call (made on a copy, so the timed run starts fresh); ``wall s`` is everything from the first
compilation to the chunk that reached the target, scoring included. On a GPU the compilation cache
is on (``jaxcnn.compilation.use_persistent_cache``): a second run shows the warm-cache figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import describe  # noqa: E402  (beside this file)
from jaxcnn import paths  # noqa: E402
from jaxcnn.compilation import use_persistent_cache  # noqa: E402
from jaxcnn.config import NO_AUGMENT, TrainConfig, override  # noqa: E402
from jaxcnn.data.mnist import load_mnist  # noqa: E402
from jaxcnn.training import population as P  # noqa: E402
from jaxcnn.training.losses import objective  # noqa: E402
from jaxcnn.training.sharding import on_devices  # noqa: E402
from jaxcnn.training.steps import program_config, steps_per_epoch  # noqa: E402

# One epoch (half of it warm-up, then cosine) at a large batch, no augmentation, no smoothing: a race, not the
# study's B. The fewest steps to 99% of the settings tried (benchmarks/README.md): a small CNN's step on a GPU
# costs about as much at batch 512 as at 256.
RACE = TrainConfig(seeds=(0,), epochs=1, batch_size=512, learning_rate=4e-3, warmup_epochs=1, label_smoothing=0.0,
                   augment=NO_AUGMENT)


def chunk_length(steps: int, wanted: int) -> int:
    """The largest divisor of ``steps`` not above ``wanted``: chunks tile an epoch exactly."""
    return max(d for d in range(1, min(steps, max(1, wanted)) + 1) if steps % d == 0)


@jax.jit
def _accuracy(logits, labels):
    return jnp.mean(jnp.argmax(logits[0], axis=-1) == labels)


def race(cfg: TrainConfig, train, test, target: float, chunk: int) -> dict:
    """Trains until the test accuracy reaches ``target`` (or the schedule ends); returns the figures."""
    inputs, labels = on_devices(train.inputs(), None), on_devices(train.labels, None)
    test_inputs, test_labels = on_devices(test.inputs(), None), on_devices(test.labels, None)
    steps = steps_per_epoch(len(train), cfg.batch_size)
    chunk = chunk_length(steps, chunk)
    program, loss = program_config(cfg), on_devices(objective(cfg, 10), None)
    engine = P.train_epoch_stepwise if jax.default_backend() == "cpu" else P.train_epoch_population  # as ``fit``
    train_chunk = lambda s: engine(s, inputs, labels, program, chunk, loss)[0]
    score = lambda s: float(_accuracy(P.evaluate_population(s, test_inputs, test_labels, cfg.eval_batch_size)[0],
                                      test_labels))
    start = time.perf_counter()
    state = on_devices(P.create_population(cfg.seeds, 10, cfg, len(train)), None)
    copy = lambda s: jax.tree.map(jnp.copy, s)
    first = {}
    for name, call in (("train", lambda: jax.block_until_ready(train_chunk(copy(state)))),
                       ("score", lambda: score(state))):
        times = []
        for _ in range(2):  # the first call compiles, the second is steady
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
        first[name] = times[0] - times[1]
    trained, accuracy, done = 0.0, 0.0, 0
    while done < cfg.epochs * steps and accuracy < target:
        t = time.perf_counter()
        state = jax.block_until_ready(train_chunk(state))
        trained += time.perf_counter() - t
        done += chunk
        accuracy = score(state)
    return {"reached": accuracy >= target, "accuracy": accuracy, "steps": done, "epochs": done / steps,
            "train_s": trained, "compile_s": sum(first.values()), "wall_s": time.perf_counter() - start,
            "chunk": chunk, "images_per_s": done * cfg.batch_size / trained}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", help="default: $JAXCNN_DATA, else ./data")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a TrainConfig field, e.g. batch_size=512 or model.widths=16,32,64")
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--chunk", type=int, default=25, help="steps per timed call (default %(default)s)")
    parser.add_argument("--train-size", type=int, default=0, help="the first N training images (0: all)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    cfg = RACE
    for assignment in args.set:
        cfg = override(cfg, assignment)
    cfg = dataclasses.replace(cfg, seeds=cfg.seeds[:1])
    print(describe(os.cpu_count()), flush=True)
    use_persistent_cache()
    root = paths.data_root(args.data_root)
    train, test = load_mnist(root, "train"), load_mnist(root, "test")
    if args.train_size:
        train = train.subset(np.arange(args.train_size))
    row = race(cfg, train, test, args.target, args.chunk)
    print(f"\n| target | reached | accuracy | epochs | train s | compile s | wall s | images/s |\n|---|---|---|---|---|---|---|---|\n"
          f"| {args.target:.2%} | {row['reached']} | {row['accuracy']:.4f} | {row['epochs']:.2f} | {row['train_s']:.3f} | "
          f"{row['compile_s']:.1f} | {row['wall_s']:.1f} | {row['images_per_s']:,.0f} |")
    print("config: " + json.dumps(dataclasses.asdict(cfg)))
    if args.json:
        args.json.write_text(json.dumps({"environment": describe(os.cpu_count()), "config": dataclasses.asdict(cfg),
                                         **row}, indent=2))


if __name__ == "__main__":
    main()
