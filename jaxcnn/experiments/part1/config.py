"""Part 1's configuration and its data: the recipe, shared by the final model (``final``) and the
folds that judge it (``folds``), and where part 1's characters are, which parts 2 and 3 read too."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxcnn.config import ModelConfig, TrainConfig
from jaxcnn.data.chars74k import CLASS_NAMES, FOLD_PROTOCOLS, PREPROCESSORS, load_chars74k
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.errors import require
from jaxcnn.experiments import check_profile
from jaxcnn.training.loop import trained_images

# Part 1's data: the task's training scans of every Chars74K class, as ``download`` unpacks them.
DATA_SUBDIR = "trainPart1"  # in the data root
PREPROCESS = "mnist"  # how part 1 prepares them (a name of ``PREPROCESSORS``): the MNIST convention
IMAGES_PER_CLASS = 40  # the task's training scans: 40 writers of each character


@dataclasses.dataclass(frozen=True)
class Part1Config:
    """What part 1 trains on and how; ``classes`` empty means all of ``CLASS_NAMES`` (62).

    ``folds``: the folds of ``cv`` and ``ablate``, ``folds_by`` "class" (class-stratified images, as
    the task's test) or "writer".
    """

    train: TrainConfig = TrainConfig(seeds=(0, 1, 2), model=ModelConfig(page_geometry=True))
    classes: tuple[str, ...] = ()
    preprocess: str = PREPROCESS
    data_subdir: str = DATA_SUBDIR
    folds: int = 5
    folds_by: str = "class"

    def __post_init__(self):
        require(self, "classes", all(c in CLASS_NAMES for c in self.classes) and len(set(self.classes)) == len(
            self.classes), "distinct Chars74K class names (0-9, A-Z, a-z), or empty for all 62")
        require(self, "folds", self.folds >= 2, "at least 2 (the folds of cv and ablate)")
        require(self, "folds_by", self.folds_by in FOLD_PROTOCOLS, f"one of {', '.join(FOLD_PROTOCOLS)}")
        require(self, "preprocess", self.preprocess in PREPROCESSORS, f"one of {', '.join(PREPROCESSORS)}")


def get_config(profile: str = "full") -> Part1Config:
    """The study's configuration for ``profile`` (``jaxcnn.experiments.PROFILES``): the recipe for
    "full" and "cpu" (about 17 minutes on 2 cores), tiny and fast for "quick" (CI, smoke tests)."""
    if check_profile(profile) != "quick":
        return Part1Config()
    return Part1Config(train=TrainConfig(seeds=(0, 1), epochs=2, batch_size=64,
                                         model=ModelConfig(widths=(8, 16, 32), hidden=32, page_geometry=True)),
                       folds=2)


def planned_images(cfg: Part1Config) -> int:
    """The training images of the final model (``run``), all seeds and epochs together."""
    return trained_images(IMAGES_PER_CLASS * len(cfg.classes or CLASS_NAMES), cfg.train)


def load_data(cfg: Part1Config, data_root: Path, cache_dir=None) -> ArrayDataset:
    """Every image of the training writers, cropped to the model's ``image_size``; ``groups`` are the writers."""
    return load_chars74k(data_root / cfg.data_subdir, classes=list(cfg.classes) or None,
                         cache_dir=cache_dir, preprocess=cfg.preprocess, size=cfg.train.model.image_size)


def input_meta(cfg: Part1Config) -> dict:
    """Saved with every part-1 checkpoint: ``evaluate`` preprocesses new images the same way (the
    crop size is the saved config's ``model.image_size``)."""
    return {"preprocess": cfg.preprocess}
