"""What the parts share: MNIST's training recipe, and the pieces of their report sections (a part
not run yet, the figures a part wrote)."""

from __future__ import annotations

from pathlib import Path

from jaxcnn.config import AugmentConfig, TrainConfig
from jaxcnn.document import Figure, Text

# MNIST digits are already size-normalised and centred, so they vary less than the part-1 images:
# milder distortions than part 1's, still enough to regularise a 15-epoch run.
MNIST_AUGMENT = AugmentConfig(rotate_deg=8.0, scale=0.08, shear_deg=8.0, shift_px=2.0)
# How parts 2 (B, C) and 3 (every model) learn MNIST: 15 epochs of batch 128, 5 seeds side by side.
MNIST_TRAIN = TrainConfig(seeds=(0, 1, 2, 3, 4), epochs=15, batch_size=128, learning_rate=2e-3, weight_decay=5e-4,
                          warmup_epochs=1, label_smoothing=0.0, augment=MNIST_AUGMENT, probe_every=50)


def not_run(part: str) -> Text:
    return Text(f"Not run yet: run `python experiments/{part}.py` (or `python -m jaxcnn study` for the whole study).")


def part_figures(part_dir: Path, captions: dict[str, str]) -> list[Figure]:
    """The PNGs a part wrote in its work directory (evaluation figures excepted), those of
    ``captions`` first, in its order; the others follow, captioned from their names."""
    paths = sorted((p for p in Path(part_dir).glob("*.png") if not p.name.startswith("eval_")),
                   key=lambda p: (list(captions).index(p.name) if p.name in captions else len(captions), p.name))
    return [Figure(p, captions.get(p.name) or figure_caption(p)) for p in paths]


def figure_caption(path: Path) -> str:
    if path.stem.startswith("confusion_"):
        return f"Confusion matrix of {path.stem.removeprefix('confusion_')} (ensemble, rows normalised)."
    return path.stem.replace("_", " ").capitalize() + "."


def drawn_figures(folder: Path, captions: dict[str, str], missing: dict[str, str], trained: str = "") -> list:
    """The figures of ``captions`` drawn in ``folder`` (by ``write_plots`` from a part's results), in
    order, each caption ending with what its models ``trained`` (``seeds_epochs``); one whose data
    the results lack (``missing``: file name -> what is lacking) is named as missing, not left out."""
    def caption_of(name: str) -> str:
        return f"{captions[name].rstrip('.')} ({trained})." if trained else captions[name]
    return [Text(f"Figure `{name}` ({captions[name].rstrip('.')}) is missing: {missing[name]}.") if name in missing
            else Figure(Path(folder) / name, caption_of(name)) for name in captions]


def seeds_epochs(train: dict, epochs: int = 0) -> str:
    """``3 seeds x 2 epochs``: a training config's (as saved in results) seeds and ``epochs`` (0: its own)."""
    seeds, epochs = len(train["seeds"]), epochs or train["epochs"]
    return f"{seeds} seed{'s' * (seeds != 1)} x {epochs} epoch{'s' * (epochs != 1)}"