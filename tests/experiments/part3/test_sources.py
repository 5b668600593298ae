"""What part 3 starts from: where the corrupted set is found or made, how it is loaded, and the
part-1 trunk it refuses."""

import dataclasses
import json

import numpy as np
import pytest

from jaxcnn.errors import CheckpointError, DataError
from jaxcnn.experiments import part3
from jaxcnn.experiments.part3 import sources
from jaxcnn.experiments.part3.config import REPLICA
from jaxcnn.experiments.part3.sources import Place
from tests.generated import write_class_folders


def test_missing_part1_checkpoint_says_to_run_part1_first(tmp_path):
    with pytest.raises(CheckpointError, match="run part 1 first"):
        sources.part1_trunk(part3.get_config(), tmp_path / "nothing", Place(tmp_path, tmp_path / "work"))


def test_a_part1_trunk_that_does_not_fit_the_model_is_refused(tmp_path, monkeypatch):
    trunk = {"conv0_0": {"kernel": np.zeros((3, 3, 1, 8))}, "bn0_0": {}, "conv1_0": {"kernel": np.zeros((3, 3, 8, 16))}}
    monkeypatch.setattr(sources, "has_checkpoints", lambda path: True)
    monkeypatch.setattr(sources, "pretrained_variables", lambda path, which: ({"params": {"trunk": trunk}}, {}))
    with pytest.raises(CheckpointError, match=r"widths \(8, 16\), part 3's model \(32, 64, 128\)"):
        sources.part1_trunk(part3.get_config(), tmp_path / "part1", Place(tmp_path, tmp_path / "work"))


def test_part3_runs_on_the_task_set_in_the_data_root_and_on_a_replica_only_when_asked_or_absent(tmp_path,
                                                                                               monkeypatch):
    monkeypatch.setattr(sources, "make_default_set", lambda cfg, place: place.workdir / "made.zip")
    cfg, work = part3.get_config(), tmp_path / "work"
    place = Place(tmp_path, work)
    assert sources.noisy_source(cfg, place) == (work / "made.zip", "replica")  # no task set here
    (tmp_path / "mnistTask3").mkdir()
    assert sources.noisy_source(cfg, place) == (tmp_path / "mnistTask3", "task")
    (tmp_path / "mnistTask3.zip").write_bytes(b"")
    assert sources.noisy_source(cfg, place) == (tmp_path / "mnistTask3.zip", "task")
    replica = dataclasses.replace(cfg, data=REPLICA)
    assert sources.noisy_source(replica, place) == (work / "made.zip", "replica")
    given = dataclasses.replace(cfg, data=str(tmp_path / "given.zip"))
    assert sources.noisy_source(given, place) == (tmp_path / "given.zip", "given")


def test_a_given_folder_is_loaded_with_its_folder_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(10), 4)
    write_class_folders(images, labels, tmp_path / "given")
    cfg = dataclasses.replace(part3.get_config("quick"), data=str(tmp_path / "given"), noisy_size=20)
    data = sources.load_noisy(cfg, tmp_path / "given", cache_dir=tmp_path / "cache")
    assert len(data) == 20 and np.bincount(data.labels).tolist() == [2] * 10
    assert data.class_names == tuple(str(d) for d in range(10))


def test_a_made_set_with_other_settings_is_not_silently_reused(tmp_path):
    (tmp_path / "noisy-mnist.zip").write_bytes(b"")
    (tmp_path / "noisy-mnist.made.json").write_text(json.dumps({"corruption": "permutation", "seed": 5}))
    with pytest.raises(DataError, match="--overwrite"):
        sources.make_default_set(part3.get_config("quick"), Place(tmp_path, tmp_path))


def test_make_noisy_mnist_command_refuses_a_bad_spec_before_reading_data(tmp_path, capsys):
    from jaxcnn.cli import main
    assert main(["make-noisy-mnist", "--out", str(tmp_path / "out"), "--corruption", "rotate:0.1",
                 "--data-root", str(tmp_path / "no-data")]) == 2
    assert "symmetric:RATE" in capsys.readouterr().err and not (tmp_path / "out").exists()
