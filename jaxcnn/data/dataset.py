"""The one in-memory data set type every loader returns, and class-balanced subsets of one."""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxcnn.errors import DataError


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """Images in the MNIST convention with integer labels.

    images: uint8 [N, S, S], white ink on black, 0..255 (S = 28 for MNIST; part 1 may crop larger).
    labels: int32 [N], indices into ``class_names``.
    groups: int32 [N], the writer of each image where known, else -1 (never a model input).
    class_names: the label of each class index, e.g. ("0", ..., "9").
    geometry: float32 [N, F], where the character sat on its page (``preprocess.page_geometry``),
    for images cut from page scans; None for images that never had a page (MNIST).
    """

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    class_names: tuple[str, ...]
    geometry: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.images)
        if self.images.ndim != 3 or self.images.shape[1] != self.images.shape[2] or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N, S, S], got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (n,) or self.groups.shape != (n,):
            raise ValueError("labels and groups must have one entry per image")
        if self.geometry is not None and (self.geometry.ndim != 2 or len(self.geometry) != n):
            raise ValueError(f"geometry must be float [N, F] with N = {n}, got shape {self.geometry.shape}")

    @property
    def image_size(self) -> int:
        return self.images.shape[1]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index) -> "ArrayDataset":
        """The images selected by a boolean mask or an index array."""
        geometry = None if self.geometry is None else self.geometry[index]
        return ArrayDataset(self.images[index], self.labels[index], self.groups[index], self.class_names, geometry)

    def inputs(self, page_geometry: bool = False) -> dict:
        """What a model sees of each image: ``{"image"}``, with ``"geometry"`` when asked for.

        Labels and groups (writers) are never inputs: a prediction comes from pixels alone.
        """
        if not page_geometry:
            return {"image": self.images}
        if self.geometry is None:
            raise DataError("model.page_geometry needs images cut from page scans (Chars74K); this data set "
                            "has no page geometry: set model.page_geometry=false")
        return {"image": self.images, "geometry": self.geometry}


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
