"""A trained model's record in a part's results: built here once (``model_record``) and read here
(``models_table``, ``paired_table``), so parts 2 and 3 describe their models the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxcnn.document import RATE, SECONDS, Table, rate, seconds, stat_text
from jaxcnn.evaluation.convergence import (
    epochs_to_accuracy, paired, seconds_to_accuracy, stat, steps_to_accuracy, verdict,
)
from jaxcnn.evaluation.plots import plot_curves, plot_data_size, plot_step_curves
from jaxcnn.evaluation.metrics import classification_report
from jaxcnn.probabilities import softmax


def threshold_key(threshold: float) -> str:
    """``0.98`` -> ``"98"``: the suffix of ``epochs_to_98`` and ``seconds_to_98``."""
    return f"{100 * threshold:g}"


def summarise_history(history: list[dict], thresholds=(0.98, 0.99)) -> dict:
    """Convergence figures from ``fit``'s history, each over seeds.

    ``train_test_gap`` is the last epoch's train accuracy minus its test accuracy; the train
    accuracy is the running mean over the epoch's augmented batches with dropout on.
    """
    first, last = history[0], history[-1]
    summary = {"first_epoch_test_accuracy": stat(first["val_accuracy"])}
    for threshold in thresholds:
        summary[f"epochs_to_{threshold_key(threshold)}"] = stat(epochs_to_accuracy(history, threshold))
        summary[f"steps_to_{threshold_key(threshold)}"] = stat(steps_to_accuracy(history, threshold))
        summary[f"seconds_to_{threshold_key(threshold)}"] = stat(seconds_to_accuracy(history, threshold))
    summary["final_test_accuracy"] = stat(last["val_accuracy"])
    summary["final_train_accuracy"] = stat(last["train_accuracy"])
    summary["train_test_gap"] = stat(np.subtract(last["train_accuracy"], last["val_accuracy"]).tolist())
    summary.update(run_seconds(history))
    return summary


def run_seconds(history: list[dict]) -> dict:
    """``compile_seconds``: what ``fit`` spent compiling its programs (None where the history did
    not record it); ``train_seconds``: the rest of its wall seconds (all of them when not recorded)."""
    wall = float(sum(r["seconds"] for r in history))
    if not all("compile_seconds" in r for r in history):
        return {"compile_seconds": None, "train_seconds": wall}
    compiled = float(sum(r["compile_seconds"] for r in history))
    return {"compile_seconds": compiled, "train_seconds": wall - compiled}


def summarise_predictions(logits, ensemble_probs, labels, class_names) -> dict:
    """Per-seed test NLL and ECE (mean ± CI) and the full report of the seeds' ensemble.

    ``logits`` float [K, N, C], one row per seed, and ``ensemble_probs`` [N, C]: ``predict_probs``.
    """
    members = [classification_report(p, labels, class_names) for p in softmax(logits)]
    return {"final_test_nll": stat([m["nll"] for m in members]),
            "final_test_ece": stat([m["ece"] for m in members]),
            "ensemble": classification_report(ensemble_probs, labels, class_names)}


def model_record(history: list[dict], predictions: tuple, test, thresholds, **extra) -> dict:
    """What a part records of a model trained by ``fit``: its history, how it converged, its last
    epoch on ``test`` (``predictions``: ``predict_probs``'s logits and ensemble probabilities on it;
    per seed and as an ensemble), and ``extra`` (e.g. ``transfer``)."""
    logits, probs = predictions
    return {**extra, "history": history, **summarise_history(history, thresholds),
            **summarise_predictions(logits, probs, test.labels, test.class_names)}


def paired_text(a: dict, b: dict, fmt: str = RATE, lower_is_better: bool = False) -> str:
    """``a - b`` paired over seeds (``convergence.paired``) as ``+mean ± ci (verdict)``."""
    difference = paired(a, b)
    if difference["n"] == 0:
        return "not reached"
    sign = "+" if difference["mean"] >= 0 else ""
    return f"{sign}{stat_text(difference, fmt)} ({verdict(difference, lower_is_better)})"


def ensemble_confusion(record: dict) -> list[list[int]]:
    """The confusion matrix of a model's ensemble on the test set (rows: true classes)."""
    return record["ensemble"]["confusion"]


def confusion_class_names(report: dict) -> list[str]:
    """The classes of a ``classification_report``'s confusion matrix, in its order (their indices
    where a class of no example left the report's per-class figures short)."""
    names, size = list(report["per_class_accuracy"]), len(report["confusion"])
    return names if len(names) == size else [str(i) for i in range(size)]


def ensemble_class_names(record: dict) -> list[str]:
    """The classes of a model's test confusion matrix (``confusion_class_names``)."""
    return confusion_class_names(record["ensemble"])


def final_accuracy_text(record: dict) -> str:
    return stat_text(record["final_test_accuracy"])


def best_of(models: dict) -> tuple[str, dict] | None:
    """The model with the highest mean final test accuracy (None when none reached a mean)."""
    scored = [(name, m) for name, m in models.items() if m["final_test_accuracy"].get("mean") is not None]
    return max(scored, key=lambda item: item[1]["final_test_accuracy"]["mean"], default=None)


def write_curves(models: dict, workdir: Path, test_set: str, labels: dict) -> dict[str, str]:
    """The models' curves on ``test_set`` (e.g. "MNIST test"): learning_curves.png (accuracy per
    epoch), step_curves.png (against steps), test_loss_curves.png and test_ece_curves.png; returns
    those no history holds the data of (written before it was recorded), file name -> the field."""
    histories = {name: m["history"] for name, m in models.items()}
    plot_step_curves(histories, workdir / "step_curves.png", f"{test_set} accuracy", labels)
    missing = {}
    for name, key, ylabel in (("learning_curves.png", "val_accuracy", "accuracy"),
                              ("test_loss_curves.png", "val_loss", "loss (NLL)"),
                              ("test_ece_curves.png", "val_ece", "calibration error (ECE)")):
        if any(all(key in r for r in history) for history in histories.values()):
            plot_curves(histories, key, f"{test_set} {ylabel}", workdir / name, labels)
        else:
            missing[name] = f"the histories hold no `{key}` (written before it was recorded)"
    return missing


def write_size_curve(data_size: dict, path: Path, labels: dict) -> None:
    """The data-size curve (``{model: {training images: accuracy_point}}``) as a figure."""
    curves = {name: {int(size): (p["final_test_accuracy"]["mean"], p["final_test_accuracy"]["ci95"] or 0.0)
                     for size, p in points.items()} for name, points in data_size.items()}
    plot_data_size(curves, path, labels)


def accuracy_point(accuracy: dict, ensemble_accuracy: float, **extra) -> dict:
    """A model's test accuracy at one point (a data-size run, another reading of its outputs): over
    seeds (``stat``) and of their ensemble."""
    return {"final_test_accuracy": accuracy, "ensemble_accuracy": ensemble_accuracy, **extra}


def point_of_history(history: list[dict]) -> dict:
    """The accuracy point of a run's last epoch (its history kept beside it)."""
    return accuracy_point(stat(history[-1]["val_accuracy"]), history[-1]["val_accuracy_ensemble"], history=history)


def point_of_record(record: dict) -> dict:
    """The accuracy point of a model's record (``model_record``)."""
    return accuracy_point(record["final_test_accuracy"], record["ensemble"]["accuracy"])


def point_text(point: dict) -> str:
    return stat_text(point["final_test_accuracy"])


def point_paired_text(a: dict, b: dict) -> str:
    """Point ``a`` minus point ``b``, paired over seeds (``paired_text``)."""
    return paired_text(a["final_test_accuracy"], b["final_test_accuracy"])


MODEL_ROWS = [("first-epoch test accuracy", "first_epoch_test_accuracy", RATE),
              ("final test accuracy", "final_test_accuracy", RATE),
              ("final test NLL", "final_test_nll", RATE),
              ("final test ECE", "final_test_ece", RATE),
              ("train - test accuracy", "train_test_gap", RATE)]


def models_table(models: dict, thresholds, caption: str, extra_rows=(), gap_models=None) -> Table:
    """Models side by side (parts 2 and 3 summarise each the same way): mean ± 95% CI over seeds;
    ``extra_rows`` (label, cells) go first. ``gap_models``: the models whose training labels are the
    test's truth, so that train - test accuracy means something (None: all); the row shows only them."""
    keys = [threshold_key(t) for t in thresholds]
    formats = {"epochs": ("epochs", SECONDS), "steps": ("steps", "{:.0f}"), "seconds": ("train seconds", SECONDS)}
    gaps = set(models if gap_models is None else gap_models)
    rows = [MODEL_ROWS[0],
            *((f"{label} to {key}%", f"{what}_to_{key}", fmt)
              for key in keys for what, (label, fmt) in formats.items()),
            *(row for row in MODEL_ROWS[1:] if row[1] != "train_test_gap" or gaps & set(models))]
    cell = lambda name, m, key, fmt: (seconds_text(m, key) if key.startswith("seconds_to_") else "-"
                                      if key == "train_test_gap" and name not in gaps else stat_text(m[key], fmt))
    table = [*map(list, extra_rows), *([label, *(cell(name, m, key, fmt) for name, m in models.items())]
                                       for label, key, fmt in rows)]
    table.append(["ensemble accuracy", *(rate(m["ensemble"]["accuracy"]) for m in models.values())])
    table += seconds_rows(models)
    return Table(["", *models], table, caption + SECONDS_NOTE)


SECONDS_NOTE = (" Seconds are training seconds, compilation apart (the first model to run a program compiles it, "
                "the next reuse it); 'not recorded' for a run written before compile time was recorded.")
NOT_RECORDED = "not recorded"


def compile_recorded(record: dict) -> bool:
    return record.get("compile_seconds") is not None


def seconds_rows(models: dict) -> list[list[str]]:
    """Compile seconds and training seconds of each model (a run without its compile time: its wall
    seconds, marked so)."""
    return [["compile seconds", *(seconds(m["compile_seconds"]) if compile_recorded(m) else NOT_RECORDED
                                  for m in models.values())],
            ["train seconds", *(seconds(m["train_seconds"]) if compile_recorded(m)
                                else f"{seconds(m['train_seconds'])} (compile included)" for m in models.values())]]


def seconds_text(record: dict, key: str) -> str:
    """A ``seconds_to_X`` figure of a record; not recorded where its compile time was not."""
    return stat_text(record[key], SECONDS) if compile_recorded(record) else NOT_RECORDED


def paired_table(models: dict, thresholds, pairs: dict[str, str], caption: str) -> list[Table]:
    """Each model of ``pairs`` minus its partner (``{model: partner}``), seed by seed (the same seeds:
    the same data order and head initialisation), with what its 95% CI says; empty without pairs."""
    pairs = {a: b for a, b in pairs.items() if a in models and b in models}
    if not pairs:
        return []
    keys = [threshold_key(t) for t in thresholds]
    rows = [("first-epoch test accuracy", "first_epoch_test_accuracy", RATE, False),
            *((f"steps to {key}%", f"steps_to_{key}", "{:.0f}", True) for key in keys),
            *((f"train seconds to {key}%", f"seconds_to_{key}", SECONDS, True) for key in keys),
            ("final test accuracy", "final_test_accuracy", RATE, False), ("final test NLL", "final_test_nll", RATE, True),
            ("final test ECE", "final_test_ece", RATE, True)]
    timed = {a: compile_recorded(models[a]) and compile_recorded(models[b]) for a, b in pairs.items()}
    table = [[label, *(NOT_RECORDED if key.startswith("seconds_to_") and not timed[a] else
                       paired_text(models[a][key], models[b][key], fmt, lower) for a, b in pairs.items())]
             for label, key, fmt, lower in rows]
    return [Table(["", *(f"{a} - {b}" for a, b in pairs.items())], table,
                  f"{caption}, paired over seeds (each seed's run minus its partner's of the same seed), mean ± "
                  "95% CI; 'no difference measured' where the interval holds 0.")]


def paired_lines(a: dict, b: dict, name_a: str, name_b: str) -> list[str]:
    """Model ``a`` against ``b`` (their records) in words, paired over seeds: final accuracy, NLL and
    steps to each threshold."""
    versus = f"{name_a} - {name_b}"
    lines = [f"final test accuracy {name_a} {stat_text(a['final_test_accuracy'])} vs {name_b} "
             f"{stat_text(b['final_test_accuracy'])}, {versus} paired over seeds "
             f"{paired_text(a['final_test_accuracy'], b['final_test_accuracy'])}",
             f"test NLL {versus} {paired_text(a['final_test_nll'], b['final_test_nll'], lower_is_better=True)}"]
    for key in sorted((k for k in b if k.startswith("steps_to_") and k in a),
                      key=lambda k: float(k.removeprefix("steps_to_"))):
        lines.append(f"steps to {key.removeprefix('steps_to_')}%: {name_a} {stat_text(a[key], '{:.0f}')} vs "
                     f"{name_b} {stat_text(b[key], '{:.0f}')}, {versus} {paired_text(a[key], b[key], '{:.0f}', True)}")
    return lines + seconds_lines(a, b, name_a, name_b)


def seconds_lines(a: dict, b: dict, name_a: str, name_b: str) -> list[str]:
    """The training seconds (compilation apart) of ``a`` against ``b`` to their first threshold."""
    key = min((k for k in b if k.startswith("seconds_to_") and k in a),
              key=lambda k: float(k.removeprefix("seconds_to_")), default=None)
    if key is None:
        return []
    to = f"train seconds to {key.removeprefix('seconds_to_')}%"
    if not (compile_recorded(a) and compile_recorded(b)):
        return [f"{to}: {NOT_RECORDED} (the runs counted compilation in their seconds)"]
    return [f"{to}, compilation apart: {name_a} {stat_text(a[key], SECONDS)} vs {name_b} {stat_text(b[key], SECONDS)}, "
            f"{name_a} - {name_b} {paired_text(a[key], b[key], SECONDS, True)} (compile seconds {name_a} "
            f"{seconds(a['compile_seconds'])}, {name_b} {seconds(b['compile_seconds'])})"]


# --- what transfer changed inside the trunk (evaluation.cka) ----------------------------------

KEPT_CKA = 0.8  # a layer whose features stay this close to the source's is read as kept


def kept_layers(change: dict) -> list[bool]:
    """Per layer of ``cka.transfer_changes``: does the model keep the source's features there (its
    CKA with the source at least ``KEPT_CKA``, and above its CKA with the scratch model)?"""
    return [change["cka_source"][n]["mean"] >= KEPT_CKA and change["cka_source"][n]["mean"] >= change.get(
        "cka_scratch", {}).get(n, {"mean": 0.0})["mean"] for n in change["layers"]]


def transfer_reading(name: str, change: dict, source: str, scratch: str) -> str:
    """One sentence: does fine-tuning keep the source's features or rebuild them, layer by layer."""
    layers, kept = change["layers"], kept_layers(change)
    cka = [change["cka_source"][n]["mean"] for n in layers]
    moved = [change["distance"][n]["mean"] for n in layers]
    against = (f", against {min(change['cka_scratch'][n]['mean'] for n in layers):.2f}-"
               f"{max(change['cka_scratch'][n]['mean'] for n in layers):.2f} with {scratch}'s"
               if "cka_scratch" in change else "")
    if all(kept):
        verdict = f"keeps {source}'s features in every trunk layer"
    elif not kept[0]:
        verdict = f"rebuilds {source}'s features from the first layer on"
    else:
        first = kept.index(False)
        verdict = f"keeps {source}'s features up to `{layers[first - 1]}` and rebuilds them from `{layers[first]}`"
    return (f"{name} {verdict}: linear CKA with {source}'s features {min(cka):.2f}-{max(cka):.2f} per layer{against} "
            f"(mean of seeds, {change['images']} MNIST test images); its weights moved {min(moved):.2f}-"
            f"{max(moved):.2f} of their norm from {source}'s.")

