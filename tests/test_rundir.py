"""A run's work directory is protected as a whole: claims, resume with another config, overwrite,
and outputs of other commands that would replace a run's files."""

import hashlib
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from jaxcnn import rundir
from jaxcnn.data import noise
from jaxcnn.errors import DataError, JaxcnnError
from jaxcnn.rundir import ConfigMismatchError, RunExistsError, check_output, claim

CFG = {"train": {"epochs": 2, "learning_rate": 0.002}, "classes": []}


def snapshot(directory):
    """Every file under ``directory`` with the hash of its bytes."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(tmp_path):
    """A marked run directory as a part leaves it: marker, records, checkpoints, results."""
    workdir = claim(tmp_path / "run", "part1", CFG)
    claim(workdir, "fit", CFG["train"])
    (workdir / "checkpoints" / "2").mkdir(parents=True)
    (workdir / "config.json").write_text(json.dumps(CFG["train"]))
    (workdir / "results.json").write_text('{"accuracy": 0.9}')
    return workdir


def test_a_fresh_claim_marks_the_directory_with_the_config(tmp_path):
    workdir = claim(tmp_path / "new" / "run", "part1", CFG)
    assert rundir.read_marker(workdir) == {"part1": CFG}
    assert [p.name for p in workdir.iterdir()] == [rundir.MARKER]


def test_a_finished_run_is_refused_untouched_without_resume_or_overwrite(finished):
    before = snapshot(finished)
    with pytest.raises(RunExistsError, match="--resume .* --overwrite"):
        claim(finished, "part1", CFG)
    assert snapshot(finished) == before


def test_results_are_protected_with_the_checkpoints_gone(finished):
    (finished / "checkpoints" / "2").rmdir()
    before = snapshot(finished)
    with pytest.raises(RunExistsError):
        claim(finished, "part1", CFG)
    assert snapshot(finished) == before


def test_resume_with_a_changed_config_names_the_fields_and_writes_nothing(finished):
    before = snapshot(finished)
    changed = {**CFG, "train": {"epochs": 3, "learning_rate": 0.05}}
    with pytest.raises(ConfigMismatchError) as err:
        claim(finished, "part1", changed, resume=True)
    message = str(err.value)
    assert "train.epochs: 2 -> 3" in message and "train.learning_rate: 0.002 -> 0.05" in message
    assert "\n" not in message and "classes" not in message
    assert snapshot(finished) == before


def test_resume_with_the_same_config_continues(finished):
    before = snapshot(finished)
    assert claim(finished, "part1", CFG, resume=True) == finished
    assert claim(finished, "fit", CFG["train"], resume=True) == finished
    assert snapshot(finished) == before


def test_a_field_added_since_the_run_resumes_at_its_default_and_only_there(finished):
    """A config field the code gained after the run was saved counts as its default (what the run
    did without it); set to anything else, it is a change like any other."""
    grown = {**CFG, "train": {**CFG["train"], "trunk_lr_scale": 1.0}, "variants": ["C_slow"]}
    defaults = {"train": {"epochs": 60, "trunk_lr_scale": 1.0}, "variants": ["C_slow"], "classes": []}
    assert claim(finished, "part1", grown, defaults=defaults, resume=True) == finished
    with pytest.raises(ConfigMismatchError, match=r"train.trunk_lr_scale: 1.0 -> 0.1"):  # what the run did
        claim(finished, "part1", {**grown, "train": {**grown["train"], "trunk_lr_scale": 0.1}}, defaults=defaults,
              resume=True)
    with pytest.raises(ConfigMismatchError, match="variants"):
        claim(finished, "part1", grown, resume=True)  # without the defaults, strict as before


def test_overwrite_empties_a_marked_run(finished):
    claim(finished, "part1", {**CFG, "classes": ["A"]}, overwrite=True)
    assert [p.name for p in finished.iterdir()] == [rundir.MARKER]
    assert rundir.read_marker(finished) == {"part1": {**CFG, "classes": ["A"]}}


@pytest.mark.parametrize("files", [{"results.json": "{}"}, {"config.json": "{}", "checkpoints/1/x": "x"},
                                   {"notes.txt": "mine"}, {"a/b.png": "x"}])
@pytest.mark.parametrize("flags", [{}, {"overwrite": True}])
def test_an_unmarked_non_empty_folder_is_never_used_or_deleted(tmp_path, files, flags):
    workdir = tmp_path / "folder"
    for name, text in files.items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text(text)
    before = snapshot(workdir)
    with pytest.raises(RunExistsError) as err:
        claim(workdir, "fit", CFG["train"], **flags)
    assert str(workdir) in str(err.value) and "\n" not in str(err.value)
    assert snapshot(workdir) == before


def test_an_unmarked_run_of_an_older_version_resumes_with_its_config(tmp_path):
    workdir = tmp_path / "old"
    (workdir / "checkpoints" / "1").mkdir(parents=True)
    (workdir / "config.json").write_text(json.dumps(CFG["train"]))
    with pytest.raises(ConfigMismatchError, match="epochs: 2 -> 5"):
        claim(workdir, "fit", {**CFG["train"], "epochs": 5}, resume=True)
    assert not (workdir / rundir.MARKER).exists()
    claim(workdir, "fit", CFG["train"], resume=True)
    assert rundir.read_marker(workdir) == {"fit": CFG["train"]}


def test_fit_joins_its_part_but_a_part_never_joins_another_run(finished, tmp_path):
    with pytest.raises(RunExistsError, match="holds a run of fit, part1, not of part2"):
        claim(finished, "part2", CFG, resume=True)
    alone = claim(tmp_path / "alone", "fit", CFG["train"])
    with pytest.raises(RunExistsError, match="holds a run of fit, not of part1"):
        claim(alone, "part1", CFG, resume=True)


def test_a_file_as_workdir_is_a_one_line_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(JaxcnnError, match="is a file"):
        claim(tmp_path / "f", "fit", {})
    with pytest.raises(JaxcnnError, match="cannot use it as the work directory"):
        claim(tmp_path / "f" / "run", "fit", {})


@pytest.mark.parametrize("name", ["results.json", "config.json", "metrics.jsonl", rundir.MARKER,
                                  "checkpoints/eval_x.json", "learning_curves.png"])
def test_outputs_never_replace_a_run_s_files(finished, name):
    with pytest.raises(JaxcnnError, match="choose another --json"):
        check_output(finished / name, own_run=finished, prefix="eval_", flag="--json")


def test_outputs_go_into_their_own_run_only(finished, tmp_path):
    other = claim(tmp_path / "other", "fit", {})
    assert check_output(finished / "eval_x.json", own_run=finished, prefix="eval_") == finished / "eval_x.json"
    with pytest.raises(JaxcnnError, match="inside the run directory"):
        check_output(other / "eval_x.json", own_run=finished, prefix="eval_")
    with pytest.raises(JaxcnnError, match="run's own file"):
        check_output(tmp_path / "elsewhere" / "results.json")
    assert check_output(tmp_path / "REPORT.md") == tmp_path / "REPORT.md"


def test_make_noisy_mnist_overwrite_refuses_a_folder_it_did_not_make(finished):
    images, labels = noise.np.zeros((4, 28, 28), noise.np.uint8), noise.np.arange(4)
    before = snapshot(finished)
    with pytest.raises(DataError, match="not a set made by make-noisy-mnist .* choose another --out"):
        noise.make_noisy_mnist(images, labels, finished, "clean", 0, overwrite=True)
    assert snapshot(finished) == before
    made = finished.parent / "noisy"
    noise.make_noisy_mnist(images, labels, made, "clean", 0)
    noise.make_noisy_mnist(images, labels, made, "permutation", 0, overwrite=True)  # its own: replaced
    assert json.loads(noise.truth_path(made).read_text())["spec"] == "permutation"


# --- properties: any sequence of claims on any starting folder --------------------------------

CONFIGS = ({"lr": 0.002}, {"lr": 0.05}, {"lr": 0.002, "epochs": 3})
START = st.sampled_from(["missing", "empty", "user-files", "old-run"])
CLAIMS = st.lists(st.tuples(st.sampled_from(["fit", "part1", "part2"]), st.sampled_from(range(len(CONFIGS))),
                            st.booleans(), st.booleans()), min_size=1, max_size=6)


def start_folder(workdir, start: str) -> dict:
    """The folder a user points --workdir at; returns the files in it (never to be lost, unless
    an older version's run is resumed and so becomes the new run's)."""
    mine = {}
    if start == "empty":
        workdir.mkdir()
    elif start == "user-files":
        mine = {"notes.txt": "mine", "photos/cat.png": "meow"}
    elif start == "old-run":
        mine = {"config.json": json.dumps(CONFIGS[0]), "results.json": '{"accuracy": 0.9}', "checkpoints/3/x": "w"}
    for name, text in mine.items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text(text)
    return mine


@settings(max_examples=150, deadline=None)
@given(start=START, claims=CLAIMS)
def test_claims_never_lose_a_file_they_do_not_own_and_resume_only_the_same_config(start, claims):
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "run"
        mine = start_folder(workdir, start)
        for step, (role, which, resume, overwrite) in enumerate(claims):
            config = CONFIGS[which]
            marker = rundir.read_marker(workdir) if workdir.is_dir() else None
            before = snapshot(workdir) if workdir.is_dir() else {}
            try:
                claim(workdir, role, config, resume=resume, overwrite=overwrite)
            except JaxcnnError as err:
                assert "\n" not in str(err) and str(workdir) in str(err)
                assert (snapshot(workdir) if workdir.is_dir() else {}) == before  # a refusal writes nothing
            else:
                saved = rundir.read_marker(workdir)
                assert saved[role] == config
                if marker and role in marker and not overwrite:
                    assert resume and marker[role] == config  # resumed only with the same config
                lost = set(before) - set(snapshot(workdir))
                assert not lost or (marker and role in marker and overwrite and not resume)
                (workdir / f"result-{step}.json").write_text(json.dumps(config))  # the run writes something
                if marker is None and start == "old-run":
                    mine = {}  # resumed with its own config, an older version's run becomes this run's
            for name, text in mine.items():  # the user's files are never touched
                assert (workdir / name).read_text() == text
