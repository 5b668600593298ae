"""One run over two processes (``jax.distributed``, gloo CPU collectives on 127.0.0.1): the same
model as one process with two devices, and every file written once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jaxcnn.training.checkpoint import load_run
from tests.tolerances import FLOAT64_CROSS_PROGRAM

pytestmark = pytest.mark.equivalence  # two programs compared: CI runs these again on one core

# Run in each process: the JAXCNN_* variables decide whether it joins a distributed run. In float64, so
# that the two all-reduces (gloo between processes, XLA's in one) cannot round Adam's steps apart.
SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np
    from jaxcnn.processes import initialize_from_environment, to_host
    initialize_from_environment()
    import jax
    from jaxcnn.config import ModelConfig, TrainConfig
    from jaxcnn.data.dataset import ArrayDataset
    from jaxcnn.training.loop import fit

    def digits(n, seed):
        rng = np.random.default_rng(seed)
        return ArrayDataset(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.int32),
                            np.full(n, -1, np.int32), tuple("0123456789"))

    cfg = TrainConfig(seeds=(0, 1), epochs=2, batch_size=16, learning_rate=1e-2, warmup_epochs=0,
                      model=ModelConfig(widths=(4, 8), hidden=16, dtype="float64"))
    state, history = fit(digits(64, 0), digits(40, 1), cfg, Path(sys.argv[1]))
    print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(), "devices": jax.device_count(),
                      "history": [{k: r[k] for k in ("train_loss", "val_loss", "val_accuracy")} for r in history],
                      "kernel": to_host(state.params["head"]["logits"]["kernel"]).tolist()}))
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(workdir, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(workdir)], env={**os.environ, "JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": "1", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def report(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The run over two processes (one CPU device each) and the same run in one process with two devices."""
    root = tmp_path_factory.mktemp("distributed")
    coordinator = {"JAXCNN_COORDINATOR": f"127.0.0.1:{free_port()}", "JAXCNN_NUM_PROCESSES": "2"}
    workers = [launch(root / "two_processes", {**coordinator, "JAXCNN_PROCESS_ID": str(i)}) for i in (0, 1)]
    together = [report(w) for w in workers]
    flags = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    alone = report(launch(root / "one_process", {"XLA_FLAGS": flags}))
    return root, together, alone


def test_two_processes_train_one_model_over_both(runs):
    _, (first, second), alone = runs
    assert [first["process"], second["process"]] == [0, 1]
    assert first["processes"] == 2 and first["devices"] == 2 and alone["devices"] == 2
    assert first["history"] == second["history"] and first["kernel"] == second["kernel"]  # one model, not two


def test_two_processes_compute_what_one_process_with_two_devices_computes(runs):
    _, (first, _), alone = runs
    for together, single in zip(first["history"], alone["history"]):
        for key in ("train_loss", "val_loss"):
            np.testing.assert_allclose(together[key], single[key], **FLOAT64_CROSS_PROGRAM)
    np.testing.assert_allclose(first["kernel"], alone["kernel"], **FLOAT64_CROSS_PROGRAM)


def test_the_run_is_written_once_and_restores_in_one_process(runs):
    root, (first, _), _ = runs
    workdir = root / "two_processes"
    assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 2  # one line per epoch, not per process
    assert len(list(workdir.glob("events.out.tfevents.*"))) == 1
    with jax.enable_x64(True):  # the run trained in float64
        state, cfg, _, epoch = load_run(workdir, "latest")  # its SHA-256 is checked on restore
    assert epoch == cfg.epochs == 2
    np.testing.assert_array_equal(np.asarray(jax.device_get(state.params["head"]["logits"]["kernel"])),
                                  np.asarray(first["kernel"], np.float64))
