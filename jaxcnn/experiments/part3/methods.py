"""Part 3's learning methods: which labels and loss each model trains with, when it fits the
diagnosed kind of noise, and the pseudo-labels a self-trained model learns. Pure: nothing here
trains or reads a file."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from jaxcnn.config import TrainConfig
from jaxcnn.data.mnist import CLASS_NAMES as DIGITS
from jaxcnn.evaluation.transitions import correct_labels

if TYPE_CHECKING:
    from jaxcnn.experiments.part3.config import Part3Config

K = len(DIGITS)
COMPLEMENTARY_T = tuple(tuple((1.0 - np.eye(K)[i]) / (K - 1)) for i in range(K))  # (J - I)/(K - 1)
TRUNK = "_trunk"  # a model name ending in it starts from the part-1 trunk, else from scratch


@dataclasses.dataclass(frozen=True)
class Method:
    """How a model learns: its labels (``folder``, ``relabelled`` by the oracle's mapping,
    ``oracle`` predictions, ``pseudo`` labels of a teacher), its loss, and what it needs."""

    label: str
    labels: str
    loss: str
    uses_clean_labels: bool
    fits: tuple[str, ...] = ()  # the diagnosed kinds it is meant for (empty: any)
    view: str = "oracle_free"  # whose diagnosis decides whether it fits


METHODS = {
    "folder": Method("folder labels, cross-entropy", "folder", "cross_entropy", False),
    "comp_forward": Method("complementary: forward correction, T = (J - I)/9", "folder", "forward", False,
                           ("complementary",)),
    "comp_nn": Method("complementary: non-negative risk (Ishida et al.)", "folder", "complementary_nn", False,
                      ("complementary",)),
    "self_train": Method("self-training on the teacher's pseudo-labels", "pseudo", "cross_entropy", False),
    "relabel": Method("relabelled by the oracle's mapping", "relabelled", "cross_entropy", True,
                      ("permutation", "clean", "symmetric", "pair_flip"), "oracle"),
    "forward": Method("forward correction with the oracle's T", "folder", "forward", True, (), "oracle"),
    "oracle_relabel": Method("the oracle's labels (upper bound)", "oracle", "cross_entropy", True, (), "oracle"),
}


def method_of(name: str) -> tuple[Method, bool]:
    """A model name -> (its method, whether it starts from the part-1 trunk): ``comp_forward_trunk``."""
    base = name.removesuffix(TRUNK)
    if base not in METHODS or base == "folder":
        raise ValueError(f"unknown model {name!r}: a method of {sorted(set(METHODS) - {'folder'})}, "
                         f"optionally with '{TRUNK}' (from the part-1 trunk)")
    return METHODS[base], name.endswith(TRUNK)


def teacher_of(cfg: Part3Config, name: str) -> str:
    """The teacher of a self-training model: ``cfg.teacher`` from the same start."""
    return cfg.teacher + (TRUNK if name.endswith(TRUNK) else "")


def trunk_pairs(models) -> dict[str, str]:
    """Each model from the part-1 trunk and its partner from scratch (same method), where both are in ``models``."""
    pairs = {"pretrained": "scratch", **{name: name.removesuffix(TRUNK) for name in models if name.endswith(TRUNK)}}
    return {a: b for a, b in pairs.items() if a in models and b in models}


@dataclasses.dataclass(frozen=True)
class Reading:
    """What the methods need of the diagnosis (``diagnosis.reading``): each view's kind, and the
    oracle view's mapping (digit -> folder), whether it is a permutation, and its T."""

    kinds: dict  # view ("oracle", "oracle_free") -> kind
    mapping: tuple[int, ...]
    is_permutation: bool
    transition: tuple[tuple[float, ...], ...]


def fits(method: Method, reading: Reading) -> str | None:
    """Why ``method`` does not fit the diagnosis (None if it does)."""
    kind = reading.kinds[method.view]
    if method.fits and kind not in method.fits:
        return f"meant for {' or '.join(method.fits)} labels; the {method.view.replace('_', '-')} view reads {kind}"
    if method.labels == "relabelled" and not reading.is_permutation:
        return f"the oracle's mapping {list(reading.mapping)} is not a permutation"
    return None


def labels_for(method: Method, folder, reading: Reading, oracle_digits) -> np.ndarray:
    """The labels a method trains on (``pseudo`` ones come from the teacher, later: ``pseudo_labels``)."""
    if method.labels == "relabelled":
        return correct_labels(folder, list(reading.mapping))
    return np.asarray(oracle_digits if method.labels == "oracle" else folder, np.int32)


def train_config(cfg: Part3Config, method: Method, reading: Reading, epochs: int = 0) -> TrainConfig:
    """``cfg.train`` with the method's loss (and T for forward correction) and ``epochs`` (0: as it is)."""
    transition = ()
    if method.loss == "forward":
        transition = COMPLEMENTARY_T if method.labels == "folder" and not method.uses_clean_labels else \
            reading.transition
    return dataclasses.replace(cfg.train, loss=method.loss, label_transition=transition,
                               epochs=epochs or cfg.train.epochs)


def pseudo_labels(probs, folders, cfg: Part3Config, teacher: Method, reading: Reading) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's labels for the training images, from its predictions ``probs`` [N, K] of the
    images in ``folders``: ``(indices kept, labels)``.

    The posterior given the image *and* its folder, P(y | x, folder) ∝ p(y | x) T[y, folder] with
    the T of the teacher's label model (the known complementary form for a complementary method,
    the forward-corrected T, else none), so a complementary folder rules its own digit out; images
    whose posterior is below ``self_train_confidence`` are left out. A teacher without clean labels
    makes a student without them.
    """
    T = np.asarray(COMPLEMENTARY_T if "complementary" in teacher.fits else
                   train_config(cfg, teacher, reading).label_transition or np.eye(K))
    posterior = np.asarray(probs) * T[:, np.asarray(folders)].T
    posterior /= np.maximum(posterior.sum(1, keepdims=True), 1e-12)
    keep = np.flatnonzero(posterior.max(1) >= cfg.self_train_confidence)
    return keep, posterior.argmax(1)[keep].astype(np.int32)
