"""What a saved run says of any images: the library behind ``jaxcnn.predict`` and ``python -m jaxcnn predict``.

Images come as one file, a folder (searched recursively) or a zip in any layout, labelled or not, or
as arrays; each is prepared as the run's own images were (``image_reader``). Only pixels, and the
page geometry read from them, reach the model: never a file name, folder or label. An image that
cannot be read, a blank page or a file that is not an image gets a ``Prediction`` with the reason.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from jaxcnn.data.chars74k import DIGIT_CLASSES, PREPROCESSORS
from jaxcnn.data.classfolders import mnist_input
from jaxcnn.data.imagefiles import IMAGE_EXTENSIONS, list_images, prepare_each
from jaxcnn.data.preprocess import GEOMETRY_FEATURES, page_geometry
from jaxcnn.errors import CheckpointError, DataError, JaxcnnError
from jaxcnn.evaluation.evaluate import ensure_writable, member_probs
from jaxcnn.rundir import check_output
from jaxcnn.training.checkpoint import RunCheckpoints, checkpoint_dir, load_run


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A run's answer for one image: the class, its probability, the ``top`` classes with theirs and
    the page geometry the model read (None for a model without it); or, with no answer, ``reason``."""

    source: str
    label: str | None = None
    probability: float | None = None
    top: tuple[tuple[str, float], ...] = ()
    geometry: dict[str, float] | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def image_reader(meta: dict, model, class_names):
    """``(preprocess, geometry)``: the per-image functions a run's images went through.

    A run that records its page preprocessing (part 1, part 2's A), reads page geometry or
    classifies characters other than the ten digits was trained on page scans: its recorded
    preprocessing (``chars74k.PREPROCESSORS``, at the model's ``image_size``), as ``load_chars74k``
    applies it. Any other digit run was trained on MNIST: the class-folder convention
    (``classfolders.mnist_input``: 28x28 images as they are, others centred).
    """
    geometry = page_geometry if model.page_geometry else None
    if "preprocess" not in meta and geometry is None and tuple(class_names) == DIGIT_CLASSES:
        return mnist_input, None
    name = meta.get("preprocess", "mnist")
    if name not in PREPROCESSORS:
        raise CheckpointError(f"the run records preprocessing {name!r}, which this version does not know "
                              f"(one of {', '.join(PREPROCESSORS)})")
    return functools.partial(PREPROCESSORS[name], size=model.image_size), geometry


def predict(run: str | os.PathLike, images, *, which: str = "best", top: int = 3) -> list[Prediction]:
    """The ensemble of a saved run's seeds on ``images``, one ``Prediction`` per image (or file).

    ``images``: a path (an image, a folder or a zip), a 2-D array (one image), a 3-D array (a stack
    of 2-D images) or a list of paths and arrays. An array is uint8 (gray, RGB or RGBA, read as its
    PNG would be) or float [H, W] in [0, 1], 1 = white paper. ``which``: best, latest or an epoch.
    """
    if top < 1:
        raise ValueError(f"--top must be at least 1, got {top}")
    items = list(image_items(images))  # a missing path is refused before the run is restored
    state, cfg, class_names, epoch = load_run(run, which)
    with RunCheckpoints(checkpoint_dir(run), read_only=True) as ckpts:
        meta = ckpts.read_meta(epoch)
    preprocess, geometry = image_reader(meta, cfg.model, class_names)
    readable = [(data, source) for source, data, reason in items if reason is None]
    prepared = iter(prepare_each(readable, preprocess, geometry))
    rows = [(source, *(next(prepared) if reason is None else (None, None, reason))) for source, _, reason in items]
    good = [row for row in rows if row[3] is None]
    probs = np.zeros((0, len(class_names)))
    if good:
        inputs = {"image": np.stack([image for _, image, _, _ in good])}
        if geometry is not None:
            inputs["geometry"] = np.stack([page for _, _, page, _ in good]).astype(np.float32)
        probs = member_probs(state, inputs, cfg.eval_batch_size).mean(0)
    answers = iter(probs)
    return [_prediction(source, next(answers), page, class_names, top) if reason is None
            else Prediction(source, reason=reason) for source, _, page, reason in rows]


def _prediction(source: str, probs: np.ndarray, page, class_names, top: int) -> Prediction:
    order = np.argsort(-probs, kind="stable")[:top]
    ranked = tuple((class_names[i], float(probs[i])) for i in order)
    shape = None if page is None else {name: float(v) for name, v in zip(GEOMETRY_FEATURES, page)}
    return Prediction(source, ranked[0][0], ranked[0][1], ranked, shape)


def image_items(images):
    """``(source, data, reason)`` for every image in ``images`` (see ``predict``): ``data`` the file's
    bytes or a float [H, W], or None with the ``reason`` it cannot be read."""
    if isinstance(images, (str, os.PathLike)):
        yield from _path_items(Path(images))
    elif isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[-1] not in (3, 4):
        for i, array in enumerate(images):
            yield (f"array[{i}]", *_array_data(array))
    elif isinstance(images, np.ndarray):
        yield ("array", *_array_data(images))
    else:
        for i, image in enumerate(images):
            if isinstance(image, (str, os.PathLike)):
                yield from _path_items(Path(image))
            else:
                yield (f"array[{i}]", *_array_data(np.asarray(image)))


def _path_items(path: Path):
    """One file, or every file under a folder or in a zip (stray ones with why they are not read)."""
    if not path.exists():
        raise DataError(f"{path}: no such image, folder or zip file")
    if path.is_file() and path.suffix.lower() != ".zip":
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            yield str(path), None, "not an image"
            return
        try:
            yield str(path), path.read_bytes(), None
        except OSError as error:
            yield str(path), None, f"cannot read ({error.strerror or error})"
        return
    listing = list_images(path)
    read = dict(_read_each(listing))
    rows = [(listing.describe(e), *read[e.name]) for e in listing.entries]
    rows += [(f"{listing.source}/{name}", None, reason) for name, reason in listing.skipped]
    yield from sorted(rows, key=lambda row: row[0])


def _read_each(listing):
    """``(name, (bytes, None))`` per image, or ``(name, (None, reason))`` for one that cannot be read:
    all at once, then one by one if something fails (a damaged zip member)."""
    try:
        return [(entry.name, (data, None)) for entry, data in listing.read(listing.entries)]
    except DataError:
        pass
    out = []
    for entry in listing.entries:
        try:
            out += [(entry.name, (data, None)) for _, data in listing.read([entry])]
        except DataError as error:
            out.append((entry.name, (None, str(error).removeprefix(f"{listing.describe(entry)}: "))))
    return out


def _array_data(array: np.ndarray):
    """``(data, reason)`` of an array: uint8 as the PNG it would be, float [H, W] in [0, 1] as it is."""
    if array.dtype == np.uint8 and (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        if min(array.shape[:2]) == 0:
            return None, f"an empty array {array.shape}"
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        return buffer.getvalue(), None
    if array.ndim != 2 or array.dtype.kind != "f" or array.size == 0:
        return None, f"not an image array: {array.dtype} {array.shape} (expected uint8 [H, W(, 3|4)] or float [H, W])"
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        return None, "not an image array: float values outside [0, 1]"
    return array.astype(np.float32), None


def csv_rows(predictions: list[Prediction], top: int) -> list[list[str]]:
    """The predictions as a table, header first: path, class, probability, the ``top`` classes with
    theirs, the page geometry (empty for a model without it) and the reason an image has no answer."""
    header = ["path", "class", "probability"] + [f"{what}{k}" for k in range(1, top + 1)
                                                  for what in ("top", "probability_top")]
    rows = [header + list(GEOMETRY_FEATURES) + ["reason"]]
    for p in predictions:
        ranked = [v for name, prob in p.top for v in (name, f"{prob:.6f}")]
        ranked += [""] * (2 * top - len(ranked))
        page = [f"{p.geometry[name]:.6f}" for name in GEOMETRY_FEATURES] if p.geometry else [""] * len(GEOMETRY_FEATURES)
        rows.append([p.source, p.label or "", "" if p.probability is None else f"{p.probability:.6f}", *ranked,
                     *page, p.reason or ""])
    return rows


def summary_lines(predictions: list[Prediction], shown: int = 5) -> list[str]:
    """What ``predict`` prints: counts, the most frequent answers, how sure it was, what it could not read."""
    good = [p for p in predictions if p.ok]
    bad = [p for p in predictions if not p.ok]
    lines = [f"{len(predictions)} files: {len(good)} predicted, {len(bad)} unreadable"]
    if good:
        labels, counts = np.unique([p.label for p in good], return_counts=True)
        common = sorted(zip(counts, labels), key=lambda c: (-c[0], c[1]))[:shown]
        sure = np.array([p.probability for p in good])
        lines.append("most predicted: " + ", ".join(f"{label} x{count}" for count, label in common))
        lines.append(f"probability of the answer: median {np.median(sure):.3f}, under 0.5 for {int((sure < 0.5).sum())}")
    lines += [f"unreadable: {p.source}: {p.reason}" for p in bad[:shown]]
    if len(bad) > shown:
        lines.append(f"... and {len(bad) - shown} more unreadable (see the reason column)")
    return lines


def checked_output(path: str | os.PathLike) -> Path:
    """Where the predictions go, checked before anything is computed: never a run's file, never an
    existing file that is not a predictions table, in a folder that can be written."""
    path = check_output(Path(path), flag="--out")
    if path.exists():
        try:
            with path.open(encoding="utf-8") as f:
                first = f.readline()
        except (OSError, UnicodeDecodeError):
            first = ""
        if not first.startswith("path,class,probability,"):
            raise JaxcnnError(f"{path}: exists and is not a predictions table; refusing to replace it: "
                              "choose another --out")
    return ensure_writable(path, "the predictions", "--out")


def write_csv(path: Path, rows: list[list[str]]) -> None:
    """Writes the table atomically (a temporary file, then a rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    tmp.replace(path)
