"""Watching a long run: tqdm progress bars on a terminal (tqdm, the ecosystem's standard, rather
than bars of our own), the study's ETA in the log, TensorBoard scalars on disk.

Bars draw on stderr only when stderr is a terminal, so CI logs and redirected output stay clean.

TensorBoard events are written with ``tensorboardX``: it writes the event-file format in pure
Python (numpy and protobuf), while the
alternatives need more: ``flax.metrics.tensorboard`` and ``clu`` import TensorFlow, and the
``tensorboard`` package brings a web server and grpc just to write a file.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm


def progress_bar(total: int | None, label: str, *, unit: str = "it", initial: int = 0, iterable=None, stream=None,
                 unit_scale: bool = False):
    """A tqdm bar with rate and ETA, on ``stream`` (stderr) only when it is a terminal; ``initial``
    counts items done before this process (a resumed run), which tqdm leaves out of the rate;
    ``unit_scale`` writes large counts with SI prefixes (1.2M).
    Commands log through ``tqdm.contrib.logging.logging_redirect_tqdm`` (``cli.main``), so that log
    lines print above the bar."""
    return tqdm(iterable, total=total, desc=label, unit=unit, initial=initial, file=stream, disable=None, leave=False,
                unit_scale=unit_scale, dynamic_ncols=True)


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss``: short enough for a status line."""
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def eta_seconds(done_here: int, left: int, elapsed: float) -> float | None:
    """Time left if the remaining items take as long as this process's items so far, on average."""
    return elapsed / done_here * left if done_here else None


class StudyMeter:
    """The whole study's progress in training images, against a plan (each part's ``planned_images``).

    ``fit`` reports every epoch (``count_trained``); the meter draws a bar on a terminal and logs
    one line at most every ``log_every`` seconds, with the share done, the time so far and an ETA
    at this process's rate so far. Every image weighs the same, whatever model learns it. Epochs
    that a resumed run had already trained shrink the plan instead of counting as done.
    """

    def __init__(self, planned: int, *, log_every: float = 60.0, clock=time.monotonic, stream=None):
        self.planned, self.done, self.log_every, self.clock = planned, 0, log_every, clock
        self.start = self.logged = clock()
        self.bar = progress_bar(planned, "study", unit="image", stream=stream, unit_scale=True)

    def add(self, images: int, *, trained_before: bool = False) -> None:
        if trained_before:
            self.planned -= images
            self.bar.total = self.planned
            self.bar.refresh()
            return
        self.done += images
        self.bar.update(images)
        if self.clock() - self.logged >= self.log_every:
            logging.getLogger("jaxcnn").info(self.line())
            self.logged = self.clock()

    def line(self) -> str:
        """``study: 41% of 3.10 M planned training images, 21:03 elapsed, ETA 30:12``."""
        elapsed = self.clock() - self.start
        left = max(self.planned - self.done, 0)
        share = min(self.done / self.planned, 1.0) if self.planned > 0 else 1.0
        eta = eta_seconds(self.done, left, elapsed)
        return (f"study: {share:.0%} of {self.planned / 1e6:.2f} M planned training images, "
                f"{format_duration(elapsed)} elapsed, ETA {'?' if eta is None else format_duration(eta)}")


_study: list[StudyMeter] = []  # the meter of the study running in this process, if any


@contextlib.contextmanager
def study_meter(planned: int, **kwargs):
    """While active, ``count_trained`` reports to a ``StudyMeter`` of ``planned`` images."""
    meter = StudyMeter(planned, **kwargs)
    _study.append(meter)
    try:
        yield meter
    finally:
        _study.remove(meter)
        meter.bar.close()


def count_trained(images: int, *, trained_before: bool = False) -> None:
    """Tells the running study's meter (if any) that ``images`` more were trained (or, with
    ``trained_before``, that a resumed run had trained them already)."""
    for meter in _study:
        meter.add(images, trained_before=trained_before)


def epoch_scalars(record: dict, seeds=None) -> dict[str, float]:
    """TensorBoard tags for one ``fit`` history record.

    A per-seed list ``val_accuracy: [a, b]`` becomes ``val_accuracy/seed_0`` … and
    ``val_accuracy/mean``; a number stays one tag. ``epoch`` and ``step`` are the x axis, not tags,
    and the first epoch's ``probes`` are left out (``metrics.jsonl`` keeps them).
    """
    scalars = {}
    for key, value in record.items():
        if key in ("epoch", "step", "probes"):
            continue
        if isinstance(value, (list, tuple)):
            names = seeds if seeds is not None else range(len(value))
            scalars.update({f"{key}/seed_{name}": float(v) for name, v in zip(names, value)})
            scalars[f"{key}/mean"] = float(np.mean(value))
        elif isinstance(value, (int, float)):
            scalars[key] = float(value)
    return scalars


class MetricWriter:
    """TensorBoard scalars per epoch, in the run's work directory beside ``metrics.jsonl``.

    ``first_epoch`` is the epoch this process starts at: events that an earlier, interrupted or
    overwritten run wrote for this epoch or later are hidden by TensorBoard (its ``purge_step``),
    so a resumed run's curves have no duplicates. ``tensorboard --logdir ckpts`` shows every run.
    """

    def __init__(self, logdir: str | Path, first_epoch: int = 1):
        from tensorboardX import SummaryWriter
        self.writer = SummaryWriter(str(logdir), purge_step=first_epoch)

    def write_epoch(self, record: dict, seeds=None) -> None:
        """Writes ``epoch_scalars(record)`` at step ``record["epoch"]``."""
        for tag, value in epoch_scalars(record, seeds).items():
            self.writer.add_scalar(tag, value, record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
