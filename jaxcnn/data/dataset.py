"""The one in-memory data set type every loader returns."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """Images in the MNIST convention with integer labels.

    images: uint8 [N, 28, 28], white ink on black, 0..255.
    labels: int32 [N], indices into ``class_names``.
    groups: int32 [N], the writer of each image where known, else -1.
    class_names: the label of each class index, e.g. ("0", ..., "9").
    """

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self):
        n = len(self.images)
        if self.images.shape[1:] != (28, 28) or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N, 28, 28], got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (n,) or self.groups.shape != (n,):
            raise ValueError("labels and groups must have one entry per image")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index) -> "ArrayDataset":
        """The images selected by a boolean mask or an index array."""
        return ArrayDataset(self.images[index], self.labels[index], self.groups[index], self.class_names)
