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
import scipy.optimize  # a dependency of jax itself
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


def write_class_folders(images, labels, out_dir, *, num_classes: int = 10, overwrite: bool = False) -> Path:
    """Write ``out_dir/<label>/<index>.png`` (grayscale, white on black) for every image.

    The folder is built beside ``out_dir`` and renamed into place, so a crash never leaves half a
    data set. A non-empty ``out_dir`` is refused unless ``overwrite``.
    """
    images, labels, out_dir = np.asarray(images), np.asarray(labels), Path(out_dir)
    _check_images(images, labels, num_classes)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not overwrite)):
        raise DataError(f"{out_dir}: already exists and is not empty; pass --overwrite to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        width = max(5, len(str(len(images) - 1)))
        for c in range(num_classes):
            (tmp / str(c)).mkdir()
        for index, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(image).save(tmp / str(int(label)) / f"{index:0{width}d}.png")
        old = out_dir.with_name(tmp.name + ".old")
        if out_dir.exists():
            out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


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


def estimate_transition(
    observed_labels, predictions, *, num_classes: int | None = None, min_confidence: float = 0.0
) -> np.ndarray:
    """Estimate T[i, j] = P(observed j | true i), taking a clean-trained model as the oracle for i.

    ``predictions`` is int [N] (hard labels) or probabilities float [N, K]; with probabilities only
    examples whose top probability is at least ``min_confidence`` count, which trims the oracle's
    own mistakes. Raises ValueError if a class keeps no examples.
    """
    observed, predictions = np.asarray(observed_labels), np.asarray(predictions)
    if predictions.ndim == 2:
        num_classes = num_classes or predictions.shape[1]
        keep = predictions.max(axis=1) >= min_confidence
        oracle, observed = predictions.argmax(axis=1)[keep], observed[keep]
    else:
        num_classes = num_classes or int(max(observed.max(), predictions.max())) + 1
        oracle = predictions
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (oracle, observed), 1)
    empty = np.flatnonzero(counts.sum(axis=1) == 0)
    if empty.size:
        raise ValueError(f"no examples left for predicted classes {empty.tolist()}; lower min_confidence")
    return counts / counts.sum(axis=1, keepdims=True)


def cycle_notation(mapping) -> str:
    """A permutation as disjoint cycles, fixed points left out: [1, 0, 2] -> '(0 1)'."""
    mapping, seen, cycles = list(mapping), set(), []
    for start in range(len(mapping)):
        cycle, i = [], start
        while i not in seen:
            seen.add(i)
            cycle.append(i)
            i = mapping[i]
        if len(cycle) > 1:
            cycles.append("(" + " ".join(map(str, cycle)) + ")")
    return "".join(cycles) or "()"


def describe_transition(T, prior=None, mapping=None) -> dict:
    """What a (estimated) transition matrix says, in words and numbers.

    mapping: the most likely observed class per true class; is_permutation / is_derangement / cycles
    describe it. noise_rate: 1 - sum_i prior_i T[i, mapping[i]] (uniform prior by default).
    The mass off the mapping, renormalised per row, tells the noise kind: its mean top share is
    about 1/(K-1) for symmetric noise and 1 for pair flips; ``pattern`` names it
    ('none' below 1% noise, 'pairflip-like' for a top share >= 0.5, 'symmetric-like' for a total
    variation distance to uniform <= 0.25, else 'mixed'). ``secondary`` is each row's top off-mapping class.
    """
    T = np.asarray(T, dtype=np.float64)
    k = len(T)
    prior = np.full(k, 1 / k) if prior is None else np.asarray(prior, dtype=np.float64) / np.sum(prior)
    mapping = T.argmax(axis=1) if mapping is None else np.asarray(mapping)
    is_permutation = len(set(mapping.tolist())) == k
    off = T.copy()
    off[np.arange(k), mapping] = np.nan
    off_mass = np.nansum(off, axis=1)
    noisy_rows = off_mass > 1e-12
    shares = off[noisy_rows] / off_mass[noisy_rows, None]
    top_share = float(np.nanmean(np.nanmax(shares, axis=1))) if noisy_rows.any() else 0.0
    tv_to_uniform = float(np.mean(0.5 * np.nansum(np.abs(shares - 1 / (k - 1)), axis=1))) if noisy_rows.any() else 0.0
    noise_rate = float(1 - prior @ T[np.arange(k), mapping])
    if noise_rate < 0.01:
        pattern = "none"
    elif top_share >= 0.5:
        pattern = "pairflip-like"
    elif tv_to_uniform <= 0.25:
        pattern = "symmetric-like"
    else:
        pattern = "mixed"
    return {
        "mapping": mapping.tolist(),
        "is_permutation": is_permutation,
        "is_derangement": is_permutation and not np.any(mapping == np.arange(k)),
        "cycles": cycle_notation(mapping) if is_permutation else None,
        "noise_rate": noise_rate,
        "pattern": pattern,
        "off_mapping_top_share": top_share,
        "off_mapping_tv_to_uniform": tv_to_uniform,
        "secondary": np.where(np.isnan(off), -1.0, off).argmax(axis=1).tolist(),
    }


KINDS = ("clean", "permutation", "complementary", "pair_flip", "symmetric", "uninformative", "mixed")
CLEAN_MAX_NOISE = 0.05  # less noise than this off a bijective mapping: clean (or a pure permutation)
PAIR_MIN_NOISE = 0.15  # a pair flip moves at least this much of the mass ...
PAIR_MIN_SHARE = 0.5  # ... and sends at least this share of what it moves to one class per row
SYMMETRIC_MAX_TV = 0.3  # off-mapping mass this close (total variation) to uniform: symmetric
EXTREME_SD = 2.2  # the max (min) of K uniform cells estimated from n samples lies ~1.5 sd above (below) 1/K
BIJECTION_SLACK = 0.025  # the best bijection may hold this much less mean mass than the rows' own extremes
ROW_SPREAD_MAX = 0.5  # rows whose mass on the mapping differs more than this are of different kinds


def classify_transition(T, rows_seen=None, prior=None) -> dict:
    """Which kind of corruption a (estimated) transition matrix T[i, j] = P(folder j | digit i) is.

    Every kind is read off one family, ``a`` on a mapping and the rest spread evenly:
    ``a`` = 1 is clean (or a renaming), 1/K uninformative, 0 complementary. The figures:
    ``peak_mass`` (mean of each row's largest cell, the mapping's mass), ``hole_mass`` (mean of each
    row's smallest cell), ``diagonal_mass``, and, off the mapping, ``off_mapping_top_share`` and
    ``off_mapping_tv_to_uniform`` (``describe_transition``). The rule, in order:

    The mapping is the bijection (``scipy.optimize.linear_sum_assignment``) with the most mass
    (the least, for a hole); a row whose own largest cell is elsewhere by sampling noise (a 40%
    pair flip from 100 examples) keeps the kind, while ``BIJECTION_SLACK`` more lost mass is no
    bijection at all.

    1. ``complementary``: the smallest cells are a hole (``hole_mass <= hole_threshold``), one per
       row and each in another folder (a bijection, the ``mapping``: the folder each digit is never
       in), and no row has a peak (``peak_mass <= 1/(K-1) + margin``). noise_rate: the mass in the holes.
    2. ``uninformative``: no peak either: ``peak_mass <= peak_threshold``, rows nearly uniform.
    3. peaked rows whose largest cells are not near a bijection (two digits in one folder), or rows
       of different kinds (their mass on the mapping differs by more than ``ROW_SPREAD_MAX``): ``mixed``.
    4. noise off the mapping below ``CLEAN_MAX_NOISE``: ``clean`` (mapping the identity) or ``permutation``.
    5. a mapping other than the identity: ``permutation`` (with noise; ``pattern`` says which).
    6. off-mapping mass concentrated (top share >= ``PAIR_MIN_SHARE``, noise >= ``PAIR_MIN_NOISE``): ``pair_flip``.
    7. off-mapping mass near uniform (TV <= ``SYMMETRIC_MAX_TV`` plus the sampling noise): ``symmetric``.
    8. otherwise ``mixed``.

    ``rows_seen`` (the number of examples behind each row, default: exact) widens the margins by
    the sampling noise: an extreme cell of a uniform row estimated from n examples lies about 1.5
    standard deviations sqrt((1/K)(1 - 1/K)/n) from 1/K, so the thresholds keep ``EXTREME_SD`` of
    them, and at least 1/(2K), away from 1/K.
    """
    T = np.asarray(T, dtype=np.float64)
    k = len(T)
    prior = np.full(k, 1 / k) if prior is None else np.asarray(prior, dtype=np.float64) / np.sum(prior)
    n = np.inf if rows_seen is None else max(1.0, float(np.mean(rows_seen)))
    margin = max(1 / (2 * k), EXTREME_SD * np.sqrt((1 / k) * (1 - 1 / k) / n))
    rows = np.arange(k)
    peaks, holes = scipy.optimize.linear_sum_assignment(-T)[1], scipy.optimize.linear_sum_assignment(T)[1]
    peak_mass, hole_mass = float(T[rows, peaks].mean()), float(T[rows, holes].mean())
    peak_loss = float(T.max(axis=1).mean()) - peak_mass
    hole_loss = hole_mass - float(T.min(axis=1).mean())
    figures = {"diagonal_mass": float(np.trace(T) / k), "peak_mass": peak_mass, "hole_mass": hole_mass,
               "peak_threshold": 1 / k + margin, "hole_threshold": 1 / k - margin,
               "rows_seen_mean": None if rows_seen is None else float(n), "mapping_mass_lost": peak_loss,
               "row_spread": float(np.ptp(T[rows, peaks]))}
    noise = float(1 - prior @ T[rows, peaks])
    off_mapping = n * max(noise, 1e-12)
    described = describe_transition(T, prior, peaks)
    if hole_mass <= 1 / k - margin and hole_loss <= BIJECTION_SLACK and peak_mass <= 1 / (k - 1) + margin:
        kind, mapping, noise = "complementary", holes, float(prior @ T[rows, holes])
        reason = "every digit is missing from one folder of its own, and spread evenly over the others"
    elif peak_mass <= 1 / k + margin:
        kind, mapping = "uninformative", peaks
        reason = "every row is close to uniform: the folder says nothing about the digit"
    elif peak_loss > BIJECTION_SLACK:
        kind, mapping = "mixed", peaks
        reason = "the most likely folders are not a bijection (some folder is the top of two digits)"
    elif np.ptp(T[rows, peaks]) > ROW_SPREAD_MAX:
        kind, mapping = "mixed", peaks
        reason = "the rows are of different kinds (some peaked, some flat)"
    elif noise < CLEAN_MAX_NOISE:
        identity = bool(np.all(peaks == rows))
        kind, mapping = ("clean" if identity else "permutation"), peaks
        reason = "nearly all the mass is on " + ("the diagonal" if identity else "a renaming of the folders")
    elif not np.all(peaks == rows):
        kind, mapping = "permutation", peaks
        reason = f"a renaming of the folders, with noise off it ({described['pattern']})"
    elif described["off_mapping_top_share"] >= PAIR_MIN_SHARE and noise >= PAIR_MIN_NOISE:
        kind, mapping = "pair_flip", peaks
        reason = "the mass off the diagonal goes mostly to one other folder per digit"
    elif described["off_mapping_tv_to_uniform"] <= SYMMETRIC_MAX_TV + 0.4 * np.sqrt((k - 2) / off_mapping):
        kind, mapping = "symmetric", peaks
        reason = "the mass off the diagonal is spread evenly over the other folders"
    else:
        kind, mapping = "mixed", peaks
        reason = "the mass off the diagonal is neither spread evenly nor concentrated on one folder"
    return {"kind": kind, "reason": reason, "mapping": mapping.tolist(), "noise_rate": noise,
            "is_permutation": described["is_permutation"], "cycles": described["cycles"],
            "pattern": described["pattern"], "off_mapping_top_share": described["off_mapping_top_share"],
            "off_mapping_tv_to_uniform": described["off_mapping_tv_to_uniform"], **figures}


def transition_error(T_est, T_true) -> dict:
    """Max and mean absolute difference between two transition matrices of the same shape."""
    T_est, T_true = np.asarray(T_est, dtype=np.float64), np.asarray(T_true, dtype=np.float64)
    if T_est.shape != T_true.shape:
        raise ValueError(f"shape mismatch: {T_est.shape} vs {T_true.shape}")
    diff = np.abs(T_est - T_true)
    return {"max_abs_error": float(diff.max()), "mean_abs_error": float(diff.mean())}


def inverse_mapping(mapping) -> np.ndarray:
    """The inverse of a bijective mapping: inverse[mapping[i]] = i; ValueError if not a bijection."""
    mapping = np.asarray(mapping)
    if sorted(mapping.tolist()) != list(range(len(mapping))):
        raise ValueError(f"mapping {mapping.tolist()} is not a permutation of 0..{len(mapping) - 1}")
    inverse = np.empty_like(mapping)
    inverse[mapping] = np.arange(len(mapping))
    return inverse


def correct_labels(observed_labels, mapping) -> np.ndarray:
    """Undo a recovered true -> observed permutation: the label each observed label most likely meant."""
    return inverse_mapping(mapping)[np.asarray(observed_labels)].astype(np.int32)
