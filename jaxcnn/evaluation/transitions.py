"""Reading label noise: estimate the transition matrix T[i, j] = P(observed j | true i) from a
clean model's predictions, and name its kind (clean, permutation, complementary, pair flip,
symmetric, uninformative or mixed) with the mapping it implies. Part 3's diagnosis."""

from __future__ import annotations

import numpy as np
import scipy.optimize  # a dependency of jax itself


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
    described = describe_transition(T, prior, peaks)
    kind, reason = kind_of(figures, k, margin, hole_loss, noise, n * max(noise, 1e-12), described,
                           bool(np.all(peaks == rows)))
    mapping = holes if kind == "complementary" else peaks
    if kind == "complementary":
        noise = float(prior @ T[rows, holes])
    return {"kind": kind, "reason": reason, "mapping": mapping.tolist(), "noise_rate": noise,
            "is_permutation": described["is_permutation"], "cycles": described["cycles"],
            "pattern": described["pattern"], "off_mapping_top_share": described["off_mapping_top_share"],
            "off_mapping_tv_to_uniform": described["off_mapping_tv_to_uniform"], **figures}


def kind_of(figures: dict, k: int, margin: float, hole_loss: float, noise: float, off_mapping: float,
            described: dict, identity: bool) -> tuple[str, str]:
    """``classify_transition``'s rule, in its order: the kind and why, from the figures of a K x K
    matrix (``off_mapping``: the examples behind the mass off the mapping; ``identity``: the peaks
    are the diagonal)."""
    if (figures["hole_mass"] <= 1 / k - margin and hole_loss <= BIJECTION_SLACK
            and figures["peak_mass"] <= 1 / (k - 1) + margin):
        return "complementary", "every digit is missing from one folder of its own, and spread evenly over the others"
    if figures["peak_mass"] <= 1 / k + margin:
        return "uninformative", "every row is close to uniform: the folder says nothing about the digit"
    if figures["mapping_mass_lost"] > BIJECTION_SLACK:
        return "mixed", "the most likely folders are not a bijection (some folder is the top of two digits)"
    if figures["row_spread"] > ROW_SPREAD_MAX:
        return "mixed", "the rows are of different kinds (some peaked, some flat)"
    if noise < CLEAN_MAX_NOISE:
        return ("clean" if identity else "permutation"), \
            "nearly all the mass is on " + ("the diagonal" if identity else "a renaming of the folders")
    if not identity:
        return "permutation", f"a renaming of the folders, with noise off it ({described['pattern']})"
    if described["off_mapping_top_share"] >= PAIR_MIN_SHARE and noise >= PAIR_MIN_NOISE:
        return "pair_flip", "the mass off the diagonal goes mostly to one other folder per digit"
    if described["off_mapping_tv_to_uniform"] <= SYMMETRIC_MAX_TV + 0.4 * np.sqrt((k - 2) / off_mapping):
        return "symmetric", "the mass off the diagonal is spread evenly over the other folders"
    return "mixed", "the mass off the diagonal is neither spread evenly nor concentrated on one folder"


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
