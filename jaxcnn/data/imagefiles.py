"""List, read and decode images from a folder or a .zip, and cache data sets built from them.

Stray files (``.DS_Store``, ``Thumbs.db``, ``__MACOSX/``, hidden or non-image files) are skipped and
reported, never treated as data. Anything that is data but cannot be read raises DataError naming
the file: a silently dropped image would change a score.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import io
import json
import logging
import multiprocessing
import os
import tempfile
import zipfile
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxcnn import paths
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.data.preprocess import NoInkError
from jaxcnn.errors import DataError
from jaxcnn.progress import progress_bar

logger = logging.getLogger("jaxcnn")

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"})
MAX_PIXELS = 4096 * 4096  # 16.8 MP: a 1200x900 scan is 1.1 MP, a phone photo 12 MP; a 7000x7000 bomb is refused
MAX_MEMBER_BYTES = 64 * 2**20  # the same guard for a single zip member (inflated, not as claimed)


@dataclasses.dataclass(frozen=True)
class ImageEntry:
    """One image file: ``name`` is its posix path relative to the source.

    ``stamp``: the modification time (ns) for a file in a folder, the CRC-32 of the content (read
    from the zip directory, no decompression) for a zip member; cache keys also hash folder files.
    """

    name: str
    size: int
    stamp: int


@dataclasses.dataclass(frozen=True)
class ImageListing:
    """The images in a folder or zip, the stray files skipped, and every folder (empty ones too)."""

    source: Path
    entries: tuple[ImageEntry, ...]
    skipped: tuple[tuple[str, str], ...]  # (name, reason)
    folders: frozenset[str]

    @property
    def is_zip(self) -> bool:
        return self.source.is_file()

    def describe(self, entry: ImageEntry) -> str:
        """The name to show a user, e.g. ``data.zip/train/Sample001/img001-001.png``."""
        return f"{self.source}/{entry.name}"

    def read(self, entries) -> Iterator[tuple[ImageEntry, bytes]]:
        """Yield (entry, bytes) for ``entries``, opening a zip once for all of them."""
        if not self.is_zip:
            for entry in entries:
                try:
                    yield entry, (self.source / entry.name).read_bytes()
                except OSError as error:
                    raise DataError(f"{self.describe(entry)}: cannot read ({error.strerror or error})") from None
            return
        with _open_zip(self.source) as archive:
            for entry in entries:
                try:
                    with archive.open(entry.name) as member:
                        # At most the size the directory claims is inflated (read(n) decompresses at most
                        # n bytes), and a member that inflates to more fails its CRC: a bomb that lies
                        # in its header costs what it claims, which the listing has already capped.
                        data = member.read(entry.size + 1)
                except Exception as error:  # bad CRC, damaged deflate stream, encryption, ...
                    raise DataError(f"{self.describe(entry)}: cannot read from the zip ({error})") from None
                if len(data) != entry.size:
                    raise DataError(f"{self.describe(entry)}: inflates to another size than the zip says "
                                    f"({entry.size} bytes); the archive is damaged")
                yield entry, data


def list_images(source: str | os.PathLike) -> ImageListing:
    """The images under a folder or in a .zip, sorted by name; stray files are skipped and logged."""
    source = Path(source)
    if source.is_dir():
        listing = _list_folder(source)
    elif source.is_file():
        listing = _list_zip(source)
    else:
        raise DataError(f"{source}: no such folder or zip file")
    if listing.skipped:
        shown = ", ".join(f"{name} ({reason})" for name, reason in listing.skipped[:3])
        more = f" and {len(listing.skipped) - 3} more" if len(listing.skipped) > 3 else ""
        logger.warning("%s: skipped %d non-image files: %s%s", source, len(listing.skipped), shown, more)
    return listing


def _list_folder(root: Path) -> ImageListing:
    entries, skipped, folders = [], [], set()
    for here, dirs, files in os.walk(root, followlinks=True):
        rel = Path(here).relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        for d in sorted(dirs):
            reason = _stray_reason(d, is_folder=True)
            if reason:
                skipped.append((prefix + d + "/", reason))
            else:
                folders.add(prefix + d)
        dirs[:] = [d for d in dirs if not _stray_reason(d, is_folder=True)]
        for f in files:
            reason = _stray_reason(f)
            if reason:
                skipped.append((prefix + f, reason))
                continue
            try:
                stat = (Path(here) / f).stat()
            except OSError as error:  # a dangling link, or a file removed while listing
                raise DataError(f"{root}/{prefix}{f}: cannot read ({error.strerror or error})") from None
            entries.append(ImageEntry(prefix + f, stat.st_size, stat.st_mtime_ns))
    return ImageListing(root, tuple(sorted(entries, key=lambda e: e.name)), tuple(sorted(skipped)), frozenset(folders))


def _list_zip(path: Path) -> ImageListing:
    entries, names, skipped, folders = [], set(), set(), set()
    with _open_zip(path) as archive:
        infos = archive.infolist()
    for info in infos:
        name = info.filename
        parts = name.rstrip("/").split("/")
        if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/") or ":" in parts[0]:
            raise DataError(f"{path}: refusing unsafe member '{name}' (absolute path or '..')")
        stray = next((i for i, p in enumerate(parts[:-1]) if _stray_reason(p, is_folder=True)), None)
        if stray is not None:
            skipped.add(("/".join(parts[: stray + 1]) + "/", _stray_reason(parts[stray], is_folder=True)))
            continue
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        reason = _stray_reason(parts[-1], is_folder=info.is_dir())
        if reason:
            skipped.add((name, reason))
        elif info.is_dir():
            folders.add("/".join(parts))
        elif name in names:  # zipfile would read the last copy for both
            raise DataError(f"{path}/{name}: member appears twice in the zip")
        elif info.file_size > MAX_MEMBER_BYTES:
            raise DataError(f"{path}/{name}: member is too large ({info.file_size} bytes) for an image")
        else:
            entries.append(ImageEntry(name, info.file_size, info.CRC))
            names.add(name)
    return ImageListing(path, tuple(sorted(entries, key=lambda e: e.name)), tuple(sorted(skipped)), frozenset(folders))


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except Exception as error:  # BadZipFile, OSError, EOFError, ...
        raise DataError(f"{path}: not a readable zip file ({error})") from None


def _stray_reason(name: str, is_folder: bool = False) -> str | None:
    """Why a file or folder is not data, or None if it is."""
    if name == "__MACOSX":
        return "macOS metadata"
    if name.startswith("."):
        return "hidden"
    if is_folder:
        return None
    if name.lower() in {"thumbs.db", "desktop.ini"}:
        return "system file"
    if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
        return "not an image"
    return None


def decode_gray(data: bytes, name: str) -> np.ndarray:
    """Decode image bytes to float32 [H, W] in [0, 1], 1 = white; transparency shows white paper.

    Any mode PIL reads is accepted (1-bit, gray, 16-bit, palette, RGB, with or without alpha);
    multi-frame files use the first frame. Raises DataError naming ``name`` otherwise.
    """
    if not data:
        raise DataError(f"{name}: not a readable image (empty file)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise DataError(f"{name}: image too large ({image.width}x{image.height} pixels, limit {MAX_PIXELS})")
            image.load()
            return _gray(image)
    except UnidentifiedImageError:
        raise DataError(f"{name}: not a readable image (unknown or damaged format)") from None
    except Image.DecompressionBombError as error:
        raise DataError(f"{name}: image too large ({error})") from None
    except DataError:
        raise
    except Exception as error:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise DataError(f"{name}: not a readable image ({error or type(error).__name__})") from None


def _gray(image: Image.Image) -> np.ndarray:
    if image.mode in {"I;16", "I;16L", "I;16B", "I;16N", "I"}:
        return np.clip(np.asarray(image, dtype=np.float32) / 65535, 0, 1)
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255
        luma = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        alpha = rgba[..., 3]
        return luma * alpha + (1 - alpha)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


PARALLEL_FROM = 200  # images (part 2's 400 digits are 24 s alone); fewer stay in this process: a worker takes ~1 s to start


def preprocess_all(listing: ImageListing, entries, preprocess: Callable[[np.ndarray], np.ndarray],
                   geometry: Callable[[np.ndarray], np.ndarray] | None = None, size: int = 28):
    """Decode and preprocess ``entries`` to uint8 [N, size, size] (``preprocess``'s output size);
    with ``geometry``, also each page's float32 [N, F] (``(images, geometry)``).

    ``preprocess`` and ``geometry`` must be module-level functions: from ``PARALLEL_FROM`` images on
    they run in worker processes, one per CPU this process may use (a scan takes ~60 ms; order and
    results are the same). A blank image (no ink) is data, not damage: it stays in as an all-black
    input, so class and image counts stay true, and is logged. Unreadable images raise DataError
    naming the file.
    """
    entries = list(entries)
    files = [(data, listing.describe(entry)) for entry, data in listing.read(entries)]
    prepared = _map_files(functools.partial(_prepare, preprocess=preprocess, geometry=geometry), files)
    blank = [entry.name for entry, (image, _) in zip(entries, prepared) if image is None]
    if blank:
        shown = ", ".join(blank[:3])
        logger.warning("%s: %d blank images kept as empty inputs: %s", listing.source, len(blank), shown)
    images = np.stack([np.zeros((size, size), np.uint8) if image is None else image for image, _ in prepared]) \
        if prepared else np.zeros((0, size, size), np.uint8)
    if geometry is None:
        return images
    pages = [page for _, page in prepared]
    return images, np.stack(pages).astype(np.float32) if pages else np.zeros((0, 0), np.float32)


def _prepare(data: bytes, name: str, preprocess, geometry):
    """One image: its uint8 [size, size] (None when blank) and, with ``geometry``, its page geometry."""
    gray = data if isinstance(data, np.ndarray) else decode_gray(data, name)
    try:
        image = preprocess(gray)
    except NoInkError:
        image = None
    return image, geometry(gray) if geometry is not None else None


def prepare_each(files, preprocess: Callable[[np.ndarray], np.ndarray],
                 geometry: Callable[[np.ndarray], np.ndarray] | None = None) -> list[tuple]:
    """``preprocess_all`` that never stops: ``(image, geometry, reason)`` for each ``(data, name)``
    in ``files`` (``data`` the file's bytes, or a decoded float [H, W]), with ``reason`` (and no
    image) where it is unreadable or blank (no ink, or nothing left of it once preprocessed)."""
    return _map_files(functools.partial(_prepare_or_reason, preprocess=preprocess, geometry=geometry), list(files))


def _prepare_or_reason(data, name: str, preprocess, geometry):
    try:
        image, page = _prepare(data, name, preprocess, geometry)
    except (DataError, ValueError) as error:
        return None, None, str(error).removeprefix(f"{name}: ")
    return (None, None, "blank: no ink found") if image is None or not image.any() else (image, page, None)


def _map_files(prepare, files: list) -> list:
    """``prepare(data, name)`` of every file, in workers from ``PARALLEL_FROM`` files on (here if one dies)."""
    workers = min(len(os.sched_getaffinity(0)), 16) if len(files) >= PARALLEL_FROM else 1
    if workers > 1:
        try:
            return _in_workers(prepare, files, workers)
        except BrokenProcessPool as error:
            logger.warning("preprocessing: a worker process died (%s); preparing the %d images in this process "
                           "instead", " ".join(str(error).split()) or type(error).__name__, len(files))
    return list(progress_bar(len(files), "preprocessing", unit="image", iterable=map(prepare, *zip(*files)) if files else []))


def _in_workers(prepare, files: list, count: int) -> list:
    """In ``count`` fresh ("spawn": a forked JAX process can hang) workers, shut down without waiting."""
    pool = concurrent.futures.ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn"))
    try:
        results = pool.map(prepare, *zip(*files), chunksize=32)
        return list(progress_bar(len(files), "preprocessing", unit="image", iterable=results))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def fingerprint(listing: ImageListing, entries, *settings) -> str:
    """The cache key of a data set: where its files are (the resolved path), what they hold and the
    settings that produced it. Files in a folder are hashed (SHA-256 of their bytes: equal names,
    sizes and times do not make equal images); zip members are known by the CRC-32 of their
    content, read from the zip's directory without inflating them."""
    key = hashlib.sha256(json.dumps([str(listing.source.resolve()), list(settings)]).encode())
    for entry in entries:
        key.update(json.dumps([entry.name, entry.size, entry.stamp]).encode())
    if not listing.is_zip:
        for _, data in listing.read(entries):
            key.update(hashlib.sha256(data).digest())
    return key.hexdigest()[:24]


def cached_dataset(
    cache_dir: str | os.PathLike | None, kind: str, key: str, build: Callable[[], ArrayDataset]
) -> ArrayDataset:
    """The data set stored under ``key``, else ``build()`` saved atomically for next time.

    A cache file that cannot be read is rebuilt. ``cache_dir`` None means ``paths.cache_dir()``.
    """
    path = paths.cache_dir(cache_dir) / f"{kind}-{key}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as stored:
                names = tuple(stored["class_names"].tolist())
                geometry = stored["geometry"] if "geometry" in stored.files else None
                return ArrayDataset(stored["images"], stored["labels"], stored["groups"], names, geometry)
        except Exception as error:  # a truncated or foreign file: rebuild it
            logger.warning("%s: unreadable cache file, rebuilding (%s)", path, error)
    dataset = build()
    try:
        _save_atomically(path, dataset)
    except OSError as error:  # a read-only cache, or a file in its place: slower next time, not wrong
        logger.warning("%s: cannot write the preprocessing cache (%s); continuing without it (set --cache-dir "
                       "or $JAXCNN_CACHE to a writable folder)", path.parent, error.strerror or error)
    return dataset


def _save_atomically(path: Path, dataset: ArrayDataset) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            extra = {} if dataset.geometry is None else {"geometry": dataset.geometry}
            np.savez(f, images=dataset.images, labels=dataset.labels, groups=dataset.groups,
                     class_names=np.array(dataset.class_names, dtype=str), **extra)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
