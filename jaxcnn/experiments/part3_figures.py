"""Part 3's figures: the image samples a run draws from the corrupted set, and the figures drawn
from its results alone (the views of its labels, the models' curves and confusions, what training
changed inside the trunk models), so that a report redraws them anywhere."""

from __future__ import annotations

from pathlib import Path

from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.document import Figure, Text
from jaxcnn.evaluation.plots import plot_confusion, plot_folder_samples, plot_transfer_changes
from jaxcnn.experiments.common import drawn_figures
from jaxcnn.experiments.part3_diagnosis import plot_views
from jaxcnn.experiments.records import ensemble_class_names, ensemble_confusion, write_curves

FIGURE_CAPTIONS = {
    "audit_samples.png": "Images of each folder, as they are.",
    "transition_estimate.png": "The oracle view: P(folder | digit), rows the clean oracle's digit, columns the folder.",
    "transition_free.png": "The oracle-free view: P(folder | anchor), rows the held-out folder model's anchor.",
    "folder_samples.png": "Images of each folder, titled with the clean oracle's digit.",
    "learning_curves.png": "Clean MNIST test accuracy per epoch (mean of seeds, min-max band).",
    "step_curves.png": "Clean MNIST test accuracy against optimiser steps, first-epoch probes included (log scale).",
    "test_loss_curves.png": "Clean MNIST test loss per epoch (mean of seeds, min-max band).",
    "test_ece_curves.png": "Clean MNIST test calibration error (ECE, 15 bins) per epoch (mean of seeds, min-max band).",
    "transfer_changes.png": "Per trunk layer: linear CKA of each trunk model's features with the part-1 trunk's and "
                            "with its scratch partner's (same seed), and its relative weight distance from the part-1 "
                            "trunk (mean of seeds).",
}
SAMPLE_FIGURES = ("audit_samples.png", "folder_samples.png")


def write_samples(noisy: ArrayDataset, oracle_probs, workdir: Path, per_folder: int) -> None:
    """audit_samples.png (images per folder, no label) and folder_samples.png (the same, titled with
    the oracle's digit): drawn from the images at run time, as the results hold none."""
    plot_folder_samples(noisy, None, workdir / "audit_samples.png", per_folder,
                        suptitle="images per folder, as they are")
    plot_folder_samples(noisy, [f"oracle {d}" for d in oracle_probs.argmax(1)], workdir / "folder_samples.png",
                        per_folder, suptitle="images per folder; title: the clean oracle's digit")


def write_figures(results: dict, folder: Path) -> dict[str, str]:
    """Draws the figures of ``results`` into ``folder``: ``plot_views``' transition_estimate.png and
    transition_free.png, the curves of ``records.write_curves``, confusion_<model>.png and
    transfer_changes.png; returns those it could not draw, file name -> what the results lack."""
    folder.mkdir(parents=True, exist_ok=True)
    plot_views(results["diagnosis"], folder)
    models = results["models"]
    missing = write_curves(models, folder, "clean MNIST test", model_labels(models))
    for name, view in (("transition_estimate.png", "oracle"), ("transition_free.png", "oracle_free")):
        if results["diagnosis"][view].get("transition") is None:
            missing[name] = f"the {view.replace('_', '-')} view estimated no transition matrix"
    for name, result in models.items():
        plot_confusion(ensemble_confusion(result), ensemble_class_names(result), folder / f"confusion_{name}.png",
                       f"part 3, {name}: clean MNIST test (ensemble)")
    if results.get("representations"):
        plot_transfer_changes(results["representations"], folder / "transfer_changes.png", model_labels(models),
                              "part 1", "scratch")
    else:
        missing["transfer_changes.png"] = "this run did not record its trunk features (`representations`)"
    return missing


def model_labels(models: dict) -> dict[str, str]:
    return {name: f"{name}{' (clean labels)' if m['uses_clean_labels'] else ''}" for name, m in models.items()}


def figures(results: dict, part_dir: Path, figure_dir: Path) -> list:
    """Part 3's figures: the run's image samples (from ``part_dir``, where it left them) and those
    ``write_figures`` draws from ``results`` into ``figure_dir``; a missing one is named."""
    missing = write_figures(results, figure_dir)
    captions = {**FIGURE_CAPTIONS, **{f"confusion_{name}.png": f"Confusion matrix of {name} on the clean MNIST "
                                      "test set (ensemble, rows normalised)." for name in results["models"]}}
    blocks = []
    for name, caption in captions.items():
        if name in SAMPLE_FIGURES:
            found = (Path(part_dir) / name).is_file()
            blocks += [Figure(Path(part_dir) / name, caption)] if found else [Text(
                f"Figure `{name}` ({caption.rstrip('.')}) is missing: it is drawn from the images at run time, "
                "and the run's folder does not hold it.")]
        else:
            blocks += drawn_figures(figure_dir, {name: caption}, missing)
    return blocks
