"""Part 1: a 62-class handwritten-character CNN trained from scratch, validated on unseen writers."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from jaxcnn.chars74k import CLASS_NAMES, DEFAULT_VAL_WRITERS, PREPROCESSORS, load_chars74k, writer_split
from jaxcnn.config import ModelConfig, TrainConfig, override, to_dict
from jaxcnn.errors import require
from jaxcnn.evaluate import evaluate_run, plot_confusion, summary_lines as report_lines
from jaxcnn.fit import fit, write_json
from jaxcnn.rundir import claim

logger = logging.getLogger("jaxcnn")


@dataclasses.dataclass(frozen=True)
class Part1Config:
    """What part 1 trains on and how; ``classes`` empty means all 62."""

    train: TrainConfig = TrainConfig(seeds=(0, 1, 2))
    classes: tuple[str, ...] = ()
    val_writers: tuple[int, ...] = tuple(DEFAULT_VAL_WRITERS)
    preprocess: str = "mnist"
    data_subdir: str = "trainPart1"

    def __post_init__(self):
        require(self, "classes", all(c in CLASS_NAMES for c in self.classes) and len(set(self.classes)) == len(
            self.classes), "distinct Chars74K class names (0-9, A-Z, a-z), or empty for all 62")
        require(self, "val_writers", len(self.val_writers) > 0, "a non-empty list of writer numbers")
        require(self, "preprocess", self.preprocess in PREPROCESSORS, f"one of {', '.join(PREPROCESSORS)}")


def get_config(quick: bool = False) -> Part1Config:
    """The study's configuration; ``quick`` is the same pipeline, tiny and fast (CI, smoke tests)."""
    if not quick:
        return Part1Config()
    return Part1Config(train=TrainConfig(seeds=(0, 1), epochs=2, batch_size=64,
                                         model=ModelConfig(widths=(8, 16, 32), hidden=32)))


def load_data(cfg: Part1Config, data_root: Path, cache_dir=None):
    """(train, validation) split by writer, never by image: the test set is new writers."""
    data = load_chars74k(data_root / cfg.data_subdir, classes=list(cfg.classes) or None,
                         cache_dir=cache_dir, preprocess=cfg.preprocess)
    return writer_split(data, cfg.val_writers)


def run(cfg: Part1Config, data_root: Path, workdir: Path, *, resume=False, overwrite=False, cache_dir=None) -> dict:
    """Trains, then scores the best checkpoint on the validation writers; writes results.json."""
    workdir = claim(workdir, "part1", to_dict(cfg), resume=resume, overwrite=overwrite)
    train, val = load_data(cfg, data_root, cache_dir)
    logger.info("part 1: %d training images (writers not in %s), %d validation images, %d classes",
                len(train), list(cfg.val_writers), len(val), train.num_classes)
    _, history = fit(train, val, cfg.train, workdir, resume=resume, overwrite=overwrite)
    report = evaluate_run(workdir, val)
    plot_confusion(report["confusion"], train.class_names, workdir / "confusion_val.png",
                   "part 1: validation writers (ensemble)")
    results = {"config": to_dict(cfg), "num_train": len(train), "num_val": len(val),
               "history": history, "validation": report,
               "train_seconds": sum(r["seconds"] for r in history)}
    write_json(workdir / "results.json", results)
    return results


def summary_lines(results: dict) -> list[str]:
    return ["part 1, validation writers (ensemble of seeds):", *report_lines(results["validation"])]


# Each ablation changes one choice of the default config (``--set`` syntax), to measure its effect.
ABLATIONS = {
    "default": (),
    "no_augmentation": ("train.augment.rotate_deg=0", "train.augment.scale=0", "train.augment.shear_deg=0",
                        "train.augment.shift_px=0"),
    "plain_resize": ("preprocess=plain",),
    "elastic": ("train.augment.elastic_alpha=34",),
    "no_label_smoothing": ("train.label_smoothing=0",),
}


def run_ablation(cfg: Part1Config, data_root: Path, workdir: Path, variants=tuple(ABLATIONS), *,
                 resume=False, overwrite=False, cache_dir=None) -> dict:
    """Trains each variant in ``workdir/<variant>``; writes ``workdir/ablation.json`` (resumed, the
    rows of variants trained earlier are kept)."""
    unknown = sorted(set(variants) - set(ABLATIONS))
    if unknown:
        raise ValueError(f"unknown ablation variants {unknown}: choose from {sorted(ABLATIONS)}")
    claim(workdir, "ablation", to_dict(cfg), resume=resume, overwrite=overwrite)
    earlier = Path(workdir) / "ablation.json"
    table = json.loads(earlier.read_text()) if resume and earlier.is_file() else {}
    for name in variants:
        variant = cfg
        for assignment in ABLATIONS[name]:
            variant = override(variant, assignment)
        results = run(variant, data_root, workdir / name, resume=resume, overwrite=overwrite, cache_dir=cache_dir)
        val = results["validation"]
        table[name] = {"changes": list(ABLATIONS[name]), "accuracy": val["accuracy"],
                       "accuracy_casefold": val["accuracy_casefold"], "members_accuracy": val["members_accuracy"],
                       "train_seconds": results["train_seconds"]}
    write_json(Path(workdir) / "ablation.json", table)
    return table
