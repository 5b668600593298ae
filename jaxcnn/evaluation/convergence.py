"""How fast a run converges, read from ``fit``'s history (epochs, steps and training seconds to an
accuracy, compilation left out),
and figures over seeds: mean ± 95% CI (``stat``), paired differences and what they say."""

from __future__ import annotations

import numpy as np

from jaxcnn.evaluation.metrics import mean_ci95


def stat(values) -> dict:
    """Mean ± 95% CI over the seeds whose value is not None; ``n`` counts them, ``values`` keeps all."""
    values = list(values)
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "ci95": None, "n": 0, "values": values}
    return {**mean_ci95(present), "values": values}


def paired(a: dict, b: dict) -> dict:
    """``a - b`` seed by seed, as a ``stat``: two runs of the same seeds share their data order and
    head initialisation, so the pair cancels that noise. A seed that lacks either value is left out."""
    if len(a["values"]) != len(b["values"]):
        raise ValueError(f"cannot pair {len(a['values'])} seeds with {len(b['values'])}")
    return stat([None if None in (x, y) else x - y for x, y in zip(a["values"], b["values"])])


def verdict(difference: dict, lower_is_better: bool = False) -> str:
    """What a paired ``difference`` (a minus b) says: ``better``, ``worse`` (its 95% CI excludes 0),
    or ``no difference measured`` (it does not, or fewer than two pairs)."""
    if difference["n"] < 2 or difference["ci95"] is None or abs(difference["mean"]) <= difference["ci95"]:
        return "no difference measured"
    return "better" if (difference["mean"] < 0) == lower_is_better else "worse"


def training_seconds(record: dict) -> float | None:
    """A record's (an epoch's or a probe's) wall seconds less the seconds jax spent compiling in
    them; None for a record written before compile time was recorded (its seconds count both)."""
    if "compile_seconds" not in record:
        return None
    return record["seconds"] - record["compile_seconds"]


def validation_points(history: list[dict]) -> list[tuple[int, float | None, list[float]]]:
    """Every validation of a run in order, the first epoch's probes included: (step, training
    seconds since training began, test accuracy per seed).

    Training seconds leave compilation out (``training_seconds``), so a run that reuses another's
    programs and one that compiles them are timed alike. Seeds train side by side, so the seconds
    are the population's clock. None where the history did not record its compile time.
    """
    points, elapsed = [], 0.0
    for record in history:
        for probe in record.get("probes", []):
            spent = training_seconds(probe)
            points.append((probe["step"], None if spent is None or elapsed is None else elapsed + spent,
                           probe["val_accuracy"]))
        spent = training_seconds(record)
        elapsed = None if spent is None or elapsed is None else elapsed + spent
        points.append((record["step"], elapsed, record["val_accuracy"]))
    return points


def first_reaching(values: list, accuracy, threshold: float) -> list:
    """Per seed (a column of ``accuracy`` [points, seeds]), ``values`` at its first point at or above
    ``threshold`` (None if never)."""
    return [next((values[i] for i in np.flatnonzero(column >= threshold)), None)
            for column in np.asarray(accuracy).T]


def epochs_to_accuracy(history: list[dict], threshold: float) -> list[int | None]:
    """For each seed, the first epoch whose end-of-epoch test accuracy is at least ``threshold``."""
    return first_reaching([r["epoch"] for r in history], [r["val_accuracy"] for r in history], threshold)


def steps_to_accuracy(history: list[dict], threshold: float) -> list[int | None]:
    """For each seed, the optimiser steps until its first validation (probes included) at ``threshold``."""
    points = validation_points(history)
    return first_reaching([p[0] for p in points], [p[2] for p in points], threshold)


def seconds_to_accuracy(history: list[dict], threshold: float) -> list[float | None]:
    """For each seed, training seconds (and testing, compilation left out) until its first
    validation at ``threshold``; None if never, or if the history did not record compile time."""
    points = validation_points(history)
    return first_reaching([p[1] for p in points], [p[2] for p in points], threshold)
