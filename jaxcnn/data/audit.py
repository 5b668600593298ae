"""An audit of an image set against clean MNIST: the files, the pixels, and duplicates.

Labels aside, a data set can differ from MNIST in its files (format, compression, stray files),
its images (intensity, ink, position) and its membership: an image that is also in the MNIST
test set would make a test accuracy meaningless. Everything here reads images and files only,
never a label.
"""

from __future__ import annotations

import collections
import io
import os
import zipfile

import numpy as np
from PIL import Image

from jaxcnn.data.imagefiles import ImageListing

INK = 128  # a pixel at least this bright (of 255) is ink
COARSE = 4  # the near-duplicate search runs on 7x7 block means of the 28x28 image ...
FINE = 2  # ... and checks a candidate on 14x14 block means, where JPEG's high-frequency error is small
NEAR = 0.05  # near-duplicates: sum |a - b| / sum (a + b) of the 14x14 means at most this. A JPEG (quality
# 75) copy of an MNIST digit lies at 0.025 (median), 0.044 (99th percentile); distinct digits at >= 0.06
CANDIDATES = 8  # coarse nearest neighbours checked on the fine blocks
HEADER_SAMPLE = 500  # files whose headers are read for format, mode, size and JPEG quality

# The IJG base luminance table (JPEG standard, Annex K), in zig-zag-free row order, and PIL's scaling.
IJG_LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
                     92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])


def jpeg_quality(table) -> int:
    """The IJG quality (1-100) whose scaled luminance table is closest to ``table`` (64 entries)."""
    table = np.sort(np.asarray(table))  # order-free: PIL returns the table in zig-zag order
    def scaled(q):
        scale = 5000 / q if q < 50 else 200 - 2 * q
        return np.sort(np.clip((IJG_LUMA * scale + 50) // 100, 1, 255))
    return int(min(range(1, 101), key=lambda q: np.abs(scaled(q) - table).sum()))


def mac_members(source) -> dict:
    """Files a Mac leaves: members under ``__MACOSX/``, AppleDouble ``._name`` files, ``.DS_Store``."""
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
    else:
        names = [os.path.relpath(os.path.join(here, f), source) for here, _, files in os.walk(source) for f in files]
    base = lambda n: n.replace(os.sep, "/").rpartition("/")[2]
    return {"__MACOSX": sum(n.replace(os.sep, "/").startswith("__MACOSX/") for n in names),
            "appledouble": sum(base(n).startswith("._") for n in names),
            "ds_store": sum(base(n) == ".DS_Store" for n in names)}


def file_audit(listing: ImageListing, class_folders: dict[str, int]) -> dict:
    """Files: the source's type, image formats, sizes and JPEG quality (from ``HEADER_SAMPLE``
    evenly spaced files), bytes per file, folder sizes, and the stray files the loader skipped."""
    entries = listing.entries
    sample = [entries[i] for i in np.linspace(0, len(entries) - 1, min(HEADER_SAMPLE, len(entries))).astype(int)]
    formats, qualities = collections.Counter(), collections.Counter()
    for _, data in listing.read(sample):
        with Image.open(io.BytesIO(data)) as image:
            formats[f"{image.format} {image.mode} {image.width}x{image.height}"] += 1
            if image.format == "JPEG" and getattr(image, "quantization", None):
                qualities[jpeg_quality(image.quantization[0])] += 1
    sizes = np.array([e.size for e in entries])
    strays = collections.Counter(reason for _, reason in listing.skipped)
    return {
        "source": str(listing.source), "is_zip": listing.is_zip, "image_files": len(entries),
        "extensions": dict(collections.Counter(e.name.rpartition(".")[2].lower() for e in entries)),
        "header_sample": len(sample), "formats": dict(formats),
        "jpeg_quality_estimate": dict(sorted(qualities.items())),
        "bytes_per_file": {"mean": float(sizes.mean()), "min": int(sizes.min()), "max": int(sizes.max())},
        "folder_sizes": class_folders,
        "stray_files": {"count": len(listing.skipped), "by_reason": dict(strays),
                        "examples": [name for name, _ in listing.skipped[:5]], "mac": mac_members(listing.source)},
    }


def pixel_stats(images: np.ndarray) -> dict:
    """Mean intensity, ink fraction (pixels >= ``INK``), mean ink brightness, the ink's bounding box
    and centre of mass (pixels from the top-left), over uint8 [N, 28, 28] images."""
    images = np.asarray(images)
    ink = images >= INK
    weights = images.astype(np.float64)
    total = np.maximum(weights.sum((1, 2)), 1)
    grid = np.arange(images.shape[1])
    rows_any, cols_any = ink.any(2), ink.any(1)
    extent = lambda any_: np.where(any_.any(1), any_.shape[1] - np.argmax(any_[:, ::-1], 1) - np.argmax(any_, 1), 0)
    return {
        "images": int(len(images)),
        "mean_intensity": float(images.mean()),
        "ink_fraction": float(ink.mean()),
        "mean_ink_intensity": float(images[ink].mean()) if ink.any() else 0.0,
        "blank_images": int((~ink.any((1, 2))).sum()),
        "ink_height": float(extent(rows_any).mean()), "ink_width": float(extent(cols_any).mean()),
        "centre_row": float(((weights.sum(2) * grid).sum(1) / total).mean()),
        "centre_col": float(((weights.sum(1) * grid).sum(1) / total).mean()),
    }


def blocks(images: np.ndarray, size: int = COARSE) -> np.ndarray:
    """float32 [N, (28/size)^2]: the means of ``size`` x ``size`` blocks."""
    n, side = len(images), images.shape[1] // size
    return np.asarray(images, np.float32).reshape(n, side, size, side, size).mean((2, 4)).reshape(n, -1)


def relative_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pair of images, sum |a - b| / sum (a + b) of their ``FINE`` block means: 0 the same, 1 disjoint ink."""
    a, b = blocks(a, FINE), blocks(b, FINE)
    return np.abs(a - b).sum(1) / np.maximum((a + b).sum(1), 1e-6)


def nearest(queries: np.ndarray, pool: np.ndarray, *, exclude_self: bool = False, chunk: int = 512):
    """For each query image, the index of the pool image nearest by ``relative_difference`` among
    its ``CANDIDATES`` nearest in the coarse space, and that difference. (The coarse space alone can
    miss a copy: a thin stroke on a block border blurs alike in many images.)"""
    q, p = blocks(queries), blocks(pool)
    p_norms = (p ** 2).sum(1)
    k = min(CANDIDATES, len(pool) - exclude_self)
    candidates = np.empty((len(q), k), np.int64)
    for start in range(0, len(q), chunk):
        block = q[start:start + chunk]
        distances = p_norms[None] - 2 * block @ p.T  # + |q|^2, the same for a row
        if exclude_self:
            distances[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        candidates[start:start + chunk] = np.argpartition(distances, k - 1, axis=1)[:, :k]
    fine = np.stack([relative_difference(queries, pool[candidates[:, j]]) for j in range(k)], 1)
    best = fine.argmin(1)
    return candidates[np.arange(len(q)), best], fine[np.arange(len(q)), best]


def duplicates(images: np.ndarray, others: np.ndarray | None = None) -> dict:
    """Exact and near duplicates (``NEAR``) inside ``images`` or, with ``others``, of
    ``images`` in ``others``. Each image is checked against its nearest neighbour (``nearest``)."""
    inside = others is None
    pool = images if inside else others
    hashes = lambda xs: [x.tobytes() for x in xs]
    if inside:
        exact = len(images) - len(set(hashes(images)))
    else:
        pool_hashes = set(hashes(pool))
        exact = sum(h in pool_hashes for h in hashes(images))
    index, distance = nearest(images, pool, exclude_self=inside)
    near = np.flatnonzero(distance <= NEAR)
    return {"exact": int(exact), "near": int(len(near)), "near_threshold": NEAR,
            "nearest_difference": {"min": float(distance.min()), "median": float(np.median(distance)),
                                 "p1": float(np.percentile(distance, 1))},
            "examples": [[int(i), int(index[i]), float(distance[i])] for i in near[:10]]}
