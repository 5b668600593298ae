"""What the parts share: MNIST's training recipe and class-balanced subsets, and the pieces of
their report sections (a part not run yet, the figures a part wrote)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxcnn.config import AugmentConfig, TrainConfig
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.data.mnist import load_mnist
from jaxcnn.document import Figure, Text

# MNIST digits are already size-normalised and centred, so they vary less than the part-1 images:
# milder distortions than part 1's, still enough to regularise a 15-epoch run.
MNIST_AUGMENT = AugmentConfig(rotate_deg=8.0, scale=0.08, shear_deg=8.0, shift_px=2.0)
# How parts 2 (B, C) and 3 (every model) learn MNIST: 15 epochs of batch 128, 5 seeds side by side.
MNIST_TRAIN = TrainConfig(seeds=(0, 1, 2, 3, 4), epochs=15, batch_size=128, learning_rate=2e-3, weight_decay=5e-4,
                          warmup_epochs=1, label_smoothing=0.0, augment=MNIST_AUGMENT, probe_every=50)


def balanced_subset(labels, size: int, seed: int) -> np.ndarray:
    """Sorted indices of ``size`` examples, as equal per class as possible, drawn with ``seed``.

    Each class's examples are shuffled once by ``seed`` and the first ones taken, so a smaller
    subset is contained in a larger one; the first ``size % classes`` classes get one extra.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if not 0 < size <= len(labels):
        raise ValueError(f"subset size must be in 1..{len(labels)}, got {size}")
    rng = np.random.default_rng(seed)
    chosen = []
    for rank, c in enumerate(classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        want = size // len(classes) + (rank < size % len(classes))
        if want > len(members):
            raise ValueError(f"a class-balanced subset of {size} needs {want} examples of class {c}, "
                             f"which has {len(members)}")
        chosen.append(members[:want])
    return np.sort(np.concatenate(chosen))


def load_mnist_split(data_root: Path, split: str, size: int, seed: int) -> ArrayDataset:
    """A clean MNIST split, whole or as a class-balanced subset of ``size``."""
    data = load_mnist(data_root, split)
    return data.subset(balanced_subset(data.labels, size, seed)) if size else data


def not_run(part: str) -> Text:
    return Text(f"Not run yet: run `python experiments/{part}.py` (or `python -m jaxcnn study` for the whole study).")


def part_figures(part_dir: Path, captions: dict[str, str]) -> list[Figure]:
    """The PNGs a part wrote in its work directory (evaluation figures excepted), those of
    ``captions`` first, in its order; the others follow, captioned from their names."""
    paths = sorted((p for p in Path(part_dir).glob("*.png") if not p.name.startswith("eval_")),
                   key=lambda p: (list(captions).index(p.name) if p.name in captions else len(captions), p.name))
    return [Figure(p, captions.get(p.name) or figure_caption(p)) for p in paths]


def figure_caption(path: Path) -> str:
    if path.stem.startswith("confusion_"):
        return f"Confusion matrix of {path.stem.removeprefix('confusion_')} (ensemble, rows normalised)."
    return path.stem.replace("_", " ").capitalize() + "."


def drawn_figures(folder: Path, captions: dict[str, str], missing: dict[str, str]) -> list:
    """The figures of ``captions`` drawn in ``folder`` (by ``write_plots`` from a part's results), in
    order; one whose data the results lack (``missing``: file name -> what is lacking) is named as
    missing, not left out."""
    return [Text(f"Figure `{name}` ({caption.rstrip('.')}) is missing: {missing[name]}.") if name in missing
            else Figure(Path(folder) / name, caption) for name, caption in captions.items()]
