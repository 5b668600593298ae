"""The jaxcnn CNN in PyTorch: training images/s on the same machine, as a reference for the JAX step.

The same architecture as ``jaxcnn.model`` (two 3x3 conv without bias -> BatchNorm -> ReLU per block,
widths 32, 64, 128, a 2x2 max-pool after each block, flatten, dense 256 without bias -> BatchNorm ->
ReLU -> dropout 0.5, dense to the classes), the same batch, AdamW and label-smoothed cross-entropy,
uint8 images converted in the step as in ``train.to_float``. No augmentation: compare it with the
JAX step's "augment off" row. Eager, ``torch.compile`` and eager under bfloat16 autocast, NCHW-contiguous
and channels-last.

PyTorch is not a dependency of jaxcnn: install the CPU wheel for benchmarking only,
``pip install torch==2.13.0``. ``--with-jax`` also times ``jaxcnn.training.steps.train_step`` in the same run,
on the same threads, in turns with the PyTorch variants (see ``throughput.time_in_turns``).

    python benchmarks/torch_reference.py --threads 2 --with-jax
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from machine import describe  # beside this file
from throughput import Row, Runner, limit_threads, step_runner, table, time_in_turns, xla_default_step

MODES = ("eager", "compile", "eager-bf16")  # eager-bf16: eager under bfloat16 autocast


def make_model(num_classes: int, widths=(32, 64, 128), hidden: int = 256, dropout: float = 0.5) -> nn.Module:
    """``jaxcnn.model.CNN`` in PyTorch (BatchNorm momentum 0.1 here is Flax's 0.9)."""
    layers, channels = [], 1
    for width in widths:
        for _ in range(2):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        layers.append(nn.MaxPool2d(2))  # floors odd sizes, as Flax's VALID max-pool: 28, 14, 7 -> 3
    side = 28 // 2 ** len(widths)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * side * side, hidden, bias=False),
                         nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))


def make_train_step(model: nn.Module, optimizer, channels_last: bool, bf16: bool = False,
                    label_smoothing: float = 0.1):
    """``step(images uint8 [B, 28, 28], labels int64 [B]) -> loss``: one AdamW step (``bf16``: under
    bfloat16 autocast, float32 weights and loss)."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def step(images, labels):
        x = (images.unsqueeze(1).float() / 255.0).contiguous(memory_format=memory_format)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def torch_runner(batch: int, num_classes: int, mode: str, channels_last: bool) -> Runner:
    """A PyTorch training step on one fixed batch, in ``mode`` (one of ``MODES``); ``compile`` compiles
    at the first call."""
    compiled = mode == "compile"
    torch.manual_seed(0)
    model = make_model(num_classes).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    step = make_train_step(torch.compile(model, dynamic=False) if compiled else model, optimizer, channels_last,
                           bf16=mode == "eager-bf16")
    images = torch.randint(0, 256, (batch, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, num_classes, (batch,))
    variant = f"{mode}, {'channels-last' if channels_last else 'contiguous'}"
    return Runner("torch", variant, batch, batch, lambda _: (None, step(images, labels).item()), None)


def jax_runners(batch: int, num_classes: int) -> list[Runner]:
    """``jaxcnn.training.steps.train_step`` at the same batch size: augmentation off (as here) and on, as the library
    compiles it, and augmentation off with XLA's default options (YNNPACK convolutions on the CPU)."""
    from jaxcnn.config import NO_AUGMENT
    from jaxcnn.config import TrainConfig

    cfg = TrainConfig(batch_size=batch)
    return [step_runner(dataclasses.replace(cfg, augment=NO_AUGMENT), num_classes, "jax", "train_step, augment off"),
            step_runner(cfg, num_classes, "jax", "train_step, augment on"),
            step_runner(dataclasses.replace(cfg, augment=NO_AUGMENT), num_classes, "jax",
                        "train_step, augment off, XLA default", xla_default_step)]


def best(rows: list[Row], mode: str, batch: int) -> Row | None:
    """The faster memory layout of one PyTorch mode at one batch size."""
    found = [r for r in rows if r.part == "torch" and r.variant.split(",")[0] == mode and r.batch == batch]
    return max(found, key=lambda r: r.images_per_s, default=None)


def ratio_lines(rows: list[Row], batch_sizes) -> list[str]:
    lines = []
    for b in batch_sizes:
        eager, compiled, bf16 = (best(rows, mode, b) for mode in MODES)
        jax_off = [r for r in rows if r.part == "jax" and r.batch == b and "augment off" in r.variant]
        for ref in (eager, compiled, bf16):
            if ref:
                lines.append(f"batch {b}: best {ref.variant.split(',')[0]} layout: {ref.variant.split(', ')[1]}")
        if eager and compiled:
            lines.append(f"batch {b}: torch.compile / eager: {compiled.images_per_s / eager.images_per_s:.2f}x "
                         f"(compile {compiled.compile_s:.0f} s)")
        for ref in (eager, compiled, bf16):
            for row in jax_off if ref else ():
                lines.append(f"batch {b}: JAX {row.variant} / torch {ref.variant}: "
                             f"{row.images_per_s / ref.images_per_s:.2f}x")
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--batch-sizes", default="128,512", help="(default: %(default)s)")
    p.add_argument("--steps", type=int, default=10, help="steps per timed block (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3,
                   help="rounds of timed blocks; the best counts (default: %(default)s)")
    p.add_argument("--modes", default="eager,compile",
                   help=f"comma-separated, from {', '.join(MODES)} (default: %(default)s)")
    p.add_argument("--layouts", default="contiguous,channels-last", help="(default: %(default)s)")
    p.add_argument("--classes", type=int, default=62, help="output classes (default: %(default)s, as part 1)")
    p.add_argument("--threads", type=int,
                   help="CPU threads of both frameworks (default: every CPU this process may use)")
    p.add_argument("--with-jax", action="store_true", help="also time jaxcnn's train_step, in turns with PyTorch")
    p.add_argument("--quick", action="store_true", help="batch 128 only, 2 rounds of 5 steps")
    args = p.parse_args(argv)
    batch_sizes = [128] if args.quick else [int(b) for b in args.batch_sizes.split(",")]
    steps, repeats = (5, 2) if args.quick else (args.steps, args.repeats)
    threads = limit_threads(args.threads)
    torch.set_num_threads(threads)
    print(describe(threads), flush=True)
    print(f"torch: {torch.get_num_threads()} thread(s); JAX pinned to the same {threads} CPU(s)", flush=True)

    rows = []
    for b in batch_sizes:
        torch._dynamo.reset()  # compiled code of the previous batch size is not reused
        runners = jax_runners(b, args.classes) if args.with_jax else []
        runners += [torch_runner(b, args.classes, mode, layout == "channels-last")
                    for mode in args.modes.split(",") for layout in args.layouts.split(",")]
        for row in time_in_turns(runners, repeats, steps):
            rows.append(row)
            print(f"  {row.part:5s} {row.variant:26s} batch {b:4d}: {row.images_per_s:9,.0f} images/s"
                  f"  (first step {row.first_s:.1f} s)", flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}\n")
    print(table(rows))
    print("\n" + "\n".join(ratio_lines(rows, batch_sizes)))


if __name__ == "__main__":
    main()
