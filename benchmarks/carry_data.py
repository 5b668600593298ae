"""Packs a data root small enough to carry to an offline machine, and unpacks it there.

    python benchmarks/carry_data.py pack DATA_ROOT PACK.tar.xz     # here
    python benchmarks/carry_data.py unpack PACK.tar.xz DATA_ROOT   # there

The study's data (the part-1 scans, MNIST's four IDX files, the part-3 zip) come to about 72 MiB,
over what a lent GPU machine takes along (64 MiB). Two lossless changes bring them to about 45:
a scan whose pixels are all black or white (every one of the task's) is re-encoded as a 1-bit PNG,
kept only if it decodes to the same grey image as the original (``decode_gray``), and the part-3
zip's members travel in the xz-compressed tar, rebuilt there into a zip of the same member names,
order and bytes. Everything else is copied as it is.
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from jaxcnn.data.imagefiles import decode_gray  # noqa: E402

ZIPPED = "zip-members"  # the tar folder that holds a zip's members, one subfolder per zip


def one_bit_png(data: bytes, name: str) -> bytes:
    """``data`` as a 1-bit PNG when that decodes to the same grey image, else ``data`` unchanged."""
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("RGB"))
    if not np.isin(pixels, (0, 255)).all() or not (pixels == pixels[..., :1]).all():
        return data
    out = io.BytesIO()
    Image.fromarray(pixels[..., 0] > 127).save(out, format="PNG", optimize=True)
    packed = out.getvalue()
    same = np.array_equal(decode_gray(packed, name), decode_gray(data, name))
    return packed if same and len(packed) < len(data) else data


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 0
    tar.addfile(info, io.BytesIO(data))


def pack(root: Path, out: Path) -> None:
    start, recoded = time.perf_counter(), 0
    with tarfile.open(out, "w:xz", preset=6) as tar:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = path.relative_to(root).as_posix()
            if path.suffix == ".zip":
                with zipfile.ZipFile(path) as archive:
                    for index, member in enumerate(archive.infolist()):
                        _add(tar, f"{ZIPPED}/{name}/{index:06d}/{member.filename}", archive.read(member))
                continue
            data = path.read_bytes()
            if path.suffix.lower() == ".png":
                packed = one_bit_png(data, name)
                recoded += packed is not data
                data = packed
            _add(tar, name, data)
    print(f"{out}: {out.stat().st_size / 2**20:.1f} MiB ({recoded} PNGs re-encoded as 1-bit, "
          f"{time.perf_counter() - start:.0f} s)")


def unpack(pack_file: Path, root: Path) -> None:
    zips: dict[str, zipfile.ZipFile] = {}
    with tarfile.open(pack_file, "r:xz") as tar:
        for info in tar:
            data = tar.extractfile(info).read()
            if info.name.startswith(ZIPPED + "/"):
                zip_name, _, member = info.name[len(ZIPPED) + 1:].partition(".zip/")
                target = root / f"{zip_name}.zip"
                if target not in zips:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    zips[target] = zipfile.ZipFile(target, "w", zipfile.ZIP_STORED)
                zips[target].writestr(member.partition("/")[2], data)
                continue
            target = root / info.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    for archive in zips.values():
        archive.close()
    print(f"{root}: unpacked {pack_file}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("root", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("unpack")
    p.add_argument("pack", type=Path)
    p.add_argument("root", type=Path)
    args = parser.parse_args()
    pack(args.root, args.out) if args.command == "pack" else unpack(args.pack, args.root)


if __name__ == "__main__":
    main()
