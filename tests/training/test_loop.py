"""The training loop: exact resume, refusing to clobber a run, divergence, unwritable work dirs.

One three-epoch run is trained once for the module; tests work on copies of its directory.
"""

import dataclasses
import hashlib
import json
import math
import os
import shutil
import signal

import chex
import jax
import numpy as np
import pytest

from jaxcnn.config import ModelConfig, TrainConfig
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.errors import JaxcnnError
from jaxcnn.evaluation.convergence import seconds_to_accuracy
from jaxcnn.probabilities import expected_calibration_error, softmax
from jaxcnn.rundir import RunExistsError
from jaxcnn.training import population as P
from jaxcnn.training.checkpoint import RunCheckpoints
from jaxcnn.training.loop import TrainingDiverged, epoch_chunking, fit, without_timing
from jaxcnn.training.steps import steps_per_epoch
from tests.tolerances import FLOAT64_CROSS_PROGRAM

CLASS_NAMES = ("0", "1", "A", "a")
CFG = TrainConfig(seeds=(0, 1), epochs=3, batch_size=16, eval_batch_size=32, warmup_epochs=1, checkpoint_every=0,
                  model=ModelConfig(widths=(4, 8), hidden=16))  # default augmentation: resume must replay it


def test_checkpoints_by_time_and_sigterm_saves_the_epoch_then_stops_and_resumes_exactly(finished, tmp_path,
                                                                                         monkeypatch):
    """Checkpoints an hour apart: only a SIGTERM (in epoch 2) and the last epoch write one."""
    _, uninterrupted, history = finished
    hourly = dataclasses.replace(CFG, checkpoint_every=3600)
    real_epoch = P.train_epoch_stepwise
    steps = steps_per_epoch(len(TRAIN), CFG.batch_size)

    def terminated_in_epoch_2(state, *args, **kwargs):
        if int(np.asarray(state.step)[0]) == steps:  # the first step of epoch 2
            os.kill(os.getpid(), signal.SIGTERM)
        return real_epoch(state, *args, **kwargs)

    monkeypatch.setattr(P, "train_epoch_stepwise", terminated_in_epoch_2)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM after epoch 2"):
        fit(TRAIN, VAL, hourly, tmp_path / "run")
    monkeypatch.setattr(P, "train_epoch_stepwise", real_epoch)
    assert signal.getsignal(signal.SIGTERM) == handler  # fit's handler only while it runs
    assert RunCheckpoints(tmp_path / "run" / "checkpoints", read_only=True).epochs() == [2]
    resumed, resumed_history = fit(TRAIN, VAL, hourly, tmp_path / "run", resume=True)
    assert RunCheckpoints(tmp_path / "run" / "checkpoints", read_only=True).epochs() == [2, 3]
    for field in ("params", "batch_stats", "opt_state", "step", "key"):
        chex.assert_trees_all_equal(getattr(resumed, field), getattr(uninterrupted, field), strict=True)
    assert without_seconds(resumed_history) == without_seconds(history)


def dataset(n: int, seed: int) -> ArrayDataset:
    """Random images with a class-dependent bright square, so the model has something to learn."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % len(CLASS_NAMES)).astype(np.int32)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for image, label in zip(images, labels):
        image[4 + 5 * label:10 + 5 * label, 8:20] = 255
    return ArrayDataset(images, labels, np.full(n, -1, np.int32), CLASS_NAMES)


TRAIN, VAL = dataset(64, 0), dataset(32, 1)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """``(workdir, state, history)`` of an uninterrupted three-epoch run."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    state, history = fit(TRAIN, VAL, CFG, workdir)
    return workdir, state, history


@pytest.fixture
def run_copy(finished, tmp_path):
    """A private copy of the finished run's work directory."""
    return shutil.copytree(finished[0], tmp_path / "run")


def snapshot(directory):
    """Every file under ``directory`` with the hash of its bytes."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def without_seconds(history):
    return without_timing(history)


def test_a_finished_run_leaves_checkpoints_config_and_log(finished):
    workdir, state, history = finished
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert np.asarray(state.step).tolist() == [12, 12]  # 64 / 16 = 4 steps an epoch, both seeds
    assert json.loads((workdir / "config.json").read_text())["epochs"] == 3
    logged = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert logged == history
    ckpts = RunCheckpoints(workdir / "checkpoints", read_only=True)
    assert ckpts.latest_epoch() == 3 and ckpts.read_meta()["class_names"] == list(CLASS_NAMES)
    ckpts.close()
    assert all(math.isfinite(x) for r in history for x in r["train_loss"] + r["val_loss"])


def test_each_validation_records_every_seeds_calibration_error(finished):
    workdir, state, history = finished
    logits, _ = P.each_member(P.evaluate_population, state, VAL.inputs(), VAL.labels, CFG.eval_batch_size)
    expected = [expected_calibration_error(p, VAL.labels) for p in softmax(np.asarray(logits))]
    np.testing.assert_allclose(history[-1]["val_ece"], expected, rtol=1e-6)  # the final state's, per seed
    assert all(len(r["val_ece"]) == len(CFG.seeds) and all(0 <= e <= 1 for e in r["val_ece"]) for r in history)


def test_without_validation_the_same_training_keeps_the_last_epoch(finished, tmp_path):
    _, state, history = finished
    alone, plain = fit(TRAIN, None, CFG, tmp_path / "run")
    assert [r["train_loss"] for r in plain] == [r["train_loss"] for r in history]  # validation changes nothing
    assert all(set(r) == {"epoch", "step", "train_loss", "train_accuracy", "seconds",
                                                        "compile_seconds"} for r in plain)
    chex.assert_trees_all_equal(alone.params, state.params)
    ckpts = RunCheckpoints(tmp_path / "run" / "checkpoints", read_only=True)
    assert ckpts.best_epoch() == ckpts.latest_epoch() == 3  # "best" is the last epoch: nothing to choose by
    ckpts.close()


def test_seconds_to_accuracy_are_the_same_whichever_model_compiles_the_shared_programs(tmp_path):
    """Two models of one program trained in either order: the first compiles, the second reuses;
    with compilation apart, each takes about as long to its first validation in both places."""
    cfg = dataclasses.replace(CFG, epochs=1)
    configs, train = {"x": cfg, "y": dataclasses.replace(cfg, seeds=(2, 3))}, dataset(128, 0)
    first, second, walls = {}, {}, {}
    for order in ("xy", "yx"):
        jax.clear_caches()  # each order starts cold
        for name in order:
            _, history = fit(train, VAL, configs[name], tmp_path / f"{order}-{name}")
            (first if name == order[0] else second)[name] = max(seconds_to_accuracy(history, 0.0))
            walls[(order, name)] = history[0]["seconds"]
            assert (history[0]["compile_seconds"] > 0) == (name == order[0])
    for name in "xy":
        assert first[name] < 3 * second[name] and second[name] < 3 * first[name], (first, second)
        # counted with its compilation, the first model's figure is at least ten times the second's
        assert walls[("xy" if name == "x" else "yx", name)] > 10 * second[name]


def test_an_epoch_is_chunks_of_one_length_probed_about_every_probe_every_steps():
    assert epoch_chunking(10, 0) == (10, 0) and epoch_chunking(10, 10) == (10, 0)
    assert epoch_chunking(9, 3) == (3, 1) and epoch_chunking(468, 50) == (39, 1)
    assert epoch_chunking(10, 4) == (2, 2) and epoch_chunking(467, 50) == (1, 50)  # a prime: chunks of one step


@pytest.mark.equivalence
def test_probes_validate_within_the_first_epoch_without_changing_training(tmp_path):
    """Probing cuts the epochs into chunks (other programs): compared in float64 (tests/tolerances.py)."""
    cfg = dataclasses.replace(CFG, model=dataclasses.replace(CFG.model, dtype="float64"))
    with jax.enable_x64(True):
        state, history = fit(TRAIN, VAL, cfg, tmp_path / "plain")
        probed_state, probed = fit(TRAIN, VAL, dataclasses.replace(cfg, probe_every=1), tmp_path / "probed")
        chex.assert_trees_all_close(probed_state.params, state.params, **FLOAT64_CROSS_PROGRAM)
    probes = probed[0]["probes"]
    assert [p["step"] for p in probes] == [1, 2, 3] and probed[0]["step"] == 4
    assert all(len(p["val_accuracy"]) == len(CFG.seeds) and p["seconds"] <= probed[0]["seconds"] for p in probes)
    assert all("probes" not in r for r in probed[1:]) and all("probes" not in r for r in history)
    np.testing.assert_allclose(probed[-1]["val_loss"], history[-1]["val_loss"], **FLOAT64_CROSS_PROGRAM)


def test_resume_equals_uninterrupted(finished, run_copy):
    """A run that died during epoch 3 (its epoch-3 checkpoint never written) resumes to the same state."""
    _, uninterrupted, history = finished
    shutil.rmtree(run_copy / "checkpoints" / "3")
    assert RunCheckpoints(run_copy / "checkpoints", read_only=True).latest_epoch() == 2
    resumed, resumed_history = fit(TRAIN, VAL, CFG, run_copy, resume=True)
    for field in ("params", "batch_stats", "opt_state", "step", "key"):
        chex.assert_trees_all_equal(getattr(resumed, field), getattr(uninterrupted, field), strict=True)
    assert resumed_history[:2] == history[:2]  # restored from the checkpoint, not retrained
    assert without_seconds(resumed_history) == without_seconds(history)
    assert len((run_copy / "metrics.jsonl").read_text().splitlines()) == 3


def test_an_existing_run_is_refused_and_left_untouched(run_copy):
    before = snapshot(run_copy)
    with pytest.raises(RunExistsError, match="--resume .* --overwrite"):
        fit(TRAIN, VAL, CFG, run_copy)
    assert snapshot(run_copy) == before


def test_overwrite_clears_the_old_run_before_training_again(run_copy, monkeypatch):
    """By the time the new run builds its models, nothing of the old run is left."""
    marker = run_copy / "checkpoints" / "left-by-the-old-run"
    marker.write_text("x")
    seen = {}

    def inspect_workdir(*args, **kwargs):
        seen["checkpoints"] = sorted(p.name for p in (run_copy / "checkpoints").iterdir())
        seen["config"] = json.loads((run_copy / "config.json").read_text())
        raise KeyboardInterrupt  # enough: the rest is an ordinary fresh run

    monkeypatch.setattr(P, "create_population", inspect_workdir)
    with pytest.raises(KeyboardInterrupt):
        fit(TRAIN, VAL, dataclasses.replace(CFG, epochs=1), run_copy, overwrite=True)
    assert seen["checkpoints"] == [] and seen["config"]["epochs"] == 1


def blow_up_weights(monkeypatch, epoch: int, when: str):
    """Makes every weight NaN ``before`` or ``after`` the given epoch's training, as an exploding
    update would; the real epoch function still runs."""
    real_epoch = P.train_epoch_stepwise
    steps = steps_per_epoch(len(TRAIN), CFG.batch_size)

    def epoch_fn(state, *args):
        this_epoch = int(np.asarray(state.step)[0]) // steps + 1
        nan = lambda s: s.replace(params=jax.tree.map(lambda p: p * np.nan, s.params))
        if this_epoch == epoch and when == "before":
            state = nan(state)
        state, metrics = real_epoch(state, *args)
        return (nan(state) if this_epoch == epoch and when == "after" else state), metrics

    monkeypatch.setattr(P, "train_epoch_stepwise", epoch_fn)


def test_divergence_raises_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    blow_up_weights(monkeypatch, epoch=2, when="before")
    with pytest.raises(TrainingDiverged, match=r"not finite at epoch 2 .*; kept the last good checkpoint \(epoch 1\)"):
        fit(TRAIN, VAL, CFG, tmp_path / "run")
    ckpts = RunCheckpoints(tmp_path / "run" / "checkpoints", read_only=True)
    assert ckpts.epochs() == [1]
    assert all(math.isfinite(x) for x in ckpts.read_meta()["history"][0]["train_loss"])
    target = jax.eval_shape(lambda: P.create_population(CFG.seeds, len(CLASS_NAMES), CFG, len(TRAIN)))
    kept = ckpts.restore(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), target))
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(kept.params))
    ckpts.close()


def test_weights_that_turn_nan_during_an_epoch_are_not_saved_as_good(tmp_path, monkeypatch):
    blow_up_weights(monkeypatch, epoch=1, when="after")
    with pytest.raises(TrainingDiverged, match=r"not finite at epoch 1 .*validation \[nan, nan\]"):
        fit(TRAIN, VAL, CFG, tmp_path / "run")
    assert RunCheckpoints(tmp_path / "run" / "checkpoints", read_only=True).epochs() == []


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if ``fit`` gets as far as building the models."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(P, "create_population", refuse)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_workdir_fails_before_training(tmp_path, no_training):
    workdir = tmp_path / "run"
    workdir.mkdir()
    workdir.chmod(0o555)
    try:
        with pytest.raises(JaxcnnError, match="cannot use it as the work directory") as err:
            fit(TRAIN, VAL, CFG, workdir)
    finally:
        workdir.chmod(0o755)
    assert str(workdir) in str(err.value)


def test_an_uncreatable_workdir_fails_before_training(tmp_path, no_training):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    workdir = blocker / "run"
    with pytest.raises(JaxcnnError) as err:
        fit(TRAIN, VAL, CFG, workdir)
    assert str(workdir) in str(err.value)


def test_resume_with_a_changed_config_is_refused_before_anything_is_written(run_copy, no_training):
    before = snapshot(run_copy)
    changed = dataclasses.replace(CFG, epochs=4, learning_rate=0.05)
    with pytest.raises(JaxcnnError, match=r"epochs: 3 -> 4; learning_rate: 0.002 -> 0.05"):
        fit(TRAIN, VAL, changed, run_copy, resume=True)
    assert snapshot(run_copy) == before


def test_a_run_with_its_checkpoints_gone_keeps_its_records(run_copy, no_training):
    shutil.rmtree(run_copy / "checkpoints")
    before = snapshot(run_copy)
    with pytest.raises(RunExistsError):
        fit(TRAIN, VAL, CFG, run_copy)
    assert snapshot(run_copy) == before


def test_ctrl_c_mid_epoch_keeps_the_checkpoints_and_resumes_exactly(finished, tmp_path, monkeypatch):
    _, uninterrupted, history = finished
    real_epoch = P.train_epoch_stepwise
    steps = steps_per_epoch(len(TRAIN), CFG.batch_size)

    def interrupted_in_epoch_3(state, *args, **kwargs):
        if int(np.asarray(state.step)[0]) // steps + 1 == 3:
            raise KeyboardInterrupt
        return real_epoch(state, *args, **kwargs)

    monkeypatch.setattr(P, "train_epoch_stepwise", interrupted_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        fit(TRAIN, VAL, CFG, tmp_path / "run")
    monkeypatch.setattr(P, "train_epoch_stepwise", real_epoch)
    assert RunCheckpoints(tmp_path / "run" / "checkpoints", read_only=True).epochs() == [1, 2]
    resumed, resumed_history = fit(TRAIN, VAL, CFG, tmp_path / "run", resume=True)
    for field in ("params", "batch_stats", "opt_state", "step", "key"):
        chex.assert_trees_all_equal(getattr(resumed, field), getattr(uninterrupted, field), strict=True)
    assert without_seconds(resumed_history) == without_seconds(history)
