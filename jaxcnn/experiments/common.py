"""What parts 2 and 3 share: MNIST's augmentation and class-balanced subsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxcnn.config import AugmentConfig
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.data.mnist import load_mnist

# MNIST digits are already size-normalised and centred, so they vary less than the part-1 images:
# milder distortions than part 1's, still enough to regularise a 15-epoch run.
MNIST_AUGMENT = AugmentConfig(rotate_deg=8.0, scale=0.08, shear_deg=8.0, shift_px=2.0)


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
