"""A generated data root in the study's layout, for end-to-end runs without the real data set:
``trainPart1/train/SampleNNN/imgNNN-WWW.png`` (every Chars74K class, drawn with a font, jittered
per writer) and ``mnist/`` (the four IDX files of printed digits, jittered per image)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxcnn.data.chars74k import CLASS_NAMES
from jaxcnn.data.mnist import FILES, MnistFile


def glyph(text: str, rng: np.random.Generator, size: int) -> Image.Image:
    """``text`` drawn white on black in a ``size``-px square, shifted, scaled and rotated at random."""
    font = ImageFont.load_default(size=int(size * rng.uniform(0.6, 0.8)))
    image = Image.new("L", (size, size), 0)
    centre = size / 2 + rng.uniform(-0.08, 0.08, 2) * size
    ImageDraw.Draw(image).text(tuple(centre), text, fill=255, font=font, anchor="mm")
    return image.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_chars74k(root: Path, writers: int, seed: int = 0) -> None:
    """Every class, one black-on-white 64x64 PNG per writer."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASS_NAMES, 1):
        folder = root / "trainPart1" / "train" / f"Sample{c:03d}"
        folder.mkdir(parents=True)
        for w in range(1, writers + 1):
            Image.eval(glyph(name, rng, 64), lambda v: 255 - v).save(folder / f"img{c:03d}-{w:03d}.png")


def write_mnist(root: Path, sizes: dict[str, int], seed: int = 0) -> dict:
    """The four IDX files (gzip) of ``sizes[split]`` printed digits; returns their ``MnistFile`` table."""
    rng = np.random.default_rng(seed)
    (root / "mnist").mkdir(parents=True)
    table = {}
    for split, (images_entry, labels_entry) in FILES.items():
        labels = np.arange(sizes[split]) % 10
        images = np.stack([np.asarray(glyph(str(d), rng, 28)) for d in labels])
        entries = []
        for entry, array in ((images_entry, images), (labels_entry, labels)):
            content = idx_bytes(array)
            packed = gzip.compress(content, mtime=0)
            (root / "mnist" / entry.name).write_bytes(packed)
            entries.append(MnistFile(entry.name, hashlib.md5(packed).hexdigest(), hashlib.sha256(content).hexdigest()))
        table[split] = tuple(entries)
    return table


def write_class_folders(images, labels, out_dir: Path) -> Path:
    """``out_dir/<label>/<index>.png`` (grayscale) for every image: a class-folder set as a user might give it."""
    for index, (image, label) in enumerate(zip(np.asarray(images), np.asarray(labels))):
        (out_dir / str(int(label))).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(out_dir / str(int(label)) / f"{index:05d}.png")
    return out_dir
