"""Turn a black-on-white character image into the MNIST convention (LeCun et al., 1998).

MNIST digits are white ink on black, cropped to the ink, scaled (aspect kept, anti-aliased) so the
longer side is 20 px, and placed in a 28x28 field with the centre of mass at the field's centre.
``to_mnist_convention`` does this for any input, from a 1200x900 scan with the character anywhere
on the page to a tight 28x28 crop, so both give the same kind of network input.

Conventions: ``gray`` is float [H, W] in [0, 1] with 1 = white paper. Pixel (i, j) has its centre at
index coordinates (i, j), so the centre of the 28x28 field is (13.5, 13.5); the centre of mass is
placed there to within half a pixel (shifts are whole pixels, as in MNIST, to avoid blurring).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image

from jaxcnn.errors import DataError

PREPROCESS_VERSION = 2  # bump when the output of any function here changes (keys the caches)

SIZE = 28  # MNIST's field; ``size`` may be larger, box and margin scaling with it
BOX = 20
CENTRE = (SIZE - 1) / 2  # of the 28x28 field

PAPER_PERCENTILE = 95  # the paper level: tight crops still have >= 5% paper (checked on Chars74K)
INK_PERCENTILE = 0.01  # the ink level: the darkest 0.01%, so a lone dark pixel does not set it
MIN_CONTRAST = 0.15  # paper minus ink below this is a blank page (scanner noise, grey paper)
NOISE_FLOOR = 0.1  # ink signal below this share of the contrast is paper texture, set to 0
INK_THRESHOLD = 0.5  # pixels at least half-way from paper to ink decide the bounding box
SPECK_FRACTION = 0.01  # connected blobs with under 1% of the ink are dust, ignored for the box
MIN_STROKE_PX = 2.5  # thinner strokes (in output pixels) are thickened before downscaling;
# MNIST strokes are ~1.8 px, the staged Chars74K crops ~3 px after fitting to 20 px
VISIBLE_STROKE_PX = 1.0  # ``keep_stroke_width``: thicken only strokes that would otherwise fade out


class NoInkError(DataError):
    """The image holds no character: blank or uniformly grey paper."""


def ink_signal(gray: np.ndarray) -> np.ndarray:
    """Ink strength float32 [H, W] in [0, 1]: 0 on paper, 1 at the darkest ink.

    Paper and ink levels are estimated from percentiles, so grey paper, scanner noise and faint
    pencil all map to the same range. Raises NoInkError for a blank page.
    """
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"expected a 2-D grayscale image, got shape {gray.shape}")
    ink_level, paper_level = np.percentile(gray, [INK_PERCENTILE, PAPER_PERCENTILE])
    contrast = paper_level - ink_level
    if contrast < MIN_CONTRAST:
        raise NoInkError("no ink found")
    signal = (paper_level - gray) / contrast
    return np.clip((signal - NOISE_FLOOR) / (1 - NOISE_FLOOR), 0, 1).astype(np.float32)


def box_size(size: int) -> int:
    """The side of the ink box in a ``size`` field: 20 of 28, as MNIST, scaled."""
    return round(size * BOX / SIZE)


def to_mnist_convention(gray: np.ndarray, min_stroke_px: float = MIN_STROKE_PX, size: int = SIZE) -> np.ndarray:
    """Any black-on-white character image -> uint8 [size, size], white on black, MNIST-centred.

    Strokes thinner than ``min_stroke_px`` output pixels are thickened before the downscale: at a
    larger ``size`` a stroke is more pixels wide, so fewer are thickened and loops stay open.
    """
    box = box_size(size)
    return _centre_by_mass(_fit(_ink_crop(gray, min_stroke_px, box), box), size)


def stretch_to_box(gray: np.ndarray, size: int = SIZE) -> np.ndarray:
    """The plain baseline's input: the ink box stretched to 20x20 (aspect ratio not kept) with a
    4 px margin (at 28; scaled with ``size``), no centring by mass; strokes thickened as in
    ``to_mnist_convention``."""
    box = box_size(size)
    resized = _normalise(_resize(_ink_crop(gray, MIN_STROKE_PX, box), box, box))
    before = (size - box) // 2
    return _to_uint8(np.pad(resized, (before, size - box - before)))


def _ink_crop(gray: np.ndarray, min_stroke_px: float, box: int) -> np.ndarray:
    """The character's ink box at page resolution, strokes thickened so they stay ``min_stroke_px``
    wide once the box's longer side is fitted to ``box``."""
    ink = ink_signal(gray)
    mask = ink > INK_THRESHOLD
    top, bottom, left, right = _character_box(mask)
    longer = max(bottom - top, right - left)
    margin = _thickening_radius(_stroke_width(mask[top:bottom, left:right]), longer, min_stroke_px, box)
    window = np.s_[top : bottom + 2 * margin, left : right + 2 * margin]  # the box plus margin, once padded
    crop_mask = np.pad(mask, margin)[window]
    crop = np.where(_dilate(crop_mask, 1), np.pad(ink, margin)[window], 0)  # strokes and rims, not paper noise
    return _dilate(crop, margin) if margin else crop


GEOMETRY_FEATURES = ("log_height", "log_width", "centre_row", "centre_col", "log_stroke")


def page_geometry(gray: np.ndarray) -> np.ndarray:
    """What the page says that the 28x28 crop loses: float32 [5], ``GEOMETRY_FEATURES``.

    The ink box's height and width and the stroke width as logs of fractions of the page height, and
    the box's centre as a fraction of the page from its middle (-0.5 .. 0.5). On a page drawn at the
    writer's own size, an ``o`` is smaller than an ``O`` and sits lower; the MNIST crop makes them
    one picture. A blank page (NoInkError) is all zeros.
    """
    try:
        mask = ink_signal(gray) > INK_THRESHOLD
        top, bottom, left, right = _character_box(mask)
    except NoInkError:
        return np.zeros(len(GEOMETRY_FEATURES), np.float32)
    height, width = mask.shape
    stroke = _stroke_width(mask[top:bottom, left:right])
    return np.array([np.log((bottom - top) / height), np.log((right - left) / height),
                     (top + bottom) / 2 / height - 0.5, (left + right) / 2 / width - 0.5,
                     np.log(max(stroke, 0.5) / height)], np.float32)


def keep_stroke_width(gray: np.ndarray, size: int = SIZE) -> np.ndarray:
    """The MNIST convention, thickening only strokes that would fade out: a small (lower-case) letter
    scaled up keeps its thicker strokes, a cue for its case that thickening to 2.5 px evens out."""
    return to_mnist_convention(gray, VISIBLE_STROKE_PX, size)


def _character_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), ends exclusive, of the ink blobs that are not dust specks."""
    blobs = _blobs(mask)
    total = blobs[:, 0].sum()
    kept = blobs[blobs[:, 0] >= SPECK_FRACTION * total]
    if len(kept) == 0:  # only specks: noise, not a character
        raise NoInkError("no ink found")
    return kept[:, 1].min(), kept[:, 2].max(), kept[:, 3].min(), kept[:, 4].max()


def _blobs(mask: np.ndarray) -> np.ndarray:
    """8-connected components of ``mask`` as rows (area, top, bottom, left, right).

    Works on horizontal runs (union-find joins runs that touch in adjacent rows), which keeps the
    Python loop to a few thousand runs even for a full-page scan.
    """
    padded = np.pad(mask, ((0, 0), (1, 1))).astype(np.int8)
    edges = np.diff(padded, axis=1)
    rows, starts = np.nonzero(edges == 1)
    ends = np.nonzero(edges == -1)[1]
    if len(rows) == 0:
        raise NoInkError("no ink found")
    parent = list(range(len(rows)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_first = np.searchsorted(rows, np.arange(mask.shape[0] + 1))
    for r in range(1, mask.shape[0]):
        above, here = range(row_first[r - 1], row_first[r]), range(row_first[r], row_first[r + 1])
        a = above.start
        for h in here:  # runs are sorted, so a two-pointer sweep finds every touching pair
            while a < above.stop and ends[a] < starts[h]:
                a += 1
            b = a
            while b < above.stop and starts[b] <= ends[h]:
                parent[find(h)] = find(b)
                b += 1
    roots = np.array([find(i) for i in range(len(rows))])
    _, label = np.unique(roots, return_inverse=True)
    n = label.max() + 1
    area = np.bincount(label, weights=ends - starts, minlength=n)
    top = np.full(n, mask.shape[0]); bottom = np.zeros(n, int)
    left = np.full(n, mask.shape[1]); right = np.zeros(n, int)
    np.minimum.at(top, label, rows); np.maximum.at(bottom, label, rows + 1)
    np.minimum.at(left, label, starts); np.maximum.at(right, label, ends)
    return np.stack([area.astype(int), top, bottom, left, right], axis=1)


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels, 2 * area / perimeter (exact for long straight strokes)."""
    padded = np.pad(mask, 1)
    perimeter = np.count_nonzero(np.diff(padded, axis=0)) + np.count_nonzero(np.diff(padded, axis=1))
    return 2 * mask.sum() / max(perimeter, 1)


def _thickening_radius(stroke: float, longer: int, min_stroke_px: float, box: int) -> int:
    """Dilation radius r so strokes end up ``min_stroke_px`` wide: (stroke + 2r) / (longer + 2r) * box."""
    needed = (min_stroke_px * longer - stroke * box) / (2 * (box - min_stroke_px))
    return max(0, math.ceil(needed))


def _dilate(image: np.ndarray, radius: int) -> np.ndarray:
    """Grey-level dilation with a (2r+1)-square window: a running max down rows, then columns."""
    for _ in range(2):  # each pass works along axis 0, then transposes
        padded = np.pad(image, ((radius, radius), (0, 0)))
        image = functools.reduce(np.maximum, (padded[i : i + len(image)] for i in range(2 * radius + 1))).T
    return image


def _fit(crop: np.ndarray, box: int) -> np.ndarray:
    """Resize so the longer side is ``box`` px, aspect ratio kept, and the brightest ink is 1."""
    h, w = crop.shape
    scale = box / max(h, w)
    return _normalise(_resize(crop, max(1, round(h * scale)), max(1, round(w * scale))))


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Anti-aliased (Lanczos) resize of a float image; ringing below 0 is clipped."""
    resized = Image.fromarray(image.astype(np.float32), mode="F").resize((width, height), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized), 0, None)


def _normalise(image: np.ndarray) -> np.ndarray:
    """Scale so the strongest ink is exactly 1 (faint or thinned strokes regain full contrast)."""
    peak = image.max()
    return image / peak if peak > 0 else image


def _centre_by_mass(patch: np.ndarray, size: int) -> np.ndarray:
    """Paste ``patch`` into a ``size`` square field, whole-pixel shifted so its centre of mass is at
    the field's centre, (size - 1) / 2."""
    h, w = patch.shape
    total = patch.sum()
    centre = (size - 1) / 2
    com_y = (patch.sum(axis=1) @ np.arange(h)) / total
    com_x = (patch.sum(axis=0) @ np.arange(w)) / total
    top = int(np.clip(round(centre - com_y), 0, size - h))
    left = int(np.clip(round(centre - com_x), 0, size - w))
    field = np.zeros((size, size), np.float32)
    field[top : top + h, left : left + w] = patch
    return _to_uint8(field)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
