"""Watching a long run: a progress bar with ETA on a terminal, TensorBoard scalars on disk.

The bar draws on stderr only when stderr is a terminal, so CI logs and redirected output stay
clean. While it is drawn, ``jaxcnn`` log records first clear its line, so log lines and the bar
do not mix.

TensorBoard events are written with ``tensorboardX``: it writes the event-file format in pure
Python (numpy and protobuf), while the
alternatives need more: ``flax.metrics.tensorboard`` and ``clu`` import TensorFlow, and the
``tensorboard`` package brings a web server and grpc just to write a file.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path

import numpy as np

BAR_WIDTH = 24
CLEAR_LINE = "\r\x1b[K"


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss``: short enough for a status line."""
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def bar_text(label: str, done: int, total: int, elapsed: float, eta: float | None, unit: str = "",
             note: str = "") -> str:
    """One status line: ``label |####      | 3/10 epochs  0:12 elapsed, ETA 0:28  note``."""
    filled = min(BAR_WIDTH * done // total, BAR_WIDTH) if total else BAR_WIDTH
    count = f"{done}/{total}" + (f" {unit}" if unit else "")
    left = "?" if eta is None else format_duration(eta)
    line = f"{label} |{'#' * filled}{' ' * (BAR_WIDTH - filled)}| {count}  {format_duration(elapsed)} elapsed, ETA {left}"
    return f"{line}  {note}" if note else line


def eta_seconds(done_here: int, left: int, elapsed: float) -> float | None:
    """Time left if the remaining items take as long as this process's items so far, on average."""
    return elapsed / done_here * left if done_here else None


class Progress:
    """A redrawn status line for ``total`` items; silent unless ``stream`` is a terminal.

    ``initial`` counts items already done before this process (a resumed run): they are shown
    but not used for the ETA. Use as a context manager, or call ``close``.
    """

    def __init__(self, total: int, label: str, *, unit: str = "", initial: int = 0, stream=None,
                 clock=time.monotonic):
        self.total, self.label, self.unit, self.clock = total, label, unit, clock
        self.stream = sys.stderr if stream is None else stream
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.initial = self.done = initial
        self.start = clock()
        self.drawn = False
        self._logger = logging.getLogger("jaxcnn")
        if self.enabled:
            self._logger.addFilter(self._clear_before_log)
            self._draw("")

    def update(self, count: int = 1, note: str = "") -> None:
        """``count`` more items done; ``note`` (e.g. the last accuracy) is shown after the ETA."""
        self.done += count
        if self.enabled:
            self._draw(note)

    def close(self) -> None:
        """Erases the bar and stops clearing lines for the logger."""
        if self.enabled:
            self._clear()
            self._logger.removeFilter(self._clear_before_log)
            self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _draw(self, note: str) -> None:
        elapsed = self.clock() - self.start
        eta = eta_seconds(self.done - self.initial, self.total - self.done, elapsed)
        self.stream.write(CLEAR_LINE + bar_text(self.label, self.done, self.total, elapsed, eta, self.unit, note))
        self.stream.flush()
        self.drawn = True

    def _clear(self) -> None:
        if self.drawn:
            self.stream.write(CLEAR_LINE)
            self.stream.flush()
            self.drawn = False

    def _clear_before_log(self, record) -> bool:
        self._clear()
        return True


def track(items, label: str, *, total: int | None = None, unit: str = "", stream=None):
    """Yields ``items`` while a ``Progress`` counts them (e.g. images being preprocessed)."""
    total = len(items) if total is None else total
    with Progress(total, label, unit=unit, stream=stream) as bar:
        for item in items:
            yield item
            bar.update()


class StudyMeter:
    """The whole study's progress in training images, against a plan (each part's ``planned_images``).

    ``fit`` reports every epoch (``count_trained``); the meter logs one line at most every
    ``log_every`` seconds, with the share done, the time so far and an ETA at this process's rate
    so far. Every image weighs the same, whatever model learns it. Epochs that a resumed run had
    already trained shrink the plan instead of counting as done.
    """

    def __init__(self, planned: int, *, log_every: float = 60.0, clock=time.monotonic):
        self.planned, self.done, self.log_every, self.clock = planned, 0, log_every, clock
        self.start = self.logged = clock()

    def add(self, images: int, *, trained_before: bool = False) -> None:
        if trained_before:
            self.planned -= images
            return
        self.done += images
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
