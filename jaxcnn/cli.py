"""Command line: ``python -m jaxcnn <command>``; ``experiments/partN.py`` call the same code."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import sys
import threading
import warnings
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from jaxcnn import paths
from jaxcnn.config import override
from jaxcnn.errors import DataError, JaxcnnError
from jaxcnn.experiments import PARTS, PROFILES, STUDY_RUNS, UPSTREAM, default_profile, part_module

logger = logging.getLogger("jaxcnn")

EXIT_BAD_INPUT = 2  # a JaxcnnError or ValueError: bad data, config, flags or work directory
EXIT_OS_ERROR = 3  # the file system refused (permissions, full disk, missing file)
EXIT_CHECKPOINT = 4  # an Orbax or TensorStore error not already reported as a CheckpointError
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT

def _data_root_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", help="data root (default: $JAXCNN_DATA, else ./data)")


def _cache_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", help="preprocessed-data cache (default: $JAXCNN_CACHE, else ~/.cache/jaxcnn)")


def _common(parser: argparse.ArgumentParser, default_workdir: str) -> None:
    _data_root_arg(parser)
    parser.add_argument("--workdir", default=default_workdir, help="where checkpoints and results go (default: %(default)s)")
    _profile_args(parser)
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --workdir")
    parser.add_argument("--overwrite", action="store_true", help="delete a run already in --workdir and start again")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field, e.g. --set train.epochs=30 (repeatable)")
    _cache_dir_arg(parser)


def _profile_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--profile", choices=tuple(PROFILES), help="how much to run: " + "; ".join(
        f"{name}: {what}" for name, what in PROFILES.items()) + " (default: cpu where JAX finds no accelerator, else full)")
    group.add_argument("--quick", dest="profile", action="store_const", const="quick", help="the same as --profile quick")


def _folds_by(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--folds-by", choices=("class", "writer"), help="class: class-stratified image folds, as the "
                        "task's held-back test (the default); writer: whole writers held out")


def _configured(module, args):
    cfg = module.get_config(args.profile or default_profile())
    for assignment in args.set:
        cfg = override(cfg, assignment)
    if getattr(args, "data", None):  # part 3's --data DIR_OR_ZIP
        cfg = dataclasses.replace(cfg, data=args.data)
    if getattr(args, "folds_by", None):  # cv and ablate
        cfg = dataclasses.replace(cfg, folds_by=args.folds_by)
    return cfg


def cmd_part(args) -> int:
    """Runs one part of the study (its module's get_config and run) and prints its report sections."""
    from jaxcnn.experiments.results import RESULTS_FILE
    from jaxcnn.report.render import render_text
    module = part_module(args.command)
    upstream = {argument: Path(getattr(args, argument)) for argument in UPSTREAM[args.command]}
    results = module.run(_configured(module, args), paths.data_root(args.data_root), Path(args.workdir),
                         resume=args.resume, overwrite=args.overwrite, cache_dir=args.cache_dir, **upstream)
    print(render_text(module.sections(results, Path(args.workdir))))
    print(f"results: {Path(args.workdir) / RESULTS_FILE}")
    return 0


def cmd_cv(args) -> int:
    from jaxcnn.experiments.part1 import config, folds, report
    from jaxcnn.experiments.results import RESULTS_FILE
    from jaxcnn.report.render import render_text
    results = folds.run_cv(_configured(config, args), paths.data_root(args.data_root), Path(args.workdir),
                           resume=args.resume, overwrite=args.overwrite, cache_dir=args.cache_dir)
    print(render_text([report.folds_section(results)]))
    print(f"results: {Path(args.workdir) / RESULTS_FILE}")
    return 0


def cmd_ablate(args) -> int:
    from jaxcnn.experiments.part1 import config, folds, report
    from jaxcnn.report.render import render_text
    table = folds.run_ablation(_configured(config, args), paths.data_root(args.data_root),
                               Path(args.workdir), args.variants, resume=args.resume, overwrite=args.overwrite,
                               cache_dir=args.cache_dir, first_folds=args.first_folds)
    print(render_text([report.ablation_section(table)]))
    return 0


def cmd_evaluate(args) -> int:
    from jaxcnn.evaluation.evaluate import evaluate_run, output_path, summary_lines
    from jaxcnn.evaluation.plots import plot_confusion
    from jaxcnn.training.checkpoint import run_inputs
    from jaxcnn.rundir import write_json
    if not Path(args.data).exists():  # e.g. testPart1, which `download` unpacks
        raise DataError(f"{args.data}: no such folder or zip file; {paths.DOWNLOAD_HINT}")
    inputs, out = run_inputs(args.ckpt, args.which), output_path(args.ckpt, args.data, args.json)
    data = _load_for(inputs, args.data, args.cache_dir)
    report = {**evaluate_run(args.ckpt, data, args.which, tta=args.tta), "data": str(Path(args.data).absolute())}
    print("\n".join(summary_lines(report)))
    write_json(out, report)
    plot_confusion(report["confusion"], inputs.class_names, out.with_suffix(".png"), f"{args.data}")
    print(f"figures: {out}  confusion matrix: {out.with_suffix('.png')}")
    return 0


def cmd_predict(args) -> int:
    from jaxcnn.evaluation.predict import checked_output, csv_rows, predict, summary_lines, write_csv
    out = checked_output(args.out)
    predictions = predict(args.ckpt, args.data, which=args.which, top=args.top)
    write_csv(out, csv_rows(predictions, args.top))
    print("\n".join([*summary_lines(predictions), f"predictions: {out}"]))
    return 0


def cmd_study(args) -> int:
    from jaxcnn.report import report_path
    from jaxcnn.study import run_study
    out = report_path(args.workdir, args.out)
    _check_report_out(out)
    status = run_study(paths.data_root(args.data_root), Path(args.workdir), profile=args.profile or default_profile(),
                       resume=args.resume, cache_dir=args.cache_dir, out=args.out)
    print("\n".join(f"{name}: {what}" for name, what in status.items()))
    print(f"report: {out} and {out.with_name('report.html')}")
    return 0


def cmd_report(args) -> int:
    from jaxcnn.report import report_path, write_report
    if not Path(args.workdir).is_dir():
        raise JaxcnnError(f"{args.workdir}: no such folder; pass --workdir the folder that holds part1/, part2/, part3/")
    _check_report_out(report_path(args.workdir, args.out))
    markdown, page = write_report(args.workdir, args.out)
    print(f"report: {markdown} and {page}")
    return 0


def _check_report_out(out: Path) -> None:
    """The report and report.html beside it never replace a run's files."""
    from jaxcnn.rundir import check_output
    for path in (out, out.with_name("report.html")):
        check_output(path, flag="--out")


def cmd_download(args) -> int:
    from jaxcnn.data.download import download_all
    print("\n".join(download_all(paths.data_root(args.data_root))))
    return 0


def cmd_make_noisy_mnist(args) -> int:
    from jaxcnn.data.mnist import load_mnist
    from jaxcnn.data.noise import check_made_here, make_noisy_mnist, parse_corruption
    spec = parse_corruption(args.corruption)  # a bad spec fails before MNIST is read, and so does
    if args.overwrite:  # a folder that --overwrite may not delete
        check_made_here(Path(args.out))
    train = load_mnist(paths.data_root(args.data_root), "train")
    summary = make_noisy_mnist(train.images, train.labels, args.out, spec, args.seed, overwrite=args.overwrite,
                               as_zip=args.zip)
    print(f"wrote {summary['num_images']} images with corruption {summary['spec']} (seed {summary['seed']}) "
          f"to {summary['data_dir']}; the truth is in {summary['truth_file']}")
    return 0


def _load_for(inputs, source, cache_dir):
    """Loads ``source`` in the layout of the run's classes (``RunInputs``); Chars74K images get its
    preprocessing and size (class folders their own: MNIST-sized images are taken as they are)."""
    from jaxcnn.data.chars74k import CLASS_NAMES, has_sample_folders, load_chars74k
    from jaxcnn.data.classfolders import load_class_folders
    if set(inputs.class_names) <= set(CLASS_NAMES) and has_sample_folders(source):
        return load_chars74k(source, classes=list(inputs.class_names), cache_dir=cache_dir,
                             preprocess=inputs.preprocess, size=inputs.image_size)
    return load_class_folders(source, class_names=list(inputs.class_names), cache_dir=cache_dir)


def _command(sub, func, name: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand ``name`` that runs ``func(args)``; ``kwargs`` are argparse's (help, description, epilog)."""
    parser = sub.add_parser(name, **kwargs)
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxcnn", description=__doc__, allow_abbrev=False)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True,  # flags are never matched by prefix
                                parser_class=functools.partial(argparse.ArgumentParser, allow_abbrev=False))

    for add_commands in (_part_commands, _part1_commands, _data_commands, _predict_command, _study_commands):
        add_commands(sub)
    return parser


def _part_commands(sub) -> None:
    """part1, part2, part3: each with the common flags and the runs of other parts it reads."""
    for name, description in PARTS.items():
        p = _command(sub, cmd_part, name, help=description.split(":")[1].strip(), description=description,
                     epilog=f"example: python -m jaxcnn {name} --data-root ../shared/data --quick")
        _common(p, f"ckpts/{name}")
        for argument, (place, what) in UPSTREAM[name].items():
            p.add_argument(f"--{argument.replace('_', '-')}", default=f"ckpts/{place}",
                           help=f"{what} (default: %(default)s)")
        if name == "part3":
            p.add_argument("--data", metavar="DIR_OR_ZIP", help="the corrupted class-folder set (default: "
                           "DATA_ROOT/mnistTask3.zip or mnistTask3/, else a replica; 'replica' asks for the replica)")


def _part1_commands(sub) -> None:
    """cv and ablate: part 1's recipe under folds."""
    p = _command(sub, cmd_cv, "cv", help="estimate part 1's accuracy on unseen images with folds",
                 description="Train part 1's recipe once per fold (--set folds=K, default 5), score each on the "
                             "images it never saw; the fold mean and 95% CI go to WORKDIR/results.json.",
                 epilog="example: python -m jaxcnn cv --data-root ../shared/data --quick")
    _common(p, f"ckpts/{STUDY_RUNS['cv']}")
    _folds_by(p)

    p = _command(sub, cmd_ablate, "ablate", help="measure the effect of part 1's main design choices",
                 description="Run part 1's folds once per ablation variant (each changes one choice, at the "
                             "full recipe) and tabulate the fold mean and 95% CI in WORKDIR/ablation.json.",
                 epilog="example: python -m jaxcnn ablate --variants default tta --set folds=3")
    _common(p, f"ckpts/{STUDY_RUNS['ablation']}")
    _folds_by(p)
    p.add_argument("--variants", nargs="*", help="which variants (default: all)")
    p.add_argument("--first-folds", type=int, metavar="N", help="a screen: the first N folds only (--resume extends them)")


def _data_commands(sub) -> None:
    """evaluate, download and make-noisy-mnist."""
    p = _command(sub, cmd_evaluate, "evaluate", help="score a checkpoint on a data folder or zip",
                 description="Score a saved run (the ensemble of its seeds) on any folder or zip in the "
                             "Chars74K layout (SampleNNN/imgCCC-SSS.png) or class-folder layout (0/ ... 9/).",
                 epilog="example: python -m jaxcnn evaluate --ckpt ckpts/part1 --data path/to/testPart1")
    p.add_argument("--ckpt", required=True, help="a run's work directory (or its checkpoints/ folder)")
    p.add_argument("--data", required=True, help="folder or .zip to score")
    p.add_argument("--which", default="best", help="best, latest or an epoch number (default: %(default)s)")
    p.add_argument("--tta", action="store_true", help="average the predictions over fixed test-time views")
    p.add_argument("--json", help="where to write the figures (default: CKPT/eval_<data>.json)")
    _cache_dir_arg(p)

    p = _command(sub, cmd_download, "download", help="fetch the Chars74K handwritten set and MNIST into the data root",
                 description="Download and unpack Chars74K EnglishHnd (split per class as the task did: 40 writers "
                             "to trainPart1/train, 15 to testPart1/test) and MNIST to mnist/; a cut download continues.",
                 epilog="example: python -m jaxcnn download --data-root data")
    _data_root_arg(p)

    p = _command(sub, cmd_make_noisy_mnist, "make-noisy-mnist", help="write MNIST train as class folders with corrupted labels",
                 description="Write MNIST train as OUT/mnistTask/<label>/image_NNNNNN.jpg (a Mac-made zip with --zip), "
                             "labels corrupted by SPEC ('complementary', 'permutation', 'symmetric:RATE', "
                             "'pairflip:RATE', joined by '+'), the truth in OUT.truth.json beside it.",
                 epilog="example: python -m jaxcnn make-noisy-mnist --out mnistTask3.zip --zip "
                        "--corruption complementary --seed 0")
    p.add_argument("--out", required=True, help="the folder (or zip) to write (refused if not empty, unless --overwrite)")
    p.add_argument("--corruption", default="complementary", help="corruption spec (default: %(default)s)")
    p.add_argument("--zip", action="store_true", help="write OUT as a zip with __MACOSX members, like the original")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutation and the noise (default: %(default)s)")
    _data_root_arg(p)
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it is not empty")


def _predict_command(sub) -> None:
    p = _command(sub, cmd_predict, "predict", help="write a saved run's answer for each image in a file, folder or zip",
                 description="One CSV row per file under DATA (an image, a folder searched recursively or a zip; "
                             "any layout, labelled or not): the ensemble's class, its probability, the top classes, "
                             "the page geometry the model read, or why the file could not be read.",
                 epilog="example: python -m jaxcnn predict --ckpt ckpts/part1 --data scans.zip --out predictions.csv")
    p.add_argument("--ckpt", required=True, help="a run's work directory (or its checkpoints/ folder)")
    p.add_argument("--data", required=True, help="an image, a folder or a .zip")
    p.add_argument("--out", default="predictions.csv", help="the CSV to write (default: %(default)s)")
    p.add_argument("--top", type=int, default=3, help="how many classes to list (default: %(default)s)")
    p.add_argument("--which", default="best", help="best, latest or an epoch number (default: %(default)s)")


def _study_commands(sub) -> None:
    """study and report."""
    p = _command(sub, cmd_study, "study", help="run parts 1, 2 and 3 in order, then write the report",
                 description="Run every part in WORKDIR/partN, reusing finished runs (same config), "
                             "then write the report from the results.",
                 epilog="example: python -m jaxcnn study --data-root ../shared/data --quick --workdir ckpts-quick")
    _data_root_arg(p)
    p.add_argument("--workdir", default="ckpts", help="holds part1/, part2/, part3/ (default: %(default)s)")
    _profile_args(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted part")
    p.add_argument("--out", help="the report; report.html goes beside it (default: WORKDIR/REPORT.md)")
    _cache_dir_arg(p)

    p = _command(sub, cmd_report, "report", help="rebuild REPORT.md and report.html from saved results (no training)",
                 description="Write the study's report from the results files under WORKDIR alone.")
    p.add_argument("--workdir", default="ckpts", help="holds part1/, part2/, part3/ (default: %(default)s)")
    p.add_argument("--out", help="the report; report.html goes beside it (default: WORKDIR/REPORT.md)")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax notes such as "directory is read only"
    with logging_redirect_tqdm():  # log lines print above a progress bar, not through it
        status = _run(args)
    if status:  # the one-line error is out: what Orbax's reads left behind say while the process exits
        sys.stderr.flush()  # ("Exception ignored in <coroutine ...>", "Future exception was never retrieved")
        sys.unraisablehook = lambda unraisable: None
        threading.excepthook = lambda args: None
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        warnings.simplefilter("ignore")  # "coroutine ... was never awaited" when those reads are collected
    return status


def _run(args) -> int:
    """Runs the command; every expected failure becomes one line on stderr and an exit status."""
    try:
        from jaxcnn.processes import initialize_from_environment  # imports jax: not for --help
        initialize_from_environment()
        if hasattr(args, "cache_dir"):  # a command that trains or evaluates
            from jaxcnn.compilation import use_persistent_cache
            use_persistent_cache(args.cache_dir)
        return args.func(args)
    except KeyboardInterrupt:
        print("error: interrupted; a training run keeps its last checkpoint (written each minute, after the last "
              "epoch and on SIGTERM): run the same command with --resume to continue it", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (JaxcnnError, ValueError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or _one_line(err)}", file=sys.stderr)
        return EXIT_OS_ERROR
    except Exception as err:
        if not type(err).__module__.startswith(("orbax", "tensorstore")):
            raise  # a bug: its traceback is what a report needs
        print(f"error: checkpoint library: {_one_line(err)}", file=sys.stderr)
        return EXIT_CHECKPOINT


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split()) or type(err).__name__
