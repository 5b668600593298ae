"""The command line: ``evaluate`` on a saved run, one-line errors, and part 1 end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxcnn.cli import main
from jaxcnn.config import ModelConfig, TrainConfig
from jaxcnn.config import NO_AUGMENT
from jaxcnn.data.chars74k import CLASS_NAMES, load_chars74k
from jaxcnn.evaluation.evaluate import evaluate_run
from jaxcnn.training.checkpoint import RunInputs, run_inputs
from jaxcnn.training.loop import fit

CLASSES = ("0", "1", "A", "a")
WRITERS = (1, 2, 3, 4)
CFG = TrainConfig(seeds=(0, 1), epochs=1, batch_size=8, eval_batch_size=16, augment=NO_AUGMENT,
                  model=ModelConfig(widths=(4, 8), hidden=16))


@pytest.fixture
def tiny_run(tmp_path, make_chars74k):
    """``(workdir, data folder)``: a one-epoch run on a tiny Chars74K-layout folder of four classes."""
    folder = make_chars74k(tmp_path / "chars", classes=[CLASS_NAMES.index(c) + 1 for c in CLASSES],
                           writers=WRITERS)
    data = load_chars74k(folder, classes=list(CLASSES), cache_dir=tmp_path / "cache")
    fit(data, data, CFG, tmp_path / "run")
    return tmp_path / "run", folder


def test_evaluate_writes_figures_and_a_confusion_plot(tiny_run, tmp_path, capsys):
    workdir, folder = tiny_run
    code = main(["evaluate", "--ckpt", str(workdir), "--data", str(folder), "--cache-dir", str(tmp_path)])
    assert code == 0
    report = json.loads((workdir / "eval_chars.json").read_text())
    n = len(CLASSES) * len(WRITERS)
    assert report["n"] == n and report["seeds"] == [0, 1] and len(report["members_accuracy"]) == 2
    correct = sum(report["confusion"][i][i] for i in range(len(CLASSES)))
    assert report["accuracy"] == pytest.approx(correct / n)
    assert report["accuracy"] <= report["accuracy_casefold"] <= 1.0
    assert (workdir / "eval_chars.png").read_bytes().startswith(b"\x89PNG")
    assert report["accuracy"] <= report["top3_accuracy"] <= 1.0
    per_writer = report["per_writer_accuracy"]
    assert sorted(per_writer) == [str(w) for w in WRITERS]  # every writer has len(CLASSES) images
    assert np.mean(list(per_writer.values())) == pytest.approx(report["accuracy"])
    assert report["writer_accuracy_spread"]["min"] == min(per_writer.values())
    assert [g["group"] for g in report["confusable_groups"]] == ["Aa"]  # 0 and 1 have no look-alike here
    out = capsys.readouterr().out
    assert f"n={n}" in out and f"per writer ({len(WRITERS)})" in out and "top-3" in out

    assert main(["evaluate", "--ckpt", str(workdir), "--data", str(folder), "--tta", "--json",
                 str(tmp_path / "tta.json")]) == 0
    tta = json.loads((tmp_path / "tta.json").read_text())
    assert tta["tta"] is True and not report["tta"] and tta["n"] == n


def test_evaluate_prepares_images_as_the_run_was_trained(tiny_run, tmp_path):
    """A run trained on stretched images saves that with its checkpoints; ``evaluate`` scores
    new images resized the same way (the MNIST convention would give other inputs)."""
    _, folder = tiny_run
    stretched = load_chars74k(folder, classes=list(CLASSES), cache_dir=tmp_path / "cache", preprocess="stretch")
    fit(stretched, stretched, CFG, tmp_path / "stretched_run", meta={"preprocess": "stretch"})
    assert main(["evaluate", "--ckpt", str(tmp_path / "stretched_run"), "--data", str(folder), "--json",
                 str(tmp_path / "stretched.json"), "--cache-dir", str(tmp_path / "cache")]) == 0
    report = json.loads((tmp_path / "stretched.json").read_text())
    assert report["accuracy"] == pytest.approx(evaluate_run(tmp_path / "stretched_run", stretched)["accuracy"])
    assert run_inputs(tmp_path / "stretched_run")[1] == "stretch"
    assert run_inputs(tiny_run[0]) == (CLASSES, "mnist", 28)  # runs that do not say were preprocessed the MNIST way


@pytest.mark.parametrize("make_path", [lambda p: p, lambda p: p / "missing"], ids=["empty", "missing"])
def test_evaluate_without_checkpoints_is_a_one_line_error(tmp_path, capsys, make_path):
    ckpt = make_path(tmp_path / "run")
    (tmp_path / "run").mkdir()
    assert main(["evaluate", "--ckpt", str(ckpt), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(ckpt) in err


@pytest.mark.parametrize("assignment, named", [("train.nope=1", "'nope'"), ("train.epochs", "path.to.field=value")])
def test_a_bad_set_is_a_one_line_error(tmp_path, capsys, assignment, named):
    argv = ["part1", "--set", assignment, "--data-root", str(tmp_path), "--workdir", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and named in err
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.slow
def test_part1_quick_end_to_end(shared_data, tmp_path):
    """``python -m jaxcnn part1 --quick`` on the real training set (about 30 s of CPU)."""
    if not (shared_data / "trainPart1").is_dir():
        pytest.skip(f"no trainPart1 under {shared_data}")
    cache = os.environ.get("JAXCNN_CACHE") or str(tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-m", "jaxcnn", "part1", "--quick", "--data-root", str(shared_data),
                           "--workdir", str(tmp_path / "run"), "--cache-dir", cache],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["writers"] == list(range(1, 56)) and results["num_train"] == 2480  # every image, none held out
    assert [r["epoch"] for r in results["history"]] == [1, 2] and results["epoch"] == 2
    assert "The final model learns from all 2480 training images (55 writers" in proc.stdout  # its report section


def one_line_error(capsys, *named):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert all(str(n) in err for n in named), err
    return err


def test_evaluate_and_report_never_replace_a_run_s_files(tiny_run, tmp_path, capsys, make_chars74k):
    workdir, folder = tiny_run
    results = workdir / "results.json"
    results.write_text('{"kept": true}')
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main(["evaluate", "--ckpt", str(workdir), "--data", str(folder), "--json", str(results), *cache]) == 2
    one_line_error(capsys, results)
    assert main(["report", "--workdir", str(tmp_path), "--out", str(results)]) == 2
    one_line_error(capsys, results)
    assert results.read_text() == '{"kept": true}'
    assert main(["report", "--workdir", str(tmp_path / "missing")]) == 2
    one_line_error(capsys, tmp_path / "missing")
    assert main(["evaluate", "--ckpt", str(workdir), "--data", str(folder), "--which", "foo", *cache]) == 2
    one_line_error(capsys, "'foo'", "best, latest or an epoch number")

    twin = make_chars74k(tmp_path / "elsewhere" / folder.name, classes=[CLASS_NAMES.index(c) + 1 for c in CLASSES],
                         writers=(5, 6))
    assert main(["evaluate", "--ckpt", str(workdir), "--data", str(folder), *cache]) == 0
    first = (workdir / "eval_chars.json").read_bytes()
    capsys.readouterr()
    assert main(["evaluate", "--ckpt", str(workdir), "--data", str(twin), *cache]) == 2
    one_line_error(capsys, workdir / "eval_chars.json", "--json")
    assert (workdir / "eval_chars.json").read_bytes() == first


def test_flags_are_never_matched_by_prefix(capsys):
    with pytest.raises(SystemExit):
        main(["part1", "--work", "x"])
    assert "unrecognized arguments: --work" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--ck", "x", "--data", "y"])


def test_part3_data_and_data_root_are_distinct_flags():
    from jaxcnn.experiments import part3
    from jaxcnn.cli import _configured, build_parser

    args = build_parser().parse_args(["part3", "--data", "noisy.zip", "--data-root", "root", "--quick"])
    assert args.data == "noisy.zip" and args.data_root == "root"
    assert _configured(part3, args).data == "noisy.zip"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["part3", "--dat", "noisy.zip"])


def test_each_part_takes_the_runs_it_reads_as_flags_defaulting_to_their_places_under_ckpts(tmp_path, capsys):
    from jaxcnn.cli import build_parser

    part3 = build_parser().parse_args(["part3", "--part1-run", "mine/part1"])
    assert (part3.part1_run, part3.oracle_run) == ("mine/part1", "ckpts/part2/B")
    assert build_parser().parse_args(["part1"]).cv_run == "ckpts/part1-cv"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["part2", "--part1-run", "x"])  # part 2 reads no other part's run
    assert "unrecognized arguments: --part1-run" in capsys.readouterr().err
    argv = ["part2", "--set", "digits.model.widths=8,16", "--data-root", str(tmp_path), "--workdir", str(tmp_path / "w")]
    assert main(argv) == 2
    one_line_error(capsys, "digits.model.widths", "set model.widths instead")
    assert not (tmp_path / "w").exists()


def test_an_unknown_ablation_variant_is_refused_before_anything_runs(tmp_path, capsys):
    argv = ["ablate", "--variants", "default", "nosuch", "--workdir", str(tmp_path / "abl"), "--data-root", str(tmp_path)]
    assert main(argv) == 2
    one_line_error(capsys, "'nosuch'", "no_augmentation")
    assert not (tmp_path / "abl").exists()


class FakeOrbaxError(Exception):
    __module__ = "orbax.checkpoint._src.fake"


@pytest.mark.parametrize("raised, code, named", [
    (KeyboardInterrupt(), 130, "--resume"),
    (PermissionError(13, "Permission denied", "/some/run/results.json"), 3, "/some/run/results.json: Permission denied"),
    (OSError(28, "No space left on device"), 3, "No space left on device"),
    (FakeOrbaxError("TensorStore failed\nsecond line"), 4, "TensorStore failed second line"),
])
def test_expected_failures_are_one_line_with_their_own_exit_code(monkeypatch, capsys, raised, code, named):
    import jaxcnn.cli as cli

    def fail(args):
        raise raised

    monkeypatch.setattr(cli, "cmd_report", fail)
    assert main(["report"]) == code
    one_line_error(capsys, named)


def test_a_bug_keeps_its_traceback(monkeypatch):
    import jaxcnn.cli as cli
    monkeypatch.setattr(cli, "cmd_report", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["report"])


def test_evaluate_that_cannot_write_fails_before_printing_scores(tiny_run, tmp_path, capsys):
    workdir, folder = tiny_run
    (tmp_path / "a-file").write_text("x")
    out = tmp_path / "a-file" / "eval.json"
    assert main(["evaluate", "--ckpt", str(workdir), "--data", str(folder), "--json", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "cannot write the evaluation here" in captured.err and captured.err.count("\n") == 1


def test_evaluate_reports_a_chars74k_layout_error_as_such(tmp_path, make_chars74k):
    from jaxcnn.cli import _load_for
    from jaxcnn.errors import DataError
    make_chars74k(tmp_path / "data" / "train", classes=(1,), writers=(1,))
    make_chars74k(tmp_path / "data" / "test", classes=(1,), writers=(2,))
    with pytest.raises(DataError, match="Sample folders in 2 places"):
        _load_for(RunInputs(("0", "1"), "mnist", 28), tmp_path / "data", tmp_path / "cache")


def truncate_largest_array(step_dir):
    path = max((p for p in step_dir.glob("state/**/d/*") if p.is_file()), key=lambda p: p.stat().st_size)
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.slow
@pytest.mark.parametrize("command", [["evaluate", "--ckpt", "{run}", "--data", "{data}"],
                                     ["part1", "--quick", "--resume", "--data-root", "{root}", "--workdir", "{run}"]],
                         ids=["evaluate", "resume"])
def test_a_damaged_checkpoint_is_one_line_and_nothing_after_it(tmp_path, command):
    """In a child process, so that what Orbax's threads print while it exits is seen too."""
    from tests.generated import write_chars74k

    write_chars74k(tmp_path / "root", writers=3)
    env = {**os.environ, "JAXCNN_CACHE": str(tmp_path / "cache"), "JAX_PLATFORMS": "cpu"}
    run = [sys.executable, "-m", "jaxcnn", "part1", "--quick", "--data-root", str(tmp_path / "root"),
           "--workdir", str(tmp_path / "run"), "--set", "train.seeds=0", "--set", "train.epochs=1"]
    assert subprocess.run(run, env=env, capture_output=True).returncode == 0
    truncate_largest_array(tmp_path / "run" / "checkpoints" / "1")
    args = [a.format(run=tmp_path / "run", data=next((tmp_path / "root").rglob("Sample001")).parent,
                     root=tmp_path / "root") for a in command]
    extra = ["--set", "train.seeds=0", "--set", "train.epochs=1"] if command[0] == "part1" else []
    failed = subprocess.run([sys.executable, "-m", "jaxcnn", *args, *extra], env=env, capture_output=True, text=True)
    assert failed.returncode == 2
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"error: {tmp_path / 'run' / 'checkpoints' / '1'}: damaged checkpoint"), lines
    assert "Traceback" not in failed.stderr and len(lines[-1]) < 400


def test_profile_flags_quick_is_an_alias_and_the_default_follows_the_backend():
    import jax
    from jaxcnn.cli import build_parser
    from jaxcnn.experiments import default_profile
    parse = build_parser().parse_args
    assert parse(["study", "--quick"]).profile == "quick" and parse(["part2", "--profile", "cpu"]).profile == "cpu"
    assert parse(["part3"]).profile is None  # resolved when run: default_profile()
    assert default_profile() == ("cpu" if jax.default_backend() == "cpu" else "full")
    for both in (["study", "--quick", "--profile", "full"], ["part1", "--profile", "gpu"]):
        with pytest.raises(SystemExit):
            parse(both)
