"""Load an MNIST-like layout: one folder per class (``0/``, ``1/``, ...), any image file names.

Images that are already 28x28 are taken as they are, only inverted when their background is white;
other sizes go through ``to_mnist_convention``. Polarity is judged by the image border (the outer
ring of pixels), not the mean: a tight crop of a thick black character can be mostly ink, but its
border is mostly paper, while an MNIST digit's border is black.
"""

from __future__ import annotations

import os

import numpy as np

from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.data.imagefiles import ImageListing, cached_dataset, fingerprint, list_images, logger, preprocess_all
from jaxcnn.data.preprocess import PREPROCESS_VERSION, SIZE, to_mnist_convention
from jaxcnn.errors import DataError


def load_class_folders(
    source: str | os.PathLike, *, class_names=None, cache_dir: str | os.PathLike | None = None,
    exact: bool = False,
) -> ArrayDataset:
    """Images from class folders in a folder or zip; labels index ``class_names``, groups are -1.

    ``class_names`` default: every class folder, in natural order (``2`` before ``10``). The class
    folders may sit under a chain of single folders (``mnist/train/0/...``, ``mnistTask/0/...``).
    ``exact``: any other folder beside the class folders is an error, not ignored.
    """
    listing = list_images(source)
    root = _class_root(listing)
    prefix = root + "/" if root else ""
    if exact and class_names is not None:
        others = sorted(set(_children(listing, root)) - set(class_names))
        if others:
            raise DataError(f"{listing.source}/{prefix}{others[0]}: not one of the class folders "
                            f"{', '.join(class_names)}; expected exactly those ({len(others)} other folders)")
    if class_names is None:
        class_names = sorted(_children(listing, root), key=lambda n: (not n.isdecimal(), int(n) if n.isdecimal() else 0, n))
        if not class_names:
            raise DataError(f"{listing.source}: expected one folder per class (0/, 1/, ...), found none")
    class_names = tuple(class_names)
    by_folder = {}
    for entry in listing.entries:
        by_folder.setdefault(entry.name.rpartition("/")[0], []).append(entry)
    files = []
    for label, name in enumerate(class_names):
        folder = prefix + name
        if folder not in listing.folders:
            raise DataError(f"{listing.source}/{folder}: missing class folder for class '{name}'")
        in_folder = by_folder.get(folder, [])
        if not in_folder:
            strays = sum(skipped.rpartition("/")[0] == folder for skipped, _ in listing.skipped)
            what = f"only {strays} files that are not images" if strays else "nothing"
            raise DataError(f"{listing.source}/{folder}: class folder for class '{name}' has no images ({what})")
        files += [(entry, label) for entry in in_folder]
    ignored = len(listing.entries) - len(files)
    if ignored:
        logger.warning("%s: ignored %d images outside the class folders", listing.source, ignored)
    key = fingerprint(listing, [entry for entry, _ in files], "classfolders", PREPROCESS_VERSION, class_names)

    def build():
        images = preprocess_all(listing, [entry for entry, _ in files], mnist_input)
        labels = np.array([label for _, label in files], np.int32)
        return ArrayDataset(images, labels, np.full(len(files), -1, np.int32), class_names)

    return cached_dataset(cache_dir, "classfolders", key, build)


def mnist_input(gray: np.ndarray) -> np.ndarray:
    """A decoded image -> uint8 [28, 28] white on black: 28x28 images as they are, others centred."""
    if _has_dark_background(gray):
        gray = 1 - gray
    if gray.shape == (SIZE, SIZE):
        return np.round((1 - gray) * 255).astype(np.uint8)
    return to_mnist_convention(gray)


def _has_dark_background(gray: np.ndarray) -> bool:
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return border.mean() < 0.5


def _class_root(listing: ImageListing) -> str:
    """Descend through single folders that hold no images of their own."""
    root = ""
    while True:
        children = _children(listing, root)
        has_images = any(e.name.rpartition("/")[0] == root for e in listing.entries)
        if len(children) != 1 or has_images or not _children(listing, _join(root, children[0])):
            return root
        root = _join(root, children[0])


def _children(listing: ImageListing, root: str) -> list[str]:
    prefix = root + "/" if root else ""
    return sorted(f[len(prefix):] for f in listing.folders if f.startswith(prefix) and "/" not in f[len(prefix):])


def _join(root: str, child: str) -> str:
    return f"{root}/{child}" if root else child
