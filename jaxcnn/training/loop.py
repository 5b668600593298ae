"""The training loop: seeds side by side, Orbax checkpoints at epoch ends, resumable.

A run lives in a work directory: ``checkpoints/`` (Orbax), ``config.json`` (the resolved config)
and ``metrics.jsonl`` (one line per epoch, for watching a run live). A checkpoint is written at
the end of an epoch once ``cfg.checkpoint_every`` seconds have passed since the last one, after
the last epoch, and after a SIGTERM (then the run stops), so fast epochs do not wait on the disk.
Everything random is a function of (seed, step), so ``resume=True`` after an interruption
reproduces an uninterrupted run from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh

from jaxcnn.compilation import CompileClock
from jaxcnn.config import TrainConfig, defaults_of, to_dict
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.errors import JaxcnnError
from jaxcnn.probabilities import expected_calibration_error, softmax, softmax_mean
from jaxcnn.processes import agree, is_primary, to_host
from jaxcnn.progress import MetricWriter, count_trained, progress_bar
from jaxcnn.rundir import claim, write_json
from jaxcnn.training import population as P
from jaxcnn.training.checkpoint import RunCheckpoints
from jaxcnn.training.losses import objective
from jaxcnn.training.sharding import on_devices, training_mesh
from jaxcnn.training.steps import TrainState, program_config, steps_per_epoch

logger = logging.getLogger("jaxcnn")


class TrainingDiverged(JaxcnnError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def fit(train: ArrayDataset, val: ArrayDataset | None, cfg: TrainConfig, workdir: str | Path, *,
        resume: bool = False, overwrite: bool = False,
        init: Callable[[TrainState], TrainState] | None = None, meta: dict | None = None,
        parallel_seeds: bool | None = None, scan_epochs: bool | None = None):
    """Trains one model per seed in ``cfg.seeds`` and validates each epoch on ``val``.

    ``val=None``: no data is held out (a final model trained on everything); nothing is validated
    and the "best" checkpoint is the latest epoch. Otherwise "best" is the best of the saved epochs.

    ``init`` may change the fresh population (e.g. graft a pretrained trunk) before training.
    ``meta``: more JSON saved with every checkpoint, e.g. how the images were preprocessed, so that
    evaluation prepares new images the same way, or which checkpoint a grafted trunk came from; it
    is part of the run's config, so a resumed run refuses another.
    ``parallel_seeds``: vmap the seeds in one program (default on accelerators); otherwise they
    take turns. ``scan_epochs``: an epoch as one scanned program (default on accelerators), else
    step by step (faster on XLA:CPU, see ``population.train_epoch_stepwise``). With several devices
    (``cfg.devices``, default all), every batch is split over them (``sharding.training_mesh``).
    Returns ``(state, history)``: the final population state and one record per epoch; a record's
    ``seconds`` are wall seconds, and ``compile_seconds`` the part of them jax spent compiling
    (``CompileClock``), so that training time is timed apart from a first call's compilation.
    """
    workdir = Path(workdir)
    mesh = training_mesh(cfg)  # before anything is written: a bad device count is refused first
    on_cpu = jax.default_backend() == "cpu"
    scan_epochs = (not on_cpu) if scan_epochs is None else scan_epochs
    claim(workdir, "fit", {**to_dict(cfg), **({"meta": meta} if meta else {})}, defaults=defaults_of(cfg),
          resume=resume, overwrite=overwrite)
    write_json(workdir / "config.json", to_dict(cfg))
    with RunCheckpoints(workdir / "checkpoints") as ckpts, jax.set_mesh(mesh) if mesh else contextlib.nullcontext():
        return _train(_Run(train, val, cfg, workdir, ckpts, resume, init, meta or {}, parallel_seeds, scan_epochs,
                           mesh))


def _check_finite(record: dict, workdir: Path, ckpts) -> None:
    """Raises TrainingDiverged when an epoch's losses are not finite; the last good checkpoint stays."""
    if not math.isfinite(sum(record["train_loss"]) + sum(record.get("val_loss", []))):
        raise TrainingDiverged(f"{workdir}: loss is not finite at epoch {record['epoch']} (train "
                               f"{record['train_loss']}, validation {record.get('val_loss', '-')}); "
                               f"kept the last good checkpoint (epoch {ckpts.latest_epoch()})")


@dataclasses.dataclass(frozen=True)
class _Run:
    """What ``fit`` hands ``_train``: its arguments, resolved, and the open checkpoints and mesh."""

    train: ArrayDataset
    val: ArrayDataset | None
    cfg: TrainConfig
    workdir: Path
    ckpts: RunCheckpoints
    resume: bool
    init: Callable[[TrainState], TrainState] | None
    meta: dict
    parallel_seeds: bool | None
    scan_epochs: bool
    mesh: Mesh | None


def _start(run: _Run) -> tuple[TrainState, list[dict]]:
    """The fresh population (``init`` applied) and no history, or with ``resume`` the latest checkpoint's."""
    state = P.create_population(run.cfg.seeds, run.train.num_classes, run.cfg, len(run.train))
    if run.init is not None:
        state = run.init(state)
    history = []
    if run.resume and run.ckpts.latest_epoch() is not None:
        state = run.ckpts.restore(state)
        history = run.ckpts.read_meta()["history"]
        logger.info("resumed %s at epoch %d", run.workdir, len(history))
    return state, history


def _train(run: _Run):
    """``fit`` once the work directory is claimed; ``run.ckpts`` is closed by the caller, error or not."""
    train, val, cfg, workdir, ckpts, mesh = run.train, run.val, run.cfg, run.workdir, run.ckpts, run.mesh
    state, history = _start(run)
    count_trained(trained_images(len(train), cfg, len(history)), trained_before=True)
    _rewrite_log(workdir / "metrics.jsonl", history)

    state = on_devices(state, mesh)
    inputs, labels = on_devices((train.inputs(cfg.model.page_geometry), train.labels), mesh)
    epoch_fn = P.train_epoch_population if run.scan_epochs else P.train_epoch_stepwise
    program = program_config(cfg)  # runs that differ only outside the program share its compilation
    loss = on_devices(objective(cfg, train.num_classes), mesh)
    validate = _validator(val, cfg, run.parallel_seeds, mesh)
    steps = steps_per_epoch(len(train), cfg.batch_size)
    chunk, probe_stride = epoch_chunking(steps, cfg.probe_every if val is not None else 0)
    primary = is_primary()  # of several processes, only process 0 writes the logs
    saved_at = time.monotonic()
    with MetricWriter(workdir, first_epoch=len(history) + 1) if primary else contextlib.nullcontext() as writer, \
            progress_bar(cfg.epochs, workdir.name, unit="epoch", initial=len(history)) as bar, _StopRequest() as stop, \
            CompileClock() as clock:
        for epoch in range(len(history) + 1, cfg.epochs + 1):
            start = time.perf_counter()
            chunk_metrics, probes = [], []
            for i in range(1, steps // chunk + 1):
                state, metrics = P.each_member(epoch_fn, state, inputs, labels, program,
                                               None if chunk == steps else chunk, loss, parallel=run.parallel_seeds)
                chunk_metrics.append(metrics)
                if epoch == 1 and probe_stride and i % probe_stride == 0 and i < steps // chunk:
                    probes.append(timed(validate(state), clock, start))
            train_metrics = P.host_metrics(P.mean_of(chunk_metrics))  # one transfer per epoch
            record = {"epoch": epoch, **validate(state), "train_loss": train_metrics["loss"],
                      "train_accuracy": train_metrics["accuracy"]}
            if probes:
                record["probes"] = probes
            record = timed(record, clock, start)
            _check_finite(record, workdir, ckpts)
            history.append(record)
            stopping = agree(stop.requested)  # process 0 decides for all: a save is collective
            if agree(epoch == cfg.epochs or stopping or time.monotonic() - saved_at >= cfg.checkpoint_every):
                ckpts.save(epoch, state, {**run.meta, "history": history, "config": to_dict(cfg),
                                          "class_names": list(train.class_names)},
                           epoch if val is None else record["val_accuracy_ensemble"])
                saved_at = time.monotonic()
            if primary:
                with open(workdir / "metrics.jsonl", "a") as log:
                    log.write(json.dumps(record) + "\n")
                writer.write_epoch(record, cfg.seeds)
            note = f"val acc {record['val_accuracy_ensemble']:.4f}" if val is not None else "no validation"
            logger.info("epoch %d/%d  loss %.4f  %s  %.1fs", epoch, cfg.epochs, np.mean(record["train_loss"]),
                        note, record["seconds"])
            bar.set_postfix_str(note, refresh=False)
            bar.update()
            count_trained(trained_images(len(train), cfg, 1))
            if stopping:
                raise KeyboardInterrupt(f"{workdir}: stopped by SIGTERM after epoch {epoch}, its checkpoint saved")
    return state, history


def trained_images(num_examples: int, cfg: TrainConfig, epochs: int | None = None) -> int:
    """Images that ``fit`` trains on in ``epochs`` (default ``cfg.epochs``) over ``num_examples``,
    all seeds together: whole batches only."""
    epochs = cfg.epochs if epochs is None else epochs
    return len(cfg.seeds) * epochs * steps_per_epoch(num_examples, cfg.batch_size) * cfg.batch_size


TIMING_KEYS = ("seconds", "compile_seconds")  # of a record: how long it took, not what it learned


def timed(record: dict, clock: CompileClock, start: float) -> dict:
    """``record`` with the wall ``seconds`` since ``start`` and, of those, the ``compile_seconds``
    that jax spent tracing and compiling programs (a first epoch's, or a first probe's)."""
    now = time.perf_counter()
    return {**record, "seconds": now - start, "compile_seconds": clock.seconds_between(start, now)}


def without_timing(history: list[dict]) -> list[dict]:
    """``history`` without its ``TIMING_KEYS``: what two runs of the same training must share."""
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in history]


class _StopRequest:
    """While active (in the main thread), SIGTERM asks the loop to save at the end of the epoch and stop."""

    requested = False

    def __enter__(self):
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._request)
        return self

    def _request(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def epoch_chunking(steps: int, probe_every: int) -> tuple[int, int]:
    """``(chunk, stride)``: every epoch runs as ``steps // chunk`` calls of one compiled chunk, the
    largest divisor of ``steps`` not above ``probe_every`` (the whole epoch when 0), and the first
    epoch is validated after every ``stride``-th chunk, about every ``probe_every`` steps (0: never).
    Chunks of one length are one program, so probes add no compilation."""
    if probe_every <= 0 or probe_every >= steps:
        return steps, 0
    chunk = max(d for d in range(1, probe_every + 1) if steps % d == 0)
    return chunk, max(1, round(probe_every / chunk))


def _validator(val: ArrayDataset | None, cfg: TrainConfig, parallel_seeds, mesh):
    """state -> the validation part of an epoch's record (only the step when there is no ``val``)."""
    if val is None:
        return lambda state: {"step": int(to_host(state.step)[0])}
    inputs, labels = on_devices((val.inputs(cfg.model.page_geometry), val.labels), mesh)
    return lambda state: _validation_record(
        state, P.each_member(P.evaluate_population, state, inputs, labels, cfg.eval_batch_size,
                             parallel=parallel_seeds), val.labels)


def _validation_record(state, outputs, val_labels) -> dict:
    """Step, per-seed validation loss, accuracy and calibration error (ECE), and the seeds' ensemble accuracy."""
    logits, losses = to_host(outputs)
    return {
        "step": int(to_host(state.step)[0]),
        "val_loss": losses.mean(1).tolist(),
        "val_accuracy": (logits.argmax(-1) == val_labels).mean(1).tolist(),
        "val_ece": [expected_calibration_error(probs, val_labels) for probs in softmax(logits)],
        "val_accuracy_ensemble": float((softmax_mean(logits).argmax(-1) == val_labels).mean()),
    }


def _rewrite_log(path: Path, history: list) -> None:
    if is_primary():
        path.write_text("".join(json.dumps(r) + "\n" for r in history))
