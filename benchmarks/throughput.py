"""Training throughput of jaxcnn: images per second in steady state, compile time reported apart.

Parts (``--parts``, comma-separated; default all but ``alternatives``):

- ``step``: the jitted ``train.train_step`` alone at each ``--batch-sizes``, augmentation on and off,
  with the trunk frozen (part 2's C_frozen), and compiled with XLA's default options rather than the
  library's ``train.COMPILER_OPTIONS``;
- ``bf16``: the same step with ``ModelConfig(dtype="bfloat16")``;
- ``epoch``: one epoch of ``--epoch-images`` images, a Python loop of jitted steps
  (``train_epoch_stepwise``) against one scanned program (``train_epoch_population``);
- ``population``: ``--seeds`` separate runs one after another against one vmapped population,
  with the epoch engine ``fit`` uses by default on this backend (``--engine``);
- ``alternatives``: the population as one unrolled program per step, no vmap (an investigation
  for the CPU; it runs with the ``population`` rows it is compared with).

Every measurement calls the library's own functions on synthetic data held on the device. A row's
``first s`` is its first call (compile and one run) and ``compile s`` that less one steady call.
The rows of a part are timed in turns, one block each per round for ``--repeats`` rounds, and a
row's ``steady s`` is its best block, per call: on a shared machine the rows compared see the same
disturbances, and the best block the fewest. Ratios are between rows of the same run.

    python benchmarks/throughput.py --quick
    python benchmarks/throughput.py --parts step --batch-sizes 128,512 --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.config import ModelConfig, TrainConfig
from jaxcnn.config import NO_AUGMENT
from jaxcnn.model import make_model
from jaxcnn.training import population as P
from jaxcnn.training import steps as T
from jaxcnn.training.optim import make_optimizer
from machine import describe  # beside this file

PARTS = ("step", "bf16", "epoch", "population", "alternatives")
DEFAULT_PARTS = ("step", "bf16", "epoch", "population")
ENGINE_ROWS = {"scan": "scanned epoch", "step": "loop of steps"}  # the epoch part's row for each engine


@dataclasses.dataclass
class Runner:
    """One thing to time: ``advance(state) -> (state, outputs)`` trains ``images`` images per call."""

    part: str
    variant: str
    batch: int
    images: int
    advance: Callable
    state: Any


@dataclasses.dataclass
class Row:
    part: str
    variant: str
    batch: int
    images: int  # images trained per call
    first_s: float
    steady_s: float

    @property
    def compile_s(self) -> float:
        return max(0.0, self.first_s - self.steady_s)

    @property
    def images_per_s(self) -> float:
        return self.images / self.steady_s


def limit_threads(threads: int | None) -> int:
    """Pins the process to ``threads`` CPUs (before JAX's first use, so XLA sizes its pools to them)."""
    if threads:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
    return len(os.sched_getaffinity(0))


def _call(runner: Runner, calls: int) -> float:
    """Seconds per call of ``calls`` calls of ``runner``, waiting for the device at the end."""
    start = time.perf_counter()
    for _ in range(calls):
        runner.state, outputs = runner.advance(runner.state)
    jax.block_until_ready((runner.state, outputs))
    return (time.perf_counter() - start) / calls


def time_in_turns(runners: list[Runner], repeats: int, calls: int = 1) -> list[Row]:
    """Each runner's first call, then ``repeats`` rounds of one block of ``calls`` calls per runner."""
    firsts = [_call(r, 1) for r in runners]
    best = [math.inf] * len(runners)
    for _ in range(repeats):
        for i, runner in enumerate(runners):
            best[i] = min(best[i], _call(runner, calls))
    return [Row(r.part, r.variant, r.batch, r.images, first, steady)
            for r, first, steady in zip(runners, firsts, best)]


def synthetic_data(num_images: int, num_classes: int, seed: int = 0):
    """Random uint8 images [N, 28, 28] and int32 labels [N], on the device (speed ignores content)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num_images, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, num_classes, num_images).astype(np.int32)
    return jax.device_put(images), jax.device_put(labels)


def jitted_step(compiler_options: dict | None):
    """``train.train_step`` jitted with these XLA options and the library's step key (of run key and step)."""
    @functools.partial(jax.jit, static_argnames="cfg", donate_argnames="state", compiler_options=compiler_options)
    def step(state: T.TrainState, batch, cfg: TrainConfig):
        return T.train_step(state, batch, jax.random.fold_in(state.key, state.step), cfg)
    return step


step_on_batch = jitted_step(T.COMPILER_OPTIONS)  # as the library compiles its steps
xla_default_step = jitted_step(None)  # XLA's default options: YNNPACK convolutions on the CPU


def step_runner(cfg: TrainConfig, num_classes: int, part: str, variant: str, step=step_on_batch) -> Runner:
    """The jitted ``train_step`` (``step``) on one device-resident batch, a fresh key each step."""
    model = make_model(num_classes, cfg.model)
    tx = make_optimizer(cfg, steps_per_epoch=1000)
    state = jax.jit(lambda key: T.create_train_state(key, model, tx))(jax.random.PRNGKey(0))
    images, labels = synthetic_data(cfg.batch_size, num_classes)
    batch = {"image": images, "label": labels}
    return Runner(part, variant, cfg.batch_size, cfg.batch_size, lambda s: step(s, batch, cfg), state)


def epoch_engine(name: str):
    """The library's epoch function: ``scan`` (one compiled program) or ``step`` (a loop of steps)."""
    return {"scan": P.train_epoch_population, "step": P.train_epoch_stepwise}[name]


def trained_per_epoch(num_images: int, cfg: TrainConfig) -> int:
    return T.steps_per_epoch(num_images, cfg.batch_size) * cfg.batch_size


def epoch_runner(cfg: TrainConfig, images, labels, num_classes: int, engine: str) -> Runner:
    """One epoch of a single seed with the ``engine`` epoch function."""
    state = P.create_population((0,), num_classes, cfg, images.shape[0])
    epoch = functools.partial(epoch_engine(engine), inputs={"image": images}, labels=labels, cfg=cfg)
    return Runner("epoch", ENGINE_ROWS[engine], cfg.batch_size, trained_per_epoch(images.shape[0], cfg), epoch, state)


def population_runners(cfg: TrainConfig, images, labels, num_classes: int, seeds, engine: str) -> list[Runner]:
    """``len(seeds)`` runs taking turns (as ``fit(parallel_seeds=False)``) and one vmapped population."""
    n, k = images.shape[0], len(seeds)
    epoch = functools.partial(epoch_engine(engine), inputs={"image": images}, labels=labels, cfg=cfg)

    def one_after_another(members):
        results = [epoch(m) for m in members]
        return [s for s, _ in results], [m for _, m in results]

    members = [P.create_population((s,), num_classes, cfg, n) for s in seeds]
    trained = trained_per_epoch(n, cfg) * k
    return [Runner("population", f"{k} runs in turn ({engine})", cfg.batch_size, trained, one_after_another, members),
            Runner("population", f"{k} seeds vmapped ({engine})", cfg.batch_size, trained, epoch,
                   P.create_population(seeds, num_classes, cfg, n))]


def alternative_runners(cfg: TrainConfig, images, labels, num_classes: int, seeds) -> list[Runner]:
    """The population's epoch as a loop of steps, each step one program holding a plain step per seed.

    Unlike ``vmap``, which turns the seeds' convolutions into grouped convolutions (slow on XLA:CPU),
    the unrolled program keeps every convolution ungrouped. (``lax.map`` over seeds is no alternative
    on the CPU: it is a while loop, the slow case of jax-ml/jax#12868.)
    """
    n, k = images.shape[0], len(seeds)
    one = lambda state, index: T.indexed_step(state, {"image": images}, labels, index, cfg)  # the library's step

    @functools.partial(jax.jit, donate_argnums=0)
    def unrolled(state, index):
        results = [one(P.unstack(state, i), index[i]) for i in range(k)]
        return jax.tree.map(lambda *xs: jnp.stack(xs), *results)

    def epoch(state):
        batches = P._epoch_plan_population(state, n, cfg)  # the library's epoch order
        metrics = []
        for i in range(batches.shape[1]):
            state, m = unrolled(state, batches[:, i])
            metrics.append(m)
        return state, metrics

    return [Runner("alternatives", f"{k} seeds unrolled (step)", cfg.batch_size, trained_per_epoch(n, cfg) * k,
                   epoch, P.create_population(seeds, num_classes, cfg, n))]


def ratios(rows: list[Row]) -> list[str]:
    """Speed-ups between rows of this run that answer the benchmark's questions."""
    speed = {(r.part, r.variant, r.batch): r.images_per_s for r in rows}
    lines = []

    def ratio(label, num, den):
        if num in speed and den in speed:
            lines.append(f"{label}: {speed[num] / speed[den]:.2f}x")

    for b in sorted({r.batch for r in rows}):
        ratio(f"step, augmentation off / on, batch {b}", ("step", "augment off", b), ("step", "augment on", b))
        ratio(f"step, library options / XLA default options (augment off), batch {b}", ("step", "augment off", b),
              ("step", "augment off, XLA default options", b))
        ratio(f"step, frozen trunk / fine-tuned, batch {b}", ("step", "frozen trunk, augment on", b),
              ("step", "augment on", b))
        ratio(f"step, bfloat16 / float32, batch {b}", ("bf16", "bfloat16, augment on", b), ("step", "augment on", b))
        ratio(f"epoch, scanned / loop of steps, batch {b}",
              ("epoch", "scanned epoch", b), ("epoch", "loop of steps", b))
        several = [r for r in rows if r.part in ("population", "alternatives") and r.batch == b]
        for base in [r for r in several if "in turn" in r.variant]:
            for other in several:
                if other is not base:
                    ratio(f"{other.variant} / {base.variant}, batch {b}",
                          (other.part, other.variant, b), (base.part, base.variant, b))
        for engine, epoch_row in ENGINE_ROWS.items():
            for r in several:
                if "vmapped" in r.variant and f"({engine})" in r.variant:
                    ratio(f"{r.variant} / 1 seed ({engine}), batch {b}",
                          (r.part, r.variant, b), ("epoch", epoch_row, b))
    return lines


def table(rows: list[Row]) -> str:
    lines = ["| part | variant | batch | images/call | first s | compile s | steady s | images/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.part} | {r.variant} | {r.batch} | {r.images} | {r.first_s:.2f} | "
                     f"{r.compile_s:.2f} | {r.steady_s:.3f} | {r.images_per_s:,.0f} |")
    return "\n".join(lines)


def report(rows: list[Row]) -> None:
    """Prints a part's rows as they are measured."""
    for r in rows:
        print(f"  {r.part:12s} {r.variant:28s} batch {r.batch:4d}: {r.images_per_s:9,.0f} images/s"
              f"  (compile {r.compile_s:.1f} s)", flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--parts", default=",".join(DEFAULT_PARTS),
                   help=f"comma-separated, from {', '.join(PARTS)} (default: %(default)s)")
    p.add_argument("--batch-sizes", default="128,512", help="of step and bf16 (default: %(default)s)")
    p.add_argument("--epoch-batch", type=int, default=128,
                   help="batch size of epoch and population (default: %(default)s)")
    p.add_argument("--epoch-images", type=int, default=4096, help="images in one epoch (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=5, help="population size (default: %(default)s)")
    p.add_argument("--steps", type=int, default=10, help="steps per timed block of step, bf16 (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3,
                   help="rounds of timed blocks (of --steps steps, or of one epoch) (default: %(default)s)")
    p.add_argument("--engine", choices=("auto", "scan", "step"), default="auto",
                   help="epoch engine of the population part; auto: scan on accelerators, step on the CPU, as fit")
    p.add_argument("--classes", type=int, default=62, help="output classes (default: %(default)s, as part 1)")
    p.add_argument("--threads", type=int, help="CPU threads (default: every CPU this process may use)")
    p.add_argument("--quick", action="store_true", help="batch 128 only, 2 rounds of 5 steps, 512-image epochs")
    p.add_argument("--json", help="also write the environment, rows and ratios to this JSON file")
    args = p.parse_args(argv)
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        p.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.quick:
        args.batch_sizes, args.steps, args.epoch_images, args.repeats = [128], 5, 512, 2
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    threads = limit_threads(args.threads)
    print(describe(threads), flush=True)
    base = TrainConfig()
    engine = args.engine if args.engine != "auto" else ("step" if jax.default_backend() == "cpu" else "scan")
    rows: list[Row] = []

    def measure(runners, calls=1):
        new = time_in_turns(runners, args.repeats, calls)
        report(new)
        rows.extend(new)

    for b in args.batch_sizes:
        runners = []
        if "step" in args.parts:
            runners.append(step_runner(dataclasses.replace(base, batch_size=b), args.classes, "step", "augment on"))
            runners.append(step_runner(dataclasses.replace(base, batch_size=b, augment=NO_AUGMENT), args.classes,
                                       "step", "augment off"))
            runners.append(step_runner(dataclasses.replace(base, batch_size=b, augment=NO_AUGMENT), args.classes,
                                       "step", "augment off, XLA default options", xla_default_step))
            runners.append(step_runner(dataclasses.replace(base, batch_size=b, freeze_trunk=True), args.classes,
                                       "step", "frozen trunk, augment on"))
        if "bf16" in args.parts:
            runners.append(step_runner(dataclasses.replace(base, batch_size=b, model=ModelConfig(dtype="bfloat16")),
                                       args.classes, "bf16", "bfloat16, augment on"))
        if runners:
            measure(runners, args.steps)
    cfg = dataclasses.replace(base, batch_size=args.epoch_batch)
    images, labels = synthetic_data(args.epoch_images, args.classes)
    seeds = tuple(range(args.seeds))
    if "epoch" in args.parts:
        measure([epoch_runner(cfg, images, labels, args.classes, e) for e in ("step", "scan")])
    if "population" in args.parts or "alternatives" in args.parts:
        runners = population_runners(cfg, images, labels, args.classes, seeds, engine)
        if "alternatives" in args.parts:
            runners += alternative_runners(cfg, images, labels, args.classes, seeds)
        measure(runners)

    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}\n")
    print(table(rows))
    found = ratios(rows)
    if found:
        print("\n" + "\n".join(found))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"environment": describe(threads), "ratios": found,
                       "rows": [dict(dataclasses.asdict(r), compile_s=r.compile_s, images_per_s=r.images_per_s)
                                for r in rows]}, out, indent=2)


if __name__ == "__main__":
    main()
