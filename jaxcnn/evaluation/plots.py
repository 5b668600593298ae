"""The study's figures. Each draws on its own ``matplotlib.figure.Figure`` (no pyplot, so no global
backend or figure state: safe in scripts, tests and threads) and saves it to ``path``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.evaluation.convergence import validation_points
from jaxcnn.processes import is_primary


def _save(fig: Figure, path: Path, dpi: int = 120) -> None:
    """Lays ``fig`` out and writes it to ``path`` (of several processes, process 0 alone)."""
    fig.tight_layout()
    if is_primary():
        fig.savefig(path, dpi=dpi)


def plot_curves(histories: dict[str, list[dict]], key: str, ylabel: str, path: Path, labels: dict) -> None:
    """``key`` (a per-seed field of ``fit``'s history) against epoch, one curve per run of
    ``histories``: the seeds' mean, their min-max as a band. A history that lacks ``key`` (written
    before it was recorded) is left out."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for name, history in histories.items():
        if not all(key in r for r in history):
            continue
        epochs = [r["epoch"] for r in history]
        values = np.array([r[key] for r in history])
        line, = ax.plot(epochs, values.mean(1), marker="o", ms=3, label=labels[name])
        ax.fill_between(epochs, values.min(1), values.max(1), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path, dpi=120)


def plot_step_curves(histories: dict[str, list[dict]], path: Path, ylabel: str, labels: dict) -> None:
    """Test accuracy against optimiser steps (log scale), every validation including the first
    epoch's probes: where early convergence shows. Mean of the seeds, min-max band."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for name, history in histories.items():
        points = validation_points(history)
        steps = [p[0] for p in points]
        values = np.array([p[2] for p in points])
        line, = ax.plot(steps, values.mean(1), marker="o", ms=3, label=labels[name])
        ax.fill_between(steps, values.min(1), values.max(1), color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("optimiser steps")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _save(fig, path, dpi=120)


def plot_data_size(curves: dict[str, dict[int, tuple[float, float]]], path: Path, labels: dict) -> None:
    """Final test accuracy against training-set size (log scale): per model, ``{size: (mean, 95% CI)}``
    over seeds."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, points in curves.items():
        sizes = sorted(points)
        ax.errorbar(sizes, [points[n][0] for n in sizes], yerr=[points[n][1] for n in sizes], marker="o", capsize=3,
                    label=labels[name])
    ax.set_xscale("log")
    ax.set_ylim(top=min(ax.get_ylim()[1], 1.005))  # a wide CI over few seeds may pass 1
    ax.set_xlabel("MNIST training images")
    ax.set_ylabel("final test accuracy")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    _save(fig, path, dpi=120)


def plot_transition(T, path: Path, title: str = "", ylabel: str = "digit (clean oracle)") -> None:
    """The estimated T as an annotated heat map: rows the true digit, columns the folder label (class
    indices, the digits themselves for MNIST)."""
    T = np.asarray(T)
    fig = Figure(figsize=(6, 5.4))
    ax = fig.subplots()
    image = ax.imshow(T, cmap="viridis", vmin=0, vmax=1)
    for i, j in zip(*np.nonzero(T >= 0.005)):
        ax.text(j, i, f"{T[i, j]:.2f}", ha="center", va="center", fontsize=7,
                color="black" if T[i, j] > 0.5 else "white")
    ticks = np.arange(len(T))
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_yticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("folder label (observed)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    _save(fig, path, dpi=120)


def plot_folder_samples(data: ArrayDataset, titles, path: Path, per_folder: int = 8, seed: int = 0,
                        suptitle: str = "") -> None:
    """A grid: one row per folder, ``per_folder`` random images of it, each titled ``titles[i]`` (if given)."""
    rng = np.random.default_rng(seed)
    folders = range(data.num_classes)
    fig = Figure(figsize=(per_folder * 0.9, len(folders) * 1.0))
    axes = fig.subplots(len(folders), per_folder, squeeze=False)
    for row, folder in zip(axes, folders):
        members = np.flatnonzero(data.labels == folder)
        chosen = rng.choice(members, min(per_folder, len(members)), replace=False) if len(members) else []
        for col, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(chosen):
                ax.imshow(data.images[chosen[col]], cmap="gray", vmin=0, vmax=255)
                if titles is not None:
                    ax.set_title(str(titles[chosen[col]]), fontsize=6, pad=2)
        row[0].set_ylabel(f"folder {data.class_names[folder]}", fontsize=8)
    fig.suptitle(suptitle, fontsize=9)
    _save(fig, path, dpi=110)


def plot_confusion(confusion, class_names, path: Path, title: str = "") -> None:
    """A confusion-matrix heat map with rows normalised to the class's support."""
    confusion = np.asarray(confusion, float)
    rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    size = max(5, 0.16 * len(class_names) + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, fontsize=7 if len(class_names) > 20 else 10)
    ax.set_yticks(ticks, class_names, fontsize=7 if len(class_names) > 20 else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    _save(fig, path, dpi=120)


def plot_learning_curves(history: list[dict], path: Path) -> None:
    """Accuracy and loss per epoch, train and validation where ``history`` has them: the mean of the
    seeds, their min-max band, and the ensemble's validation accuracy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("accuracy", "loss")):
        for split in (s for s in ("train", "val") if f"{s}_{key}" in history[0]):
            values = np.array([r[f"{split}_{key}"] for r in history])
            line, = ax.plot(epochs, values.mean(1), marker="o", ms=3, label=f"{split} (mean of seeds)")
            ax.fill_between(epochs, values.min(1), values.max(1), color=line.get_color(), alpha=0.2)
        if key == "accuracy" and "val_accuracy_ensemble" in history[0]:
            ax.plot(epochs, [r["val_accuracy_ensemble"] for r in history], marker="s", ms=3, label="val (ensemble)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path, dpi=100)


def plot_transfer_changes(changes: dict[str, dict], path: Path, labels: dict, source: str, scratch: str) -> None:
    """Per trunk layer (``cka.transfer_changes`` of each model): left, the linear CKA of the model's
    features with ``source``'s (solid) and ``scratch``'s (dashed); right, how far its weights moved
    from ``source``'s. Means over seeds."""
    fig = Figure(figsize=(11, 4))
    similarity, distance = fig.subplots(1, 2)
    for name, change in changes.items():
        layers = change["layers"]
        at = np.arange(len(layers))
        line, = similarity.plot(at, [change["cka_source"][n]["mean"] for n in layers], marker="o", ms=3,
                                label=f"{labels.get(name, name)} vs {source}")
        if "cka_scratch" in change:
            similarity.plot(at, [change["cka_scratch"][n]["mean"] for n in layers], marker="s", ms=3, ls="--",
                            color=line.get_color(), label=f"{labels.get(name, name)} vs {scratch}")
        distance.plot(at, [change["distance"][n]["mean"] for n in layers], marker="o", ms=3, color=line.get_color(),
                      label=labels.get(name, name))
    for ax, ylabel in ((similarity, "linear CKA"), (distance, f"||W - W_{source}|| / ||W_{source}||")):
        ax.set_xticks(at, layers, rotation=45, ha="right", fontsize=7)
        ax.set_xlabel("trunk layer")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    similarity.set_ylim(0, 1.02)
    _save(fig, path, dpi=110)
