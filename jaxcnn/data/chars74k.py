"""Load the Chars74K EnglishHnd layout: ``Sample001``..``Sample062`` folders of ``imgCCC-SSS.png``.

Classes are ``0-9``, ``A-Z``, ``a-z`` in folder order; CCC is the 1-based class and SSS the writer.
The folders may sit at the top of a folder or zip, or under one place inside it (``train/``).
Every requested class must be present and non-empty and every image readable: the loader stops
with a DataError rather than return a data set with fewer classes or images than the files hold.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import string

import numpy as np

from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.data.imagefiles import ImageListing, cached_dataset, fingerprint, list_images, preprocess_all
from jaxcnn.data.preprocess import (PREPROCESS_VERSION, keep_stroke_width, page_geometry, stretch_to_box,
                                    to_mnist_convention)
from jaxcnn.errors import DataError
from jaxcnn.paths import DOWNLOAD_HINT

logger = logging.getLogger("jaxcnn")

CLASS_NAMES = tuple(string.digits + string.ascii_uppercase + string.ascii_lowercase)
DIGIT_CLASSES = CLASS_NAMES[:10]
PREPROCESSORS = {"mnist": to_mnist_convention, "keep_stroke_width": keep_stroke_width, "stretch": stretch_to_box}
MIN_SIZE, MAX_SIZE = 16, 128  # crop sides (pixels) ``load_chars74k`` accepts

_SAMPLE_FOLDER = re.compile(r"Sample(\d{3})")
_FILE_NAME = re.compile(r"img(\d{3})-(\d{3})\.\w+")


def class_folder(class_name: str) -> str:
    """The folder of a class, e.g. ``Sample011`` for ``A``."""
    return f"Sample{CLASS_NAMES.index(class_name) + 1:03d}"


def has_sample_folders(source: str | os.PathLike) -> bool:
    """Whether ``source`` holds a SampleNNN folder anywhere: it is meant to be in the Chars74K layout."""
    return any(_SAMPLE_FOLDER.fullmatch(folder.rpartition("/")[2]) for folder in list_images(source).folders)


def _layout_root(listing: ImageListing) -> str:
    split = (folder.rpartition("/") for folder in listing.folders)
    roots = sorted({parent for parent, _, name in split if _SAMPLE_FOLDER.fullmatch(name)})
    if len(roots) == 1:
        return roots[0]
    if roots:
        places = ", ".join(r or "the top" for r in roots)
        raise DataError(f"{listing.source}: Sample folders in {len(roots)} places ({places}); point to one of them")
    top = sorted(f for f in listing.folders if "/" not in f) or [e.name for e in listing.entries] or ["nothing"]
    found = ", ".join(top[:5]) + (f" and {len(top) - 5} more" if len(top) > 5 else "")
    raise DataError(
        f"{listing.source}: expected Chars74K folders Sample001..Sample062 (at the top or under one folder), "
        f"found {found}"
    )


def load_chars74k(
    source: str | os.PathLike,
    *,
    classes=None,
    cache_dir: str | os.PathLike | None = None,
    preprocess: str = "mnist",
    size: int = 28,
) -> ArrayDataset:
    """Chars74K images in the MNIST convention with their page geometry; labels index ``classes``,
    groups are writers (parsed from the file names, for splits and reports only: never an input).

    ``classes``: class names to load (default all 62, e.g. DIGIT_CLASSES for 10). ``preprocess``: a
    name in ``PREPROCESSORS``: "mnist" (crop, fit, centre), "keep_stroke_width" or "stretch" (crop,
    stretch to 20x20). ``size``: the side of the square crop (28 as MNIST; box and margin scale with
    it). Results are cached in ``cache_dir``, one entry per preprocessing and size.
    """
    class_names = _check_classes(classes)
    if preprocess not in PREPROCESSORS:
        raise ValueError(f"preprocess must be one of {sorted(PREPROCESSORS)}, got {preprocess!r}")
    if not os.path.exists(source):
        raise DataError(f"{source}: no such folder or zip file; {DOWNLOAD_HINT}")
    listing = list_images(source)
    root = _layout_root(listing)
    files = _class_files(listing, root, class_names)
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be in {MIN_SIZE}..{MAX_SIZE} pixels, got {size}")
    # size 28 keeps the key it had before sizes existed, so caches made then stay valid
    key = fingerprint(listing, [entry for entry, _, _ in files], "chars74k", PREPROCESS_VERSION, preprocess,
                      class_names, *([size] if size != 28 else []))
    build = functools.partial(_build, listing, files, functools.partial(PREPROCESSORS[preprocess], size=size),
                              class_names, size)
    return cached_dataset(cache_dir, "chars74k", key, build)


def _check_classes(classes) -> tuple[str, ...]:
    if classes is None:
        return CLASS_NAMES
    names = tuple(classes)
    unknown = [c for c in names if c not in CLASS_NAMES]
    if unknown or len(set(names)) != len(names) or not names:
        raise ValueError(f"classes must be distinct Chars74K class names (0-9, A-Z, a-z), got {list(names)}")
    return names


def _class_files(listing: ImageListing, root: str, class_names) -> list:
    """(entry, label, writer) for every image of the requested classes, checking names and folders."""
    prefix = root + "/" if root else ""
    by_folder = {}
    for entry in listing.entries:
        folder, _, file_name = entry.name.rpartition("/")
        by_folder.setdefault(folder, []).append((entry, file_name))
    wanted = {prefix + class_folder(c) for c in class_names}
    _report_ignored(listing, prefix, by_folder, wanted)
    files, seen = [], {}
    for label, class_name in enumerate(class_names):
        folder = prefix + class_folder(class_name)
        where = f"{listing.source}/{folder}"
        if folder not in listing.folders:
            raise DataError(f"{where}: missing class folder for class '{class_name}'")
        if folder not in by_folder:
            raise DataError(f"{where}: class folder for class '{class_name}' has no images")
        for entry, file_name in by_folder[folder]:
            match = _FILE_NAME.fullmatch(file_name)
            if not match or match[1] != folder[-3:]:
                raise DataError(
                    f"{listing.describe(entry)}: expected a name like img{folder[-3:]}-001.png "
                    f"(imgCCC-SSS with class CCC = {folder[-3:]} of its folder, SSS the writer)"
                )
            twin = seen.setdefault((label, match[2]), entry)
            if twin is not entry:
                raise DataError(f"{listing.describe(twin)} and {listing.describe(entry)}: two images of class "
                                f"'{class_name}' by writer {int(match[2])}; keep one of them")
            files.append((entry, label, int(match[2])))
    return files


def _report_ignored(listing: ImageListing, prefix: str, by_folder: dict, wanted: set) -> None:
    """Refuse Sample folders beyond Sample062; log images in folders that are not Sample folders."""
    for folder in listing.folders:
        match = _SAMPLE_FOLDER.fullmatch(folder[len(prefix):]) if folder.startswith(prefix) else None
        if match and not 1 <= int(match[1]) <= len(CLASS_NAMES):
            raise DataError(f"{listing.source}/{folder}: no such Chars74K class (Sample001..Sample062)")
    outside = [f for f in by_folder if f not in wanted and not _SAMPLE_FOLDER.fullmatch(f[len(prefix):])]
    if outside:
        count = sum(len(by_folder[f]) for f in outside)
        shown = ", ".join((f or "(top)") for f in outside[:3])
        logger.warning("%s: ignored %d images outside the Sample folders (in %s)", listing.source, count, shown)


def _build(listing: ImageListing, files, preprocess, class_names, size: int) -> ArrayDataset:
    images, geometry = preprocess_all(listing, [entry for entry, _, _ in files], preprocess, page_geometry, size)
    labels = np.array([label for _, label, _ in files], np.int32)
    writers = np.array([writer for _, _, writer in files], np.int32)
    return ArrayDataset(images, labels, writers, tuple(class_names), geometry)


def writer_split(dataset: ArrayDataset, val_writers) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, val) split by writer, so no writer's handwriting is in both."""
    in_val = np.isin(dataset.groups, list(val_writers))
    if not in_val.any() or in_val.all():
        raise DataError(
            f"writer split leaves an empty side: validation writers {list(val_writers)}, "
            f"data set writers {np.unique(dataset.groups).tolist()}"
        )
    return dataset.subset(~in_val), dataset.subset(in_val)


FOLD_PROTOCOLS = ("class", "writer")


def fold_indices(dataset: ArrayDataset, k: int, by: str = "class", seed: int = 0) -> list[np.ndarray]:
    """The validation images (sorted indices) of each of ``k`` folds; every image is in one fold.

    ``by="class"``: each class's images dealt in a seeded random order over the folds, so every fold
    holds every class and a writer's other characters stay in training, as in the task's held-back
    test (per class, 15 writers not in training; each (class, writer) pair occurs once).
    ``by="writer"``: whole writers held out (``writer_folds``), the stricter "new writer" question.
    """
    if by == "writer":
        return [np.flatnonzero(np.isin(dataset.groups, w)) for w in writer_folds(dataset.groups, k)]
    if by != "class":
        raise ValueError(f"folds by must be one of {', '.join(FOLD_PROTOCOLS)}, got {by!r}")
    smallest = np.bincount(dataset.labels, minlength=dataset.num_classes).min() if len(dataset) else 0
    if not 2 <= k <= smallest:
        raise ValueError(f"k must be between 2 and the images of the smallest class ({smallest}), got {k}")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(dataset), np.int64)
    for label in np.unique(dataset.labels):
        members = rng.permutation(np.flatnonzero(dataset.labels == label))
        fold_of[members] = np.arange(len(members)) % k
    return [np.flatnonzero(fold_of == i) for i in range(k)]


def writer_folds(writers, k: int) -> list[tuple[int, ...]]:
    """The validation writers of each of ``k`` folds: the sorted writers in contiguous chunks."""
    unique = np.unique(np.asarray(list(writers)))
    if not 2 <= k <= len(unique):
        raise ValueError(f"k must be between 2 and the number of writers ({len(unique)}), got {k}")
    return [tuple(int(w) for w in chunk) for chunk in np.array_split(unique, k)]
