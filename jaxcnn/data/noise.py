"""Label corruption for part 3: plant known label noise, write it as a folder data set, recover it.

A corruption spec is ``complementary``, ``permutation``, ``symmetric:RATE``, ``pairflip:RATE`` or a
``+``-joined combination of distinct terms, e.g. ``permutation+symmetric:0.1``. Whatever the written
order, the terms act on the true label in one fixed order: symmetric noise, then pair flips, then
the complementary draw, then the permutation. So the transition matrix
T[i, j] = P(observed = j | true = i) of a combination is the product ``S @ F @ C @ P`` of the
matrices of its terms.

- ``complementary``: every label becomes a uniformly drawn *other* class, T = (J - I)/(K - 1): the
  folder says only which digit an image is not (complementary labels, Ishida et al. 2017). This is
  the corruption of the original part-3 data set (``mnistTask3.zip``), and part 3's default.

- ``symmetric:r``: with probability r the label becomes a uniformly drawn *other* class
  (class-conditional noise of Natarajan et al. 2013; van Rooyen et al. 2015).
- ``pairflip:r``: with probability r class c becomes (c + 1) mod K (Han et al. 2018, "Co-teaching";
  Patrini et al. 2017, "Making deep neural networks robust to label noise: a loss correction
  approach", which also defines T and the forward correction).
- ``permutation``: every label is renamed by a seeded derangement of the classes (no fixed points).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from jaxcnn import rundir
from jaxcnn.errors import DataError

GRAMMAR = (
    "'complementary', 'permutation', 'symmetric:RATE', 'pairflip:RATE', distinct terms joined by '+' "
    "(e.g. 'permutation+symmetric:0.1'; RATE in [0, 1]), or 'clean'"
)
TERMS = ("complementary", "permutation", "symmetric", "pairflip")


@dataclasses.dataclass(frozen=True)
class CorruptionSpec:
    """Which corruptions to apply; rates of 0 mean the term is absent."""

    permutation: bool = False
    symmetric: float = 0.0
    pairflip: float = 0.0
    complementary: bool = False

    def __str__(self) -> str:
        """The canonical spec string, in the order the terms act; it parses back to this spec."""
        terms = [f"symmetric:{self.symmetric!r}"] if self.symmetric else []
        terms += [f"pairflip:{self.pairflip!r}"] if self.pairflip else []
        terms += ["complementary"] if self.complementary else []
        terms += ["permutation"] if self.permutation else []
        return "+".join(terms) or "clean"


def parse_corruption(spec: str | CorruptionSpec) -> CorruptionSpec:
    """Parse a spec string such as ``complementary`` or ``permutation+symmetric:0.1``; ValueError lists the grammar."""
    if isinstance(spec, CorruptionSpec):
        return spec
    text = str(spec).replace(" ", "")
    if text == "clean":
        return CorruptionSpec()
    fields: dict[str, object] = {}
    for term in text.split("+"):
        name, colon, rate = term.partition(":")
        if name in fields or name not in TERMS:
            raise ValueError(f"bad corruption spec {spec!r}: expected {GRAMMAR}")
        if name in ("permutation", "complementary"):
            if colon:
                raise ValueError(f"bad corruption spec {spec!r}: '{name}' takes no rate; expected {GRAMMAR}")
            fields[name] = True
            continue
        try:
            fields[name] = float(rate)
        except ValueError:
            raise ValueError(f"bad corruption spec {spec!r}: rate {rate!r} is not a number; expected {GRAMMAR}") from None
        if not 0.0 <= fields[name] <= 1.0:
            raise ValueError(f"bad corruption spec {spec!r}: rate {rate!r} is not in [0, 1]; expected {GRAMMAR}")
    return CorruptionSpec(**fields)


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for the permutation and the per-label noise of one seed."""
    perm_seq, noise_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(perm_seq), np.random.default_rng(noise_seq)


def derangement(num_classes: int, seed: int) -> np.ndarray:
    """The seeded permutation used by ``permutation``: int [K], no class maps to itself."""
    if num_classes < 2:
        raise ValueError("a derangement needs at least 2 classes")
    rng, _ = _rngs(seed)
    while True:  # rejection sampling; about 1 in e draws is a derangement
        perm = rng.permutation(num_classes)
        if not np.any(perm == np.arange(num_classes)):
            return perm


def transition_matrix(spec: str | CorruptionSpec, num_classes: int = 10, seed: int = 0) -> np.ndarray:
    """The exact expected T[i, j] = P(observed = j | true = i), float64 [K, K], rows sum to 1."""
    spec, k = parse_corruption(spec), num_classes
    eye = np.eye(k)
    symmetric = (1 - spec.symmetric) * eye + spec.symmetric * (1 - eye) / (k - 1)
    pairflip = (1 - spec.pairflip) * eye + spec.pairflip * np.roll(eye, 1, axis=1)
    complementary = (1 - eye) / (k - 1) if spec.complementary else eye
    permutation = eye[derangement(k, seed)] if spec.permutation else eye
    return symmetric @ pairflip @ complementary @ permutation


def corrupt_labels(labels, spec: str | CorruptionSpec, seed: int, *, num_classes: int = 10) -> np.ndarray:
    """Observed labels drawn from the true ``labels`` by ``spec``; int32 [N], deterministic in ``seed``."""
    spec, labels = parse_corruption(spec), np.asarray(labels)
    if labels.ndim != 1 or np.any((labels < 0) | (labels >= num_classes)):
        raise ValueError(f"labels must be a 1-D array of ints in [0, {num_classes})")
    _, rng = _rngs(seed)
    n = len(labels)
    flipped = rng.random(n) < spec.symmetric
    out = np.where(flipped, (labels + rng.integers(1, num_classes, n)) % num_classes, labels)
    out = np.where(rng.random(n) < spec.pairflip, (out + 1) % num_classes, out)
    if spec.complementary:  # drawn after the other terms' draws, so their labels stay as they were
        out = (out + rng.integers(1, num_classes, n)) % num_classes
    if spec.permutation:
        out = derangement(num_classes, seed)[out]
    return out.astype(np.int32)


def empirical_transition(true_labels, observed_labels, num_classes: int = 10) -> np.ndarray:
    """Row-normalised counts of (true, observed) pairs; rows of absent classes are 0."""
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (np.asarray(true_labels), np.asarray(observed_labels)), 1)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def _check_images(images: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(f"need uint8 images [N, 28, 28] and labels [N], got {images.dtype} {images.shape}, {labels.shape}")
    if np.any((labels < 0) | (labels >= num_classes)):
        raise ValueError(f"labels must lie in [0, {num_classes})")


TASK_ROOT = "mnistTask"  # the original's single top-level folder: mnistTask/<k>/image_NNNNNN.jpg
JPEG_QUALITY = 75  # PIL's default, what a plain ``image.save("x.jpg")`` writes
APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00" + b"Mac OS X        " + b"\x00\x00"  # header, no entries


def task_names(labels, seed: int) -> list[str]:
    """``mnistTask/<label>/image_NNNNNN.jpg`` per image; the numbers are a seeded shuffle of 0..N-1,
    so they say nothing of the source's order."""
    numbers = np.random.default_rng(np.random.SeedSequence([seed, 0x1A5E])).permutation(len(labels))
    width = max(6, len(str(len(labels) - 1)))
    return [f"{TASK_ROOT}/{int(label)}/image_{number:0{width}d}.jpg" for label, number in zip(labels, numbers)]


def _jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def write_task_set(images, labels, out, seed: int, *, as_zip: bool = False, num_classes: int = 10,
                   overwrite: bool = False) -> Path:
    """Write the set in the original's form: grayscale JPEGs ``mnistTask/<label>/image_NNNNNN.jpg``.

    ``as_zip``: ``out`` is a zip as a Mac's Finder makes one: folder entries, then every file with
    its ``__MACOSX/.../._name`` AppleDouble member. Written beside ``out`` and renamed into place;
    an existing ``out`` is refused unless ``overwrite``.
    """
    images, labels, out = np.asarray(images), np.asarray(labels), Path(out)
    _check_images(images, labels, num_classes)
    if out.exists() and not overwrite and (out.is_file() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not empty; pass overwrite=True to replace it")
    names = task_names(labels, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        built = tmp / out.name
        if as_zip:
            with zipfile.ZipFile(built, "w", zipfile.ZIP_DEFLATED) as archive:
                for folder in [TASK_ROOT] + [f"{TASK_ROOT}/{c}" for c in range(num_classes)]:
                    archive.writestr(folder + "/", b"")
                for name, image in sorted(zip(names, images), key=lambda pair: pair[0]):
                    archive.writestr(name, _jpeg(image))
                    folder, _, file = name.rpartition("/")
                    archive.writestr(f"__MACOSX/{folder}/._{file}", APPLEDOUBLE)
        else:
            for c in range(num_classes):
                (built / TASK_ROOT / str(c)).mkdir(parents=True)
            for name, image in zip(names, images):
                (built / name).write_bytes(_jpeg(image))
        _replace(built, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _replace(built: Path, out: Path) -> None:
    """Move ``built`` to ``out``, the old ``out`` (if any) removed only once the new one is in place."""
    old = built.with_name(built.name + ".old")
    if out.exists():
        out.rename(old)
    built.rename(out)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink(missing_ok=True)


def truth_path(out_dir) -> Path:
    """The side file with the ground truth of a noisy folder: beside it, never inside it."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".truth.json")


def check_made_here(out_dir: Path) -> None:
    """Refuses to replace a file or non-empty ``out_dir`` that is not a set written by ``make_noisy_mnist``
    (its truth file beside it, no run inside): ``--overwrite`` deletes only what it made."""
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return
    holds_a_run = out_dir.is_dir() and bool(rundir.run_files(out_dir) or next(out_dir.rglob(rundir.MARKER), None))
    if not truth_path(out_dir).is_file() or holds_a_run:
        raise DataError(f"{out_dir}: not a set made by make-noisy-mnist (no {truth_path(out_dir).name} beside it, "
                        "or a run inside), so --overwrite will not delete it: choose another --out")


def make_noisy_mnist(
    images, true_labels, out_dir, spec: str | CorruptionSpec, seed: int, overwrite: bool = False,
    as_zip: bool = False,
) -> dict:
    """Corrupt ``true_labels``, write the images in the original's form (``write_task_set``; a zip
    with ``as_zip``), and the truth beside it.

    Returns a summary; the side file ``truth_path(out_dir)`` holds it plus the transition matrices.
    """
    spec, true_labels, k = parse_corruption(spec), np.asarray(true_labels), 10
    if overwrite:
        check_made_here(Path(out_dir))
    observed = corrupt_labels(true_labels, spec, seed, num_classes=k)
    out_dir = write_task_set(images, observed, out_dir, seed, as_zip=as_zip, num_classes=k, overwrite=overwrite)
    perm = derangement(k, seed) if spec.permutation else np.arange(k)
    T = transition_matrix(spec, k, seed)
    summary = {
        "data_dir": str(out_dir),
        "truth_file": str(truth_path(out_dir)),
        "spec": str(spec),
        "seed": int(seed),
        "num_images": int(len(observed)),
        "permutation": perm.tolist(),
        "expected_noise_rate": float(1 - np.mean(T[true_labels, perm[true_labels]])),
        "measured_noise_rate": float(np.mean(observed != perm[true_labels])),
        "observed_class_counts": np.bincount(observed, minlength=k).tolist(),
    }
    truth = summary | {
        "transition_matrix": T.tolist(),
        "measured_transition": empirical_transition(true_labels, observed, k).tolist(),
    }
    tmp = truth_path(out_dir).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(truth, indent=1))
    os.replace(tmp, truth_path(out_dir))
    return summary
