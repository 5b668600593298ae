"""What part 3 starts from: the corrupted set (the task's, a given one, or a replica made here),
part 1's trunk (a quick part 1 trained here where it lacks one that fits) and the clean oracle
(part 2's B, or a reference trained here), and where it reads and writes them (``Place``)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from jaxcnn.config import TrainConfig
from jaxcnn.data.chars74k import load_chars74k
from jaxcnn.data.classfolders import load_class_folders
from jaxcnn.data.dataset import ArrayDataset, balanced_subset
from jaxcnn.data.mnist import CLASS_NAMES as DIGITS, load_mnist, load_mnist_split
from jaxcnn.data.noise import make_noisy_mnist, parse_corruption
from jaxcnn.errors import CheckpointError, DataError
from jaxcnn.experiments.part3.config import MADE_DIR, PART1_DATA, PART1_PREPROCESS, REPLICA, TASK_SET, Part3Config
from jaxcnn.processes import on_primary
from jaxcnn.rundir import write_json
from jaxcnn.training.checkpoint import has_checkpoints, load_run
from jaxcnn.training.loop import fit
from jaxcnn.training.transfer import pretrained_variables

logger = logging.getLogger("jaxcnn")


@dataclasses.dataclass(frozen=True)
class Place:
    """Where part 3 reads and writes: the data root, its (claimed) work directory, the cache of
    decoded images, and what ``fit`` does with a run already in a model's folder."""

    data_root: Path
    workdir: Path
    resume: bool = False
    overwrite: bool = False
    cache_dir: Path | None = None

    def fit(self, name: str, train: ArrayDataset, test: ArrayDataset | None, config: TrainConfig, **kwargs):
        """``training.loop.fit`` into ``workdir/name`` (``init`` and ``meta`` through ``kwargs``)."""
        return fit(train, test, config, self.workdir / name, resume=self.resume, overwrite=self.overwrite, **kwargs)


@dataclasses.dataclass(frozen=True)
class Part1Trunk:
    """Part 1's best checkpoint (its first seed), whose trunk is grafted, and where it came from
    (``pretrained_variables``' record)."""

    variables: dict
    source: dict


@dataclasses.dataclass(frozen=True)
class Oracle:
    """A model of clean MNIST: its state, the batch it predicts in, and where it came from."""

    state: object
    eval_batch_size: int
    source: str


# --- the corrupted set ------------------------------------------------------------------------


def noisy_source(cfg: Part3Config, place: Place) -> tuple[Path, str]:
    """Where the corrupted set is, and its origin: ``given`` (``cfg.data``, a folder or zip), ``task``
    (the task's own set in the data root, ``mnistTask3.zip`` or ``mnistTask3/``), or ``replica``
    (made here: ``cfg.data == "replica"``, or no task set in the data root)."""
    if cfg.data and cfg.data != REPLICA:
        return Path(cfg.data), "given"
    root = place.data_root
    found = [] if cfg.data == REPLICA else [root / name for name in TASK_SET if (root / name).exists()]
    if found:
        return found[0], "task"
    if cfg.data != REPLICA:
        logger.info("part 3: no %s in %s, so part 3 runs on a replica made here", " or ".join(TASK_SET), root)
    return make_default_set(cfg, place), "replica"


def make_default_set(cfg: Part3Config, place: Place) -> Path:
    """``WORKDIR/noisy-mnist.zip``: MNIST train (or a balanced subset) with ``cfg.corruption`` planted,
    in the original's form (JPEGs under ``mnistTask/``, a Mac zip). Made by process 0 alone.

    An existing set is reused when it was made with the same settings (``noisy-mnist.made.json``
    records them, not the truth); ``place.overwrite`` remakes it. The returned summary of
    ``make_noisy_mnist`` is not kept: it holds the planted corruption, which the study must find
    for itself.
    """
    out = place.workdir / f"{MADE_DIR}.zip"
    on_primary(lambda: _make_default_set(cfg, place), f"{out}: making it")
    return out


def _make_default_set(cfg: Part3Config, place: Place) -> Path:
    out = place.workdir / f"{MADE_DIR}.zip"
    record = place.workdir / f"{MADE_DIR}.made.json"
    settings = {"corruption": str(parse_corruption(cfg.corruption)), "seed": cfg.corruption_seed,
                "size": cfg.noisy_size, "draw_seed": cfg.draw_seed}
    if out.exists() and not place.overwrite:
        if record.is_file() and json.loads(record.read_text()) == settings:
            logger.info("part 3: reusing the corrupted set made earlier in %s", out)
            return out
        raise DataError(f"{out}: holds a corrupted set made with other settings; pass --overwrite to remake it")
    train = load_mnist(place.data_root, "train")
    if cfg.noisy_size:
        train = train.subset(balanced_subset(train.labels, cfg.noisy_size, cfg.draw_seed))
    logger.info("part 3: making the replica: %d MNIST training images, "
                "corruption %s, seed %d, in %s", len(train), settings["corruption"], cfg.corruption_seed, out)
    make_noisy_mnist(train.images, train.labels, out, cfg.corruption, cfg.corruption_seed, overwrite=True, as_zip=True)
    write_json(record, settings)
    return out


def load_noisy(cfg: Part3Config, source: Path, cache_dir=None) -> ArrayDataset:
    """The corrupted set's images with their folder labels (a balanced subset if ``noisy_size``)."""
    data = load_class_folders(source, class_names=DIGITS, cache_dir=cache_dir, exact=True)
    if cfg.noisy_size and cfg.noisy_size < len(data):
        data = data.subset(balanced_subset(data.labels, cfg.noisy_size, cfg.draw_seed))
    return data


# --- the two models the study starts from -----------------------------------------------------


def trunk_widths(variables: dict) -> tuple[int, ...]:
    """The output channels of each conv block of a model's trunk, from its parameters."""
    trunk = variables["params"]["trunk"]
    firsts = sorted((k for k in trunk if k.startswith("conv") and k.endswith("_0")), key=lambda k: int(k[4:-2]))
    return tuple(int(trunk[k]["kernel"].shape[-1]) for k in firsts)


def part1_trunk(cfg: Part3Config, part1_run: Path | None, place: Place) -> Part1Trunk:
    """Part 1's best checkpoint (its first seed) and where it came from (see ``pretrained_variables``).

    With ``train_part1_if_missing``, a missing checkpoint, or one whose trunk does not fit
    ``cfg.model`` (a full part 1 for a quick part 3), is replaced by a quick part 1 trained in
    ``WORKDIR/part1-quick`` (``cfg.part1_fallback`` on part 1's characters); without it, either is
    an error that says what to do.
    """
    if part1_run and has_checkpoints(part1_run):
        variables, record = pretrained_variables(part1_run, "best")
        if trunk_widths(variables) == tuple(cfg.model.widths):
            return Part1Trunk(variables, record)
        problem = (f"{part1_run}: its trunk has widths {trunk_widths(variables)}, part 3's model "
                   f"{tuple(cfg.model.widths)}; set model.widths to match")
    else:
        problem = (f"{part1_run or 'no part-1 run given'}: no part-1 checkpoint; run part 1 first "
                   "(python experiments/part1.py) or point --part1-run at its work directory")
    if not cfg.train_part1_if_missing:
        raise CheckpointError(problem)
    logger.info("part 3: %s; training a quick part 1 in %s instead", problem.split(";")[0], place.workdir / "part1-quick")
    characters = load_chars74k(place.data_root / PART1_DATA, cache_dir=place.cache_dir, preprocess=PART1_PREPROCESS)
    place.fit("part1-quick", characters, None, cfg.part1_fallback, meta={"preprocess": PART1_PREPROCESS})
    return Part1Trunk(*pretrained_variables(place.workdir / "part1-quick", "best"))


def clean_oracle(cfg: Part3Config, oracle_run: Path | None, test: ArrayDataset | None, place: Place) -> Oracle:
    """A model of clean MNIST: ``oracle_run`` (its last epoch) if it holds a run and
    ``cfg.use_oracle_run``, else a reference trained here on clean MNIST train in
    ``WORKDIR/reference``; the test set only draws its learning curve."""
    if cfg.use_oracle_run and oracle_run and has_checkpoints(oracle_run):
        state, ref_cfg, class_names, epoch = load_run(oracle_run, "latest")
        if tuple(class_names) != DIGITS:
            raise CheckpointError(f"{oracle_run}: classifies {class_names}, not the digits 0-9")
        return Oracle(state, ref_cfg.eval_batch_size, f"{oracle_run} (epoch {epoch})")
    train = load_mnist_split(place.data_root, "train", cfg.reference_size, cfg.draw_seed + 1)
    logger.info("part 3: training a clean reference (the oracle) on %d MNIST training images", len(train))
    state, _ = place.fit("reference", train, test, cfg.reference)
    return Oracle(state, cfg.reference.eval_batch_size, f"trained here on {len(train)} clean MNIST training images")
