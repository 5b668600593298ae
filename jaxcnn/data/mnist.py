"""MNIST from its IDX files: parse, verify by checksum, load, and download for online users.

Local files are verified by the SHA-256 of their decompressed content, because re-compressed copies
of the same data differ in their ``.gz`` bytes; downloads are also checked against the published MD5
of the original compressed files. Hashing is cheap next to decompression, so every load verifies.

``python -m jaxcnn download`` fetches the four files into ``DATA_ROOT/mnist`` (with the part-1 data).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxcnn.data.dataset import ArrayDataset, balanced_subset
from jaxcnn.data.fetch import fetch_any
from jaxcnn.errors import DataError
from jaxcnn.paths import DOWNLOAD_HINT

DEFAULT_MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
CLASS_NAMES = tuple(str(digit) for digit in range(10))
TRAIN_IMAGES = 60000  # the standard split: 60,000 training, 10,000 test images

_GZIP_MAGIC = b"\x1f\x8b"
_UINT8_CODE = 0x08


@dataclasses.dataclass(frozen=True)
class MnistFile:
    """One published MNIST file and the checksums that identify it.

    name: the compressed file name, as published and as stored under ``mnist/``.
    md5: MD5 of the original compressed file, checked on download.
    sha256: SHA-256 of the decompressed content, checked on every load.
    """

    name: str
    md5: str
    sha256: str


FILES: Mapping[str, tuple[MnistFile, MnistFile]] = {
    "train": (
        MnistFile(
            "train-images-idx3-ubyte.gz",
            md5="f68b3c2dcbeaaa9fbdd348bbdeb94873",
            sha256="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        MnistFile(
            "train-labels-idx1-ubyte.gz",
            md5="d53e105ee54ea40749a09fcbcd1e9432",
            sha256="65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
    ),
    "test": (
        MnistFile(
            "t10k-images-idx3-ubyte.gz",
            md5="9fb629c4189551a2d022fa330f9573f3",
            sha256="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        MnistFile(
            "t10k-labels-idx1-ubyte.gz",
            md5="ec29112dd5afa0611ce80d1b7f02629c",
            sha256="ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    ),
}
"""The (images, labels) files of each split."""


def load_mnist(
    root: str | os.PathLike,
    split: str = "train",
    *,
    files: Mapping[str, tuple[MnistFile, MnistFile]] = FILES,
) -> ArrayDataset:
    """One MNIST split from ``root/mnist`` (or ``root`` itself), verified against ``files``.

    Files may be gzip-compressed (the published names) or decompressed (the names without ``.gz``).
    """
    if split not in files:
        raise ValueError(f"split must be one of {sorted(files)}, got {split!r}")
    folder = Path(root) / "mnist" if (Path(root) / "mnist").is_dir() else Path(root)
    images_file, labels_file = files[split]
    images_path, labels_path = _find(folder, images_file), _find(folder, labels_file)
    images = _verified_array(images_path, images_file, str(images_path))
    labels = _verified_array(labels_path, labels_file, str(labels_path))
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: expected images of shape [N, 28, 28], got {list(images.shape)}")
    if labels.shape != (len(images),):
        raise DataError(f"{labels_path}: expected {len(images)} labels, one per image, got shape {list(labels.shape)}")
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise DataError(f"{labels_path}: label {labels.max()} is outside 0..{len(CLASS_NAMES) - 1}")
    return ArrayDataset(images, labels.astype(np.int32), np.full(len(labels), -1, np.int32), CLASS_NAMES)


def load_mnist_split(root: str | os.PathLike, split: str, size: int, seed: int) -> ArrayDataset:
    """A clean MNIST split, whole (``size`` 0) or as a class-balanced subset of ``size`` (``balanced_subset``)."""
    data = load_mnist(root, split)
    return data.subset(balanced_subset(data.labels, size, seed)) if size else data


def download_mnist(
    dest_dir: str | os.PathLike,
    *,
    mirrors: Sequence[str] = DEFAULT_MIRRORS,
    timeout: float = 60.0,
    files: Mapping[str, tuple[MnistFile, MnistFile]] = FILES,
) -> Path:
    """Download the MNIST files into ``dest_dir``, trying each mirror in turn; returns ``dest_dir``.

    Files already there and valid are kept. Each download goes to ``NAME.part`` (continued by the
    next attempt if cut), is checked (length, MD5, decompressed SHA-256) and only then renamed into
    place, so no partial or corrupt file ever has a published name.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    for entry in (entry for pair in files.values() for entry in pair):
        target = dest_dir / entry.name
        if not (target.exists() and _is_valid(target, entry)):
            fetch_any([mirror.rstrip("/") + "/" + entry.name for mirror in mirrors], target,
                      functools.partial(_check_download, entry=entry), timeout=timeout)
    return dest_dir


def load_mnist_tfds(split: str, data_dir: str | os.PathLike | None = None) -> ArrayDataset:
    """One MNIST split through tensorflow-datasets, which downloads it on first use (needs network).

    ``tfds.load`` builds a ``tf.data`` pipeline and tfds prepares MNIST through ``tf.io.gfile``, so
    this route needs TensorFlow: ``pip install -e '.[tfds]'``. ``load_mnist`` on local files needs neither.
    """
    try:
        import tensorflow  # noqa: F401  (tfds.load fails without it, with a less clear message)
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DataError(f"load_mnist_tfds needs tensorflow and tensorflow-datasets ({error}): "
                        "pip install -e '.[tfds]', or use load_mnist on local files") from None
    data = tfds.as_numpy(tfds.load("mnist", split=split, batch_size=-1, data_dir=data_dir))
    images = np.asarray(data["image"], np.uint8).reshape(-1, 28, 28)
    labels = np.asarray(data["label"], np.int32)
    return ArrayDataset(images, labels, np.full(len(labels), -1, np.int32), CLASS_NAMES)


def _read_bytes(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise DataError(f"{name}: cannot read ({error.strerror or error})") from None


def _decompressed(data: bytes, name: str) -> bytes:
    """The content of ``data``: gunzipped if it starts with the gzip magic, else as is."""
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{name}: bad gzip data ({error})") from None


def _parse_idx(content: bytes, name: str) -> np.ndarray:
    """The array in IDX ``content``: magic 0x000008NN (uint8, NN dims), NN big-endian uint32 dims, data."""
    if len(content) < 4:
        raise DataError(f"{name}: too short for an IDX header ({len(content)} bytes)")
    magic = int.from_bytes(content[:4], "big")
    ndim = content[3]
    if content[:2] != b"\0\0" or content[2] != _UINT8_CODE or ndim == 0:
        raise DataError(f"{name}: bad IDX magic number 0x{magic:08x} (expected 0x00000801 to 0x000008ff, uint8 data)")
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{name}: truncated IDX header ({len(content)} bytes, {ndim} dimensions need {header})")
    dims = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected, payload = math.prod(dims), len(content) - header
    if payload < expected:
        raise DataError(f"{name}: truncated, {payload} data bytes where dimensions {list(dims)} need {expected}")
    if payload > expected:
        raise DataError(f"{name}: {payload - expected} trailing bytes after the data of dimensions {list(dims)}")
    return np.frombuffer(content, np.uint8, offset=header).reshape(dims).copy()


def _verified_array(path: Path, entry: MnistFile, name: str) -> np.ndarray:
    """The array in the file at ``path``, after checking its content against ``entry.sha256``."""
    content = _decompressed(_read_bytes(path, name), name)
    array = _parse_idx(content, name)
    digest = hashlib.sha256(content).hexdigest()
    if digest != entry.sha256:
        raise DataError(f"{name}: content SHA-256 {digest} does not match the expected {entry.sha256}")
    return array


def _is_valid(path: Path, entry: MnistFile) -> bool:
    try:
        _verified_array(path, entry, str(path))
    except DataError:
        return False
    return True


def _find(folder: Path, entry: MnistFile) -> Path:
    """The file for ``entry`` in ``folder``: the published ``.gz`` name, else the decompressed name."""
    for candidate in (folder / entry.name, folder / entry.name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    raise DataError(f"MNIST file {entry.name} is missing from {folder}; {DOWNLOAD_HINT}")


def _check_download(path: Path, url: str, entry: MnistFile) -> None:
    """A downloaded file is the published one: its MD5, then its decompressed content's SHA-256."""
    md5 = hashlib.md5(_read_bytes(path, url)).hexdigest()
    if md5 != entry.md5:
        raise DataError(f"{url}: MD5 {md5} does not match the published {entry.md5}")
    _verified_array(path, entry, url)
