"""Everything the study reads, fetched into the data root: ``python -m jaxcnn download``.

The Chars74K EnglishHnd set comes from its official distribution, the archive ``EnglishHnd.tgz``
of the Chars74K project (CVSSP, University of Surrey; de Campos et al. 2009): 62 classes x 55
writers of 1200x900 scans in ``English/Hnd/Img/SampleNNN/imgNNN-SSS.png``. It is split as the task
split it, per class (``jaxcnn.data.task_split``): each class's 40 training writers to
``trainPart1/train`` (what parts 1 and 2 read), its other 15 to ``testPart1/test`` (for ``evaluate``). MNIST's four files come from ``jaxcnn.data.mnist``, checked against the published MD5s.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import os
import re
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from jaxcnn.data.fetch import MIB, fetch_any, part_path
from jaxcnn.data.mnist import DEFAULT_MIRRORS, FILES, download_mnist
from jaxcnn.data.task_split import TRAIN_WRITERS
from jaxcnn.errors import DataError

logger = logging.getLogger("jaxcnn")

# The project's page moved from www.ee.surrey.ac.uk to info-ee.surrey.ac.uk; both are tried.
CHARS74K_URLS = (
    "https://info-ee.surrey.ac.uk/CVSSP/demos/chars74k/EnglishHnd.tgz",
    "http://www.ee.surrey.ac.uk/CVSSP/demos/chars74k/EnglishHnd.tgz",
)
SIDES = {"train": ("trainPart1", "train"), "test": ("testPart1", "test")}  # (folder in the data root, inside it)
_IMAGE_MEMBER = re.compile(r"English/Hnd/Img/Sample(\d{3})/img(\d{3})-(\d{3})\.png")


@dataclasses.dataclass(frozen=True)
class Chars74kArchive:
    """The EnglishHnd archive and how it is split: ``train_split[c]`` lists class c's training writers
    (the task's split); without one, writers 1..``train_writers`` of every class train. The rest test.

    The project publishes no checksum and only a rounded size ("13.0 MB"), so a download is checked
    by its structure instead: a gzip tar read to its end (a cut or corrupt file fails there) that
    holds exactly one PNG for each of ``classes`` x ``writers``, and no member that would land
    outside the data root.
    """

    name: str = "EnglishHnd.tgz"
    urls: tuple[str, ...] = CHARS74K_URLS
    classes: int = 62
    writers: int = 55
    train_writers: int = 40
    train_split: tuple[tuple[int, tuple[int, ...]], ...] = ()  # (class, its training writers)

    def side(self, label: int, writer: int) -> str:
        """"train" or "test" for the image of class ``label`` by ``writer``."""
        split = dict(self.train_split)
        training = writer in split[label] if split else writer <= self.train_writers
        return "train" if training else "test"


CHARS74K = Chars74kArchive(train_split=tuple(TRAIN_WRITERS.items()))


def download_all(root: str | os.PathLike, *, archive: Chars74kArchive = CHARS74K,
                 mirrors=DEFAULT_MIRRORS, mnist_files=FILES, timeout: float = 60.0) -> list[str]:
    """Fetches Chars74K and MNIST into ``root``, keeping what is already there; returns where each is."""
    root = Path(root)
    chars74k = download_chars74k(root, archive, timeout=timeout)
    mnist = download_mnist(root / "mnist", mirrors=mirrors, timeout=timeout, files=mnist_files)
    return [chars74k, f"MNIST: {mnist}"]


def download_chars74k(root: Path, archive: Chars74kArchive = CHARS74K, *, timeout: float = 60.0) -> str:
    """Unpacks the writers of ``archive`` into ``root``, downloading it first unless ``root`` holds it."""
    missing = tuple(side for side, (top, _) in SIDES.items() if not (root / top).exists())
    summary = (f"Chars74K: each class's training writers in {root.joinpath(*SIDES['train'])}, its other writers "
               f"in {root.joinpath(*SIDES['test'])}")
    if not missing:
        return summary + " (already there)"
    root.mkdir(parents=True, exist_ok=True)
    tgz = root / archive.name
    if not tgz.is_file():
        fetch_any(archive.urls, tgz, lambda part, url: archive_images(part, archive, name=url), timeout=timeout)
    unpack(tgz, root, archive, sides=missing)
    return summary


def archive_images(path: Path, archive: Chars74kArchive = CHARS74K, name: str = "") -> dict[str, tuple[int, int]]:
    """``{member name: (class, writer)}`` of the archive's images, after checking its whole structure.

    Raises DataError (naming ``name``, default the path) for an archive that is cut, corrupt, misses
    or adds an image, or holds a member that is absolute, climbs with ``..``, or is a link where an
    image should be.
    """
    path, images = Path(path), {}
    name = name or str(path)
    try:
        with gzip.open(path) as stream:  # to the end: tarfile stops at the end-of-archive block, before the CRC
            while stream.read(MIB):
                pass
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                member_path = PurePosixPath(member.name)
                if member_path.is_absolute() or ".." in member_path.parts:
                    raise DataError(f"{name}: member {member.name!r} points outside the archive; nothing extracted")
                match = _IMAGE_MEMBER.fullmatch(member.name)
                if not match:
                    continue
                if not member.isfile():
                    raise DataError(f"{name}: {member.name} is not a regular file; nothing extracted")
                folder, label, writer = map(int, match.groups())
                if folder != label or not 1 <= label <= archive.classes or not 1 <= writer <= archive.writers:
                    raise DataError(f"{name}: {member.name} is not one of Sample001..Sample{archive.classes:03d} "
                                    f"x writers 1..{archive.writers}")
                images[member.name] = (label, writer)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise DataError(f"{name}: not a complete gzip tar archive ({error})") from None
    expected = archive.classes * archive.writers
    if len(images) != expected:
        raise DataError(f"{name}: {len(images)} images in English/Hnd/Img, expected {archive.classes} classes x "
                        f"{archive.writers} writers = {expected}")
    return images


def unpack(tgz: Path, root: Path, archive: Chars74kArchive = CHARS74K, sides=("train", "test")) -> None:
    """Writes the images of each of ``sides`` into ``root``, each side through a ``*.part`` folder.

    File names are made from the parsed class and writer, never from the member's path.
    """
    images = archive_images(tgz, archive)
    tops = {side: root / SIDES[side][0] for side in sides}
    for top in tops.values():
        shutil.rmtree(part_path(top), ignore_errors=True)  # left by an interrupted unpack
    with tarfile.open(tgz, "r:gz") as tar:
        for member in tar:
            if member.name not in images:
                continue
            label, writer = images[member.name]
            side = archive.side(label, writer)
            if side not in tops:
                continue
            out = part_path(tops[side]) / SIDES[side][1] / f"Sample{label:03d}" / f"img{label:03d}-{writer:03d}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(member).read())
    for top in tops.values():
        os.replace(part_path(top), top)
    logger.info("unpacked %s into %s", tgz.name, ", ".join(str(t) for t in tops.values()))
