"""Part 3's figures: the image samples a run draws from the corrupted set, and the figures drawn
from its results alone (the views of its labels, the models' curves and confusions, what training
changed inside the trunk models), so that a report redraws them anywhere (``report`` captions them)."""

from __future__ import annotations

from pathlib import Path

from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.evaluation.plots import plot_confusion, plot_folder_samples, plot_transfer_changes, plot_transition
from jaxcnn.experiments.records import ensemble_class_names, ensemble_confusion, write_curves


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


def view_title(d: dict, what: str) -> str:
    rate = d.get("noise_rate")
    return f"{what}: {d['kind']}, mapping {d.get('mapping')}" + (f", noise rate {rate:.3f}" if rate is not None else "")


def plot_views(diagnosis: dict, workdir: Path) -> None:
    """transition_estimate.png (the oracle view's T) and transition_free.png (the oracle-free view's),
    each where its view estimated a T."""
    oracle, free = diagnosis["oracle"], diagnosis["oracle_free"]
    if oracle.get("transition") is not None:
        plot_transition(oracle["transition"], workdir / "transition_estimate.png", view_title(oracle, "oracle view"))
    if free.get("transition") is not None:
        plot_transition(free["transition"], workdir / "transition_free.png", view_title(free, "oracle-free view"),
                        ylabel=f"the folder model's {free['anchor']} folder (held out)")
