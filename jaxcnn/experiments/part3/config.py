"""Part 3's configuration: what it trains on and how (``Part3Config``), the study's profiles of it
(``get_config``) and the training images it plans (``planned_images``). Its models are named by the
methods of ``methods``, which the config checks."""

from __future__ import annotations

import dataclasses

from jaxcnn.config import AugmentConfig, ModelConfig, TrainConfig
from jaxcnn.data import mnist
from jaxcnn.experiments import check_profile
from jaxcnn.experiments.common import MNIST_TRAIN
from jaxcnn.experiments.part1.config import DATA_SUBDIR as PART1_DATA, PREPROCESS as PART1_PREPROCESS
from jaxcnn.experiments.part3.methods import METHODS, TRUNK, method_of, teacher_of
from jaxcnn.training.loop import trained_images
from jaxcnn.training.transfer import KEEP_HEAD_FRESH


MADE_DIR = "noisy-mnist"  # made as WORKDIR/noisy-mnist.zip, in the original's form
TASK_SET = ("mnistTask3.zip", "mnistTask3")  # the task's own set, looked for in the data root
REPLICA = "replica"  # ``data`` that asks for the replica even where the task's set is present


@dataclasses.dataclass(frozen=True)
class Part3Config:
    """What part 3 trains on and how.

    ``data``: the corrupted class-folder set (folder or zip); empty means the task's own set in the
    data root (``TASK_SET``), and where it is absent, or with ``"replica"``, a replica made as
    ``WORKDIR/noisy-mnist.zip`` from MNIST train with ``corruption`` and ``corruption_seed``.
    ``noisy_size``/``test_size``/``reference_size``: 0 uses everything, else a class-balanced subset
    (of the folders by folder label, of MNIST test, of MNIST train for the oracle) drawn with ``draw_seed``.
    Part 1's run (``part1_run``, whose trunk is grafted) and the oracle's (``oracle_run``, part 2's
    B) are ``run``'s arguments, not fields. Without a part-1 checkpoint whose trunk fits ``model``,
    ``train_part1_if_missing`` trains one with ``part1_fallback`` (part 1's quick recipe) on part 1's
    data in ``WORKDIR/part1-quick``, else it is an error.
    ``use_oracle_run``: the oracle is ``oracle_run`` when it holds a run; false, or without one, a
    reference is trained on clean MNIST train with ``reference`` in ``WORKDIR/reference``.
    ``min_confidence``: oracle predictions below it are left out of the estimate.
    ``free_size``/``free_folds``/``free_train``: the oracle-free diagnosis, a ``free_folds``-fold
    cross-validation of a model of the folder labels on ``free_size`` images (0: all).
    ``baseline_epochs``: epochs of ``scratch`` and ``pretrained``, the models of the folder labels
    (0: ``train.epochs``), trained last. ``models``: the other models, each a key of ``METHODS`` (``_trunk``: from the
    part-1 trunk), trained with ``train`` when their method fits the diagnosed kind.
    ``teacher``: the method whose model (same start) labels the data for ``self_train``; pseudo-labels
    are the teacher's posterior given the image and its folder, kept at ``self_train_confidence``;
    the student trains ``self_train_epochs`` (0: ``train.epochs``), from its own start.
    ``model`` replaces the model of every training config (``SHARES_MODEL``); ``keep_fresh``:
    the layers a model from the part-1 trunk does not take from it (``fullmatch`` patterns).
    ``cka_images``: how many clean MNIST test images (class-balanced) each trunk model's features are
    compared on with the part-1 trunk's and its scratch partner's (``evaluation.cka``; 0: not).
    """

    SHARES_MODEL = ("train", "reference", "free_train", "part1_fallback")  # their ``model`` is ``model`` (see ``override``)

    data: str = ""
    corruption: str = "complementary"
    corruption_seed: int = 0
    noisy_size: int = 0
    test_size: int = 0
    reference_size: int = 0
    draw_seed: int = 0
    train_part1_if_missing: bool = False
    part1_fallback: TrainConfig = TrainConfig(seeds=(0, 1), epochs=2, batch_size=64)
    use_oracle_run: bool = True
    model: ModelConfig = ModelConfig()
    keep_fresh: tuple[str, ...] = KEEP_HEAD_FRESH
    train: TrainConfig = MNIST_TRAIN
    reference: TrainConfig = dataclasses.replace(MNIST_TRAIN, seeds=(0,), epochs=10, probe_every=0)
    min_confidence: float = 0.9
    free_size: int = 12000
    free_folds: int = 2
    free_train: TrainConfig = dataclasses.replace(MNIST_TRAIN, seeds=(0,), epochs=3, probe_every=0)
    baseline_epochs: int = 0
    models: tuple[str, ...] = ("comp_forward", "comp_forward_trunk", "comp_nn", "comp_nn_trunk", "self_train",
                               "self_train_trunk", "relabel", "forward", "oracle_relabel")
    teacher: str = "comp_forward"
    self_train_confidence: float = 0.9
    self_train_epochs: int = 0
    thresholds: tuple[float, ...] = (0.98, 0.99, 0.995)
    samples_per_folder: int = 8
    cka_images: int = 1000

    def __post_init__(self):
        for field in self.SHARES_MODEL:
            object.__setattr__(self, field, dataclasses.replace(getattr(self, field), model=self.model))
        for name in self.models:
            method_of(name)
        method_of(self.teacher)
        if self.teacher.endswith(TRUNK) or METHODS[self.teacher].labels == "pseudo":
            raise ValueError(f"teacher must be a method without '{TRUNK}' and not self_train, got {self.teacher!r}")
        for i, name in enumerate(self.models):
            if method_of(name)[0].labels == "pseudo" and teacher_of(self, name) not in self.models[:i]:
                raise ValueError(f"{name} learns from {teacher_of(self, name)}: list it before {name} in models")
        if self.free_folds < 2:
            raise ValueError(f"free_folds must be at least 2, got {self.free_folds}")


def get_config(profile: str = "full") -> Part3Config:
    """The study's configuration for ``profile`` (``jaxcnn.experiments.PROFILES``). "cpu": the full
    models at 2 seeds for 2 epochs, forward correction from scratch and from the part-1 trunk and the
    trunk's self-trained student, the folder-label baselines for 1 epoch; "quick": tiny (a few
    minutes on a CPU)."""
    cfg = Part3Config()
    if check_profile(profile) == "full":
        return cfg
    if profile == "cpu":
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seeds=(0, 1), epochs=2), baseline_epochs=1,
                                   models=("comp_forward", "comp_forward_trunk", "self_train_trunk"))
    return dataclasses.replace(
        cfg, model=ModelConfig(widths=(8, 16, 32), hidden=32),
        train=dataclasses.replace(cfg.train, seeds=(0, 1), epochs=2, batch_size=32, warmup_epochs=0),
        reference=dataclasses.replace(cfg.reference, epochs=2, batch_size=32, warmup_epochs=0,
                                      augment=AugmentConfig(0.0, 0.0, 0.0, 0.0)),
        free_train=dataclasses.replace(cfg.free_train, epochs=8, batch_size=32, warmup_epochs=0),
        noisy_size=3000, test_size=1000, reference_size=3000, free_size=3000, use_oracle_run=False, cka_images=500,
        train_part1_if_missing=True, min_confidence=0.5,
        models=("comp_forward", "comp_forward_trunk", "comp_nn", "self_train", "relabel", "forward",
                "oracle_relabel"))




def planned_images(cfg: Part3Config) -> int:
    """The training images of every model of ``cfg.models`` (some are skipped where the diagnosis
    says they do not fit), the two folder-label baselines, the oracle-free view's folds and, without
    part 2's B, the reference."""
    noisy = cfg.noisy_size or mnist.TRAIN_IMAGES  # the task's set: every MNIST training image
    free = cfg.free_size or noisy
    images = cfg.free_folds * trained_images(free - free // cfg.free_folds, cfg.free_train)
    images += 2 * trained_images(noisy, cfg.train, cfg.baseline_epochs or cfg.train.epochs)
    for name in cfg.models:
        pseudo = method_of(name)[0].labels == "pseudo"
        images += trained_images(noisy, cfg.train, (cfg.self_train_epochs if pseudo else 0) or cfg.train.epochs)
    if not cfg.use_oracle_run:
        images += trained_images(cfg.reference_size or mnist.TRAIN_IMAGES, cfg.reference)
    return images
