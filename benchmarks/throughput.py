"""Training throughput of jaxcnn: images per second in steady state, compile time reported apart.

Parts (``--parts``, comma-separated; default all but ``alternatives``):

- ``step``: the jitted ``train.train_step`` alone at each ``--batch-sizes``, augmentation on and off;
- ``epoch``: one epoch of ``--epoch-images`` images, a Python loop of jitted steps
  (``train_epoch_stepwise``) against one scanned program (``train_epoch_population``);
- ``population``: ``--seeds`` separate runs one after another against one vmapped population,
  with the epoch engine ``fit`` uses by default on this backend (``--engine``);
- ``bf16``: the step with ``ModelConfig(dtype="bfloat16")``;
- ``alternatives``: other ways of training several seeds in one program (investigation, CPU).

Every measurement calls the library's own functions on synthetic data held on the device. A row's
``first s`` is the first call (compile and one run); ``compile s`` is that less one steady call;
``steady s`` is the best of ``--repeats`` timed blocks, per call. Ratios are between rows of the
same run. ``--quick`` is a short run of every default part.

    python benchmarks/throughput.py --quick
    python benchmarks/throughput.py --parts step --batch-sizes 128,512 --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import train as T
from jaxcnn.augment import NO_AUGMENT
from jaxcnn.config import ModelConfig, TrainConfig

ENGINE_ROWS = {"scan": "scanned epoch", "step": "loop of steps"}  # the epoch part's name for each engine
PARTS = ("step", "epoch", "population", "bf16", "alternatives")
DEFAULT_PARTS = ("step", "epoch", "population", "bf16")


@dataclasses.dataclass
class Row:
    part: str
    variant: str
    batch: int
    images: int  # images trained per timed call
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


def synthetic_data(num_images: int, num_classes: int, seed: int = 0):
    """Random uint8 images [N, 28, 28] and int32 labels [N], on the device (speed ignores content)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num_images, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, num_classes, num_images).astype(np.int32)
    return jax.device_put(images), jax.device_put(labels)


def measure(advance, state, repeats: int, calls: int = 1):
    """Times ``advance(state) -> (state, metrics)``: the first call, then the best of ``repeats`` blocks.

    Returns (first call s, steady s per call); the steady time is the fastest block of ``calls``
    calls divided by ``calls``, the least disturbed by other work on a shared machine.
    """
    start = time.perf_counter()
    state, metrics = advance(state)
    jax.block_until_ready((state, metrics))
    first = time.perf_counter() - start
    blocks = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            state, metrics = advance(state)
        jax.block_until_ready((state, metrics))
        blocks.append((time.perf_counter() - start) / calls)
    return first, min(blocks)


def bench_step(cfg: TrainConfig, num_classes: int, steps: int, repeats: int, variant: str,
               part: str = "step") -> Row:
    """The jitted ``train_step`` on one device-resident batch, a fresh key each step."""
    model = T.make_model(num_classes, cfg.model)
    tx = T.make_optimizer(cfg, steps_per_epoch=1000)
    state = jax.jit(lambda key: T.create_train_state(key, model, tx))(jax.random.PRNGKey(0))
    images, labels = synthetic_data(cfg.batch_size, num_classes)
    batch = {"image": images, "label": labels}
    step = jax.jit(T.train_step, static_argnames="cfg", donate_argnames="state")
    keys = iter(np.asarray(jax.random.split(jax.random.PRNGKey(1), steps * repeats + 1)))
    first, steady = measure(lambda s: step(s, batch, next(keys), cfg=cfg), state, repeats, steps)
    return Row(part, variant, cfg.batch_size, cfg.batch_size, first, steady)


def epoch_engine(name: str):
    """The library's epoch function: ``scan`` (one compiled program) or ``step`` (a loop of steps)."""
    return {"scan": T.train_epoch_population, "step": T.train_epoch_stepwise}[name]


def bench_epoch(cfg: TrainConfig, images, labels, num_classes: int, engine: str, repeats: int) -> Row:
    """One epoch of a single seed with the ``engine`` epoch function."""
    state = T.create_population((0,), num_classes, cfg, images.shape[0])
    epoch = functools.partial(epoch_engine(engine), images=images, labels=labels, cfg=cfg)
    first, steady = measure(epoch, state, repeats)
    trained = T.steps_per_epoch(images.shape[0], cfg.batch_size) * cfg.batch_size
    return Row("epoch", ENGINE_ROWS[engine], cfg.batch_size, trained, first, steady)


def bench_population(cfg: TrainConfig, images, labels, num_classes: int, seeds, engine: str,
                     repeats: int) -> list[Row]:
    """``len(seeds)`` runs taking turns (as ``fit(parallel_seeds=False)``) vs one vmapped population."""
    epoch = functools.partial(epoch_engine(engine), images=images, labels=labels, cfg=cfg)
    trained = T.steps_per_epoch(images.shape[0], cfg.batch_size) * cfg.batch_size * len(seeds)

    def one_after_another(members):
        results = [epoch(m) for m in members]
        return [s for s, _ in results], [m for _, m in results]

    members = [T.create_population((s,), num_classes, cfg, images.shape[0]) for s in seeds]
    sequential = measure(one_after_another, members, repeats)
    population = T.create_population(seeds, num_classes, cfg, images.shape[0])
    vmapped = measure(epoch, population, repeats)
    k = len(seeds)
    return [Row("population", f"{k} runs in turn ({engine})", cfg.batch_size, trained, *sequential),
            Row("population", f"{k} seeds vmapped ({engine})", cfg.batch_size, trained, *vmapped)]


def bench_alternatives(cfg: TrainConfig, images, labels, num_classes: int, seeds, repeats: int) -> list[Row]:
    """Other programs for a population step on the CPU, each jitted once and looped over an epoch.

    ``unrolled``: one program holding a plain step per seed (no grouped convolutions);
    ``lax.map``: the same steps as a loop over seeds inside one program.
    """
    k, n = len(seeds), images.shape[0]
    plan = T._epoch_plan_population  # noqa: SLF001 - the library's own epoch order, reused
    one = lambda state, index: T._indexed_step(state, images, labels, index, cfg)  # noqa: SLF001

    def unrolled(state, index):
        results = [one(T.unstack(state, i), index[i]) for i in range(k)]
        return jax.tree.map(lambda *xs: jnp.stack(xs), *results)

    programs = {"unrolled": unrolled, "lax.map": lambda state, index: jax.lax.map(lambda a: one(*a), (state, index))}
    rows = []
    for name, program in programs.items():
        step = jax.jit(program, donate_argnums=0)

        def epoch(state):
            batches = plan(state, n, cfg)
            metrics = []
            for i in range(batches.shape[1]):
                state, m = step(state, batches[:, i])
                metrics.append(m)
            return state, metrics

        population = T.create_population(seeds, num_classes, cfg, n)
        trained = T.steps_per_epoch(n, cfg.batch_size) * cfg.batch_size * k
        rows.append(Row("alternatives", f"{k} seeds {name} (step)", cfg.batch_size, trained,
                        *measure(epoch, population, repeats)))
    return rows


def ratios(rows: list[Row]) -> list[str]:
    """Speed-ups between rows of this run that answer the benchmark's questions."""
    speed = {(r.part, r.variant, r.batch): r.images_per_s for r in rows}
    lines = []

    def ratio(label, num, den):
        if num in speed and den in speed:
            lines.append(f"{label}: {speed[num] / speed[den]:.2f}x")

    for b in sorted({r.batch for r in rows}):
        ratio(f"step, augmentation off / on, batch {b}", ("step", "augment off", b), ("step", "augment on", b))
        ratio(f"step, bfloat16 / float32, batch {b}", ("bf16", "bfloat16, augment on", b), ("step", "augment on", b))
        ratio(f"epoch, scanned / loop of steps, batch {b}", ("epoch", "scanned epoch", b), ("epoch", "loop of steps", b))
        pops = [r for r in rows if r.part in ("population", "alternatives") and r.batch == b]
        for base in [r for r in pops if "in turn" in r.variant]:
            for other in pops:
                if other is not base:
                    ratio(f"{other.variant} / {base.variant}, batch {b}",
                          (other.part, other.variant, b), (base.part, base.variant, b))
        for engine, epoch_row in ENGINE_ROWS.items():
            for r in pops:
                if "vmapped" in r.variant and f"({engine})" in r.variant:
                    ratio(f"{r.variant} / 1 seed ({engine}), batch {b}", (r.part, r.variant, b), ("epoch", epoch_row, b))
    return lines


def table(rows: list[Row]) -> str:
    lines = ["| part | variant | batch | images/call | first s | compile s | steady s | images/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.part} | {r.variant} | {r.batch} | {r.images} | {r.first_s:.2f} | "
                     f"{r.compile_s:.2f} | {r.steady_s:.3f} | {r.images_per_s:,.0f} |")
    return "\n".join(lines)


def environment(threads: int) -> str:
    device = jax.devices()[0]
    return (f"jax {jax.__version__} on {jax.default_backend()} ({device.device_kind}, "
            f"{jax.device_count()} device(s)); {threads} CPU thread(s) of {os.cpu_count()}; "
            f"python {platform.python_version()}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default=",".join(DEFAULT_PARTS),
                   help=f"comma-separated, from {', '.join(PARTS)} (default: %(default)s)")
    p.add_argument("--batch-sizes", default="128,512", help="for step and bf16 (default: %(default)s)")
    p.add_argument("--epoch-batch", type=int, default=128, help="batch size of epoch, population (default: %(default)s)")
    p.add_argument("--epoch-images", type=int, default=4096, help="images in one epoch (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=5, help="population size (default: %(default)s)")
    p.add_argument("--steps", type=int, default=10, help="steps per timed block of step and bf16 (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed blocks (of --steps steps, or of one epoch); the best counts (default: %(default)s)")
    p.add_argument("--engine", choices=("auto", "scan", "step"), default="auto",
                   help="epoch engine of the population part; auto: scan on accelerators, step on the CPU, as fit")
    p.add_argument("--classes", type=int, default=62, help="output classes (default: %(default)s, part 1)")
    p.add_argument("--threads", type=int, help="CPU threads (default: every CPU this process may use)")
    p.add_argument("--quick", action="store_true", help="batch 128 only, 2 blocks of 5 steps, 512-image epochs")
    p.add_argument("--json", help="also write the rows and ratios to this JSON file")
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
    print(environment(threads), flush=True)
    base = TrainConfig()
    engine = args.engine if args.engine != "auto" else ("step" if jax.default_backend() == "cpu" else "scan")
    rows: list[Row] = []

    def record(new):
        for row in new if isinstance(new, list) else [new]:
            rows.append(row)
            print(f"  {row.part:12s} {row.variant:30s} batch {row.batch:4d}: {row.images_per_s:9,.0f} images/s"
                  f"  (compile {row.compile_s:.1f} s)", flush=True)

    for b in args.batch_sizes:
        if "step" in args.parts:
            record(bench_step(dataclasses.replace(base, batch_size=b), args.classes, args.steps, args.repeats,
                              "augment on"))
            record(bench_step(dataclasses.replace(base, batch_size=b, augment=NO_AUGMENT), args.classes,
                              args.steps, args.repeats, "augment off"))
        if "bf16" in args.parts:
            cfg = dataclasses.replace(base, batch_size=b, model=ModelConfig(dtype="bfloat16"))
            record(bench_step(cfg, args.classes, args.steps, args.repeats, "bfloat16, augment on", part="bf16"))
    cfg = dataclasses.replace(base, batch_size=args.epoch_batch)
    images, labels = synthetic_data(args.epoch_images, args.classes)
    seeds = tuple(range(args.seeds))
    if "epoch" in args.parts:
        record(bench_epoch(cfg, images, labels, args.classes, "step", args.repeats))
        record(bench_epoch(cfg, images, labels, args.classes, "scan", args.repeats))
    if "population" in args.parts:
        record(bench_population(cfg, images, labels, args.classes, seeds, engine, args.repeats))
    if "alternatives" in args.parts:
        record(bench_alternatives(cfg, images, labels, args.classes, seeds, args.repeats))

    print()
    print(table(rows))
    found = ratios(rows)
    if found:
        print("\n" + "\n".join(found))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"environment": environment(threads), "ratios": found,
                       "rows": [dict(dataclasses.asdict(r), compile_s=r.compile_s, images_per_s=r.images_per_s)
                                for r in rows]}, out, indent=2)


if __name__ == "__main__":
    main()
