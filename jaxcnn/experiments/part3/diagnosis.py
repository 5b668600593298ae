"""Part 3's diagnosis of the corrupted folders: what the images are (the audit), and how their
labels relate to the digits, read three times: by MNIST's own labels of the images (the matched
view), through a clean model (the oracle view) and from the folder labels alone (the oracle-free
view, from held-out posteriors that ``run.free_posteriors`` trains for); at the end, the estimate
scored against the truth. It reads, never trains; ``report`` writes its records for the report."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from jaxcnn.data import audit
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.data.imagefiles import list_images
from jaxcnn.data.mnist import CLASS_NAMES as DIGITS, load_mnist, load_mnist_split
from jaxcnn.data.noise import truth_path
from jaxcnn.evaluation.convergence import stat
from jaxcnn.evaluation.transitions import classify_transition, cycle_notation, estimate_transition, transition_error
from jaxcnn.experiments.part3.config import Part3Config
from jaxcnn.experiments.part3.methods import K, Reading
from jaxcnn.experiments.records import accuracy_point
from jaxcnn.probabilities import softmax_mean

logger = logging.getLogger("jaxcnn")


def diagnose(folder_labels, oracle_probs, min_confidence: float) -> dict:
    """The oracle view: T estimated from a clean model's digits (rows) and the folders (columns),
    and its kind (``classify_transition``). The prior of the noise rate is the oracle's class
    frequencies among the images it kept."""
    T_est = estimate_transition(folder_labels, oracle_probs, num_classes=K, min_confidence=min_confidence)
    kept = oracle_probs.max(1) >= min_confidence
    rows_seen = np.bincount(oracle_probs.argmax(1)[kept], minlength=K)
    return {"transition": T_est.tolist(), "min_confidence": min_confidence, "kept_fraction": float(kept.mean()),
            "rows_seen": rows_seen.tolist(), **classify_transition(T_est, rows_seen, rows_seen)}


COPIES_FOR_VIEW = 0.9  # the matched view reads the folders only where this share of images are near copies


def matched_view(folder_labels, images, mnist_train: ArrayDataset) -> dict:
    """The matched view: where the images come from, and what their folders hold by the label of
    each image's nearest MNIST training image (``audit.nearest``).

    Where the set is made of MNIST training images (at least ``COPIES_FOR_VIEW`` of them near
    copies), these are MNIST's own labels of the very same images: the exact T, and the number of
    images that sit in their own digit's folder. Clean labels: no model learns from them.
    """
    folders = np.asarray(folder_labels)
    index, distance = audit.nearest(images, mnist_train.images)
    digits = mnist_train.labels[index]
    own, near = digits == folders, distance <= audit.NEAR
    copies = float(near.mean())
    record = {"pool": f"MNIST train ({len(mnist_train)} images)", "images": len(folders),
              "near_copies": int(near.sum()), "near_threshold": audit.NEAR,
              "distinct_nearest": int(len(np.unique(index))),
              "nearest_difference": {"median": float(np.median(distance)), "p99": float(np.percentile(distance, 99)),
                                     "max": float(distance.max())},
              "own_folder": {"images": int(own.sum()), "share": float(own.mean()),
                             "per_digit": np.bincount(digits[own], minlength=K).tolist()},
              "digits": np.bincount(digits, minlength=K).tolist()}
    if copies < COPIES_FOR_VIEW or not np.all(record["digits"]):
        return {**record, "kind": None, "reason": f"only {copies:.1%} of the images are near copies of MNIST "
                f"training images (the view needs {COPIES_FOR_VIEW:.0%}) or a digit has none"}
    T = estimate_transition(folders, digits, num_classes=K)
    return {**record, "transition": T.tolist(), **classify_transition(T, record["digits"], record["digits"])}


FREE_Z = 3.0  # standard errors a folder frequency must lie from 1/K to count as signal (one-sided 0.13% each)


def free_diagnosis(folder_labels, posteriors) -> dict:
    """The oracle-free view, from held-out posteriors ``q[n, j]`` = P(folder j | image n) of a model
    trained on the other folds' folder labels.

    Clean (or renamed) folders make an image's folder its most likely one far more often than 1/K
    (``folder_is_most_likely``); complementary folders make it its least likely one far *less* often
    than 1/K (``folder_is_least_likely``: the model learnt "not the digit", and the folder never is
    the digit); uninformative folders do neither. Whichever deviation from 1/K is larger, in standard
    errors sqrt((1/K)(1 - 1/K)/n), decides, if it reaches ``FREE_Z``: these frequencies are unbiased,
    so a weak folder model (a blurred, shallow hole) still reads right. Each image's *anchor* is then
    its most (least) likely folder, T is estimated with the anchor as the row (``estimate_transition``)
    and read by ``classify_transition``, which names a peaked kind (clean, symmetric, pair_flip).
    The view assumes the anchor names the digit: a renaming of the folders leaves q peaked at the
    folder itself, so a permutation reads as ``clean``.
    """
    q, folders = np.asarray(posteriors, np.float64), np.asarray(folder_labels)
    n = len(folders)
    most, least = float(np.mean(q.argmax(1) == folders)), float(np.mean(q.argmin(1) == folders))
    se = np.sqrt((1 / K) * (1 - 1 / K) / n)
    z_peak, z_hole = (most - 1 / K) / se, (1 / K - least) / se
    holed = z_hole > z_peak
    anchor = q.argmin(1) if holed else q.argmax(1)
    rows_seen = np.bincount(anchor, minlength=K)
    figures = {"anchor": "least likely" if holed else "most likely", "images": n,
               "folder_is_most_likely": most, "folder_is_least_likely": least, "z_peak": float(z_peak),
               "z_hole": float(z_hole), "posterior_profile": np.sort(q, axis=1)[:, ::-1].mean(0).tolist(),
               "rows_seen": rows_seen.tolist()}
    T_free = estimate_transition(folders, anchor, num_classes=K) if np.all(rows_seen) else None
    reading = classify_transition(T_free, rows_seen) if T_free is not None else {}
    if max(z_peak, z_hole) < FREE_Z:
        verdict = {"kind": "uninformative", "reason": f"the folders are neither the images' most nor their least "
                   f"likely ones more than chance says ({max(z_peak, z_hole):.1f} standard errors)"}
    elif holed:
        # noise rate: images whose folder is their anchor, an upper bound (the model's mistakes count)
        verdict = {"kind": "complementary", "mapping": list(range(K)), "noise_rate": least,
                   "reason": f"an image's folder is its least likely one in {least:.1%} of the held-out images, "
                             f"{z_hole:.1f} standard errors below chance: the folder is the digit it is not"}
    else:
        verdict = {"kind": reading["kind"], "reason": f"an image's folder is its most likely one in {most:.1%} "
                   f"of the held-out images; read from T: {reading['reason']}"}
    return {**reading, **figures, "transition": None if T_free is None else T_free.tolist(), **verdict,
            "transition_reading": reading.get("kind")}


def compare_views(oracle: dict, free: dict) -> dict:
    """Whether the two views agree, and if not, what each rests on."""
    agree = oracle["kind"] == free["kind"]
    note = "the two views agree" if agree else (
        f"the oracle reads {oracle['kind']}, the folders alone {free['kind']}: the oracle view assumes a "
        "model of clean MNIST names each digit rightly (its own errors count as noise); the oracle-free "
        "view assumes the folder model's most (or least) likely folder names the digit, which holds up to "
        "a renaming, so it cannot see a permutation" + (" (as here)" if oracle["kind"] == "permutation" else ""))
    return {"agree": agree, "note": note}


def renamed_accuracy(logits, labels, mapping) -> dict:
    """A model of the folder labels, its outputs renamed to digits by the estimated mapping.

    ``logits`` [K, N, C]; folder ``mapping[i]`` holds digit i, so digit i's score is ``logits[..., mapping[i]]``.
    """
    renamed = np.asarray(logits)[..., np.asarray(mapping)]
    return accuracy_point(stat((renamed.argmax(-1) == labels).mean(1).tolist()),
                          float(np.mean(softmax_mean(renamed).argmax(-1) == labels)))


def least_likely_accuracy(logits, labels) -> dict:
    """A model of complementary folder labels read the other way: its least likely folder as the digit."""
    logits = np.asarray(logits)
    return accuracy_point(stat((logits.argmin(-1) == labels).mean(1).tolist()),
                          float(np.mean(softmax_mean(logits).argmin(-1) == labels)))


def score_estimate(data_dir: Path, diagnosis: dict) -> dict | None:
    """The oracle view's estimate against the truth file beside the data, if there is one. Call only
    after training."""
    diagnosis = diagnosis["oracle"]
    path = truth_path(data_dir)
    if not path.is_file():
        return None
    truth = json.loads(path.read_text())
    planted_T = np.asarray(truth["transition_matrix"])
    return {"truth_file": str(path), "read_after_training": True, "planted_spec": truth["spec"],
            "planted_kind": classify_transition(planted_T)["kind"], "kind_matches":
                classify_transition(planted_T)["kind"] == diagnosis["kind"],
            "planted_permutation": truth["permutation"], "planted_cycles": cycle_notation(truth["permutation"]),
            "planted_noise_rate": truth["measured_noise_rate"],
            "vs_expected_T": transition_error(diagnosis["transition"], planted_T),
            "vs_measured_T": transition_error(diagnosis["transition"], truth["measured_transition"])}


def audit_images(source: Path, noisy: ArrayDataset, test: ArrayDataset, data_root: Path, size: int, seed: int) -> dict:
    """``results["audit"]``: the files, pixel statistics beside clean MNIST train and test, and exact
    and near duplicates inside the set and against the MNIST test set (the whole test set, whatever
    ``test_size``: a leaked image voids any test score)."""
    listing = list_images(source)
    counts = np.bincount(noisy.labels, minlength=K)
    clean_train = load_mnist_split(data_root, "train", size, seed)
    clean_test = load_mnist(data_root, "test")
    return {"files": audit.file_audit(listing, {d: int(c) for d, c in zip(DIGITS, counts)}),
            "pixels": {"set": audit.pixel_stats(noisy.images), "mnist_train": audit.pixel_stats(clean_train.images),
                       "mnist_test": audit.pixel_stats(clean_test.images)},
            "duplicates_inside": audit.duplicates(noisy.images),
            "duplicates_in_mnist_test": audit.duplicates(noisy.images, clean_test.images)}


def folder_model_readings(logits, labels, reading: Reading) -> dict:
    """Other readings of a model of the folder labels that the diagnosis suggests: its outputs
    renamed by the oracle's mapping (a renaming), its least likely folder (complementary labels)."""
    readings = {}
    if reading.is_permutation and reading.kinds["oracle"] != "complementary":
        readings["renamed"] = renamed_accuracy(logits, labels, list(reading.mapping))
    if reading.kinds["oracle_free"] == "complementary":
        readings["least_likely"] = least_likely_accuracy(logits, labels)
    return readings


def examine(cfg: Part3Config, source: Path, noisy: ArrayDataset, test: ArrayDataset, data_root: Path):
    """The images alone, before any label is read: ``(audit, matched view)``."""
    audited = audit_images(source, noisy, test, data_root, cfg.reference_size, cfg.draw_seed + 1)
    logger.info("part 3: audit: %d near-duplicates of MNIST test images, %d inside the set, %d stray files",
                audited["duplicates_in_mnist_test"]["near"], audited["duplicates_inside"]["near"],
                audited["files"]["stray_files"]["count"])
    matched = matched_view(noisy.labels, noisy.images, load_mnist(data_root, "train"))
    logger.info("part 3: %s", matched_line(matched))
    return audited, matched


def diagnose_views(cfg: Part3Config, noisy: ArrayDataset, oracle_probs, matched: dict,
                   held_out: tuple[np.ndarray, np.ndarray]) -> tuple[Reading, dict]:
    """The oracle view and the oracle-free one: ``(reading, diagnosis)``, the diagnosis as recorded
    (both views, how they compare, and the matched view) and what the methods read of it.
    ``held_out``: ``(indices, q)``, the cross-validated P(folder | image) of ``run.free_posteriors``."""
    chosen, q = held_out
    diagnoses = {"oracle": diagnose(noisy.labels, oracle_probs, cfg.min_confidence),
                 "oracle_free": free_diagnosis(noisy.labels[chosen], q)}
    diagnosis = {"kind": diagnoses["oracle"]["kind"], **diagnoses, **compare_views(*diagnoses.values()),
                 "matched": matched}
    if matched.get("transition"):
        diagnosis["oracle"]["vs_matched_T"] = transition_error(diagnoses["oracle"]["transition"], matched["transition"])
    for view, d in diagnoses.items():
        logger.info("part 3: %s view: %s (%s); mapping %s, noise rate %s", view, d["kind"], d["reason"],
                    d.get("mapping"), d.get("noise_rate"))
    return reading(diagnosis), diagnosis


def reading(diagnosis: dict) -> Reading:
    """What the methods need of a recorded diagnosis (``Reading``)."""
    oracle = diagnosis["oracle"]
    return Reading(kinds={view: diagnosis[view]["kind"] for view in ("oracle", "oracle_free")},
                   mapping=tuple(oracle["mapping"]), is_permutation=oracle["is_permutation"],
                   transition=tuple(map(tuple, oracle["transition"])))


def matched_line(matched: dict) -> str:
    """Where the images come from and how many sit in their own digit's folder (the matched view)."""
    own, spread = matched["own_folder"], matched["nearest_difference"]
    line = (f"matched view (MNIST's labels of each image's nearest {matched['pool']} image): "
            f"{matched['near_copies']} of {matched['images']} images are near copies (difference <= "
            f"{matched['near_threshold']}; median {spread['median']:.3f}, max {spread['max']:.3f}), of "
            f"{matched['distinct_nearest']} distinct images; {own['images']} ({own['share']:.2%}) sit in their own "
            f"digit's folder, per digit {own['per_digit']}")
    return line + (f"; {matched['kind']} ({matched['reason']})" if matched["kind"] else f"; no reading: {matched['reason']}")
