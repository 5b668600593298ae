"""Listing, reading and decoding images from folders and zips; the class-folder loader."""

import io
import logging
import multiprocessing
import os
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from jaxcnn.data import imagefiles
from jaxcnn.data.classfolders import load_class_folders
from jaxcnn.data.imagefiles import MAX_PIXELS, decode_gray, list_images
from jaxcnn.errors import DataError


def write_tree(root, names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


STRAY = [".DS_Store", "Thumbs.db", "notes.txt", "a/._img.png", "__MACOSX/a/._b.png", ".hidden/c.png"]
IMAGES = ["a/b.png", "a/C.JPG", "d.tiff", "e.Jpeg", "f.bmp", "g.gif", "h.tif"]


def test_folder_listing_keeps_images_and_reports_strays(tmp_path, caplog):
    write_tree(tmp_path, IMAGES + STRAY)
    (tmp_path / "empty").mkdir()
    with caplog.at_level(logging.WARNING, logger="jaxcnn"):
        listing = list_images(tmp_path)
    assert [e.name for e in listing.entries] == sorted(IMAGES)
    assert {name for name, _ in listing.skipped} == {".DS_Store", "Thumbs.db", "notes.txt", "a/._img.png", "__MACOSX/", ".hidden/"}
    assert {"a", "empty"} <= listing.folders and "__MACOSX" not in listing.folders
    assert "skipped 6 non-image files" in caplog.text


def test_zip_listing_matches_the_folder_and_reads_bytes(tmp_path, zip_folder):
    write_tree(tmp_path / "tree", IMAGES + STRAY)
    (tmp_path / "tree" / "a" / "b.png").write_bytes(b"payload")
    listing = list_images(zip_folder(tmp_path / "tree", tmp_path / "tree.zip"))
    assert [e.name for e in listing.entries] == sorted(IMAGES)
    assert {name for name, _ in listing.skipped} == {".DS_Store", "Thumbs.db", "notes.txt", "a/._img.png", "__MACOSX/", ".hidden/"}
    assert dict((e.name, data) for e, data in listing.read(listing.entries))["a/b.png"] == b"payload"


@pytest.mark.parametrize("member", ["../x.png", "a/../../x.png", "/etc/x.png", "..\\x.png"])
def test_zip_with_unsafe_member_is_refused(tmp_path, member):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ok.png", b"x")
        archive.writestr(zipfile.ZipInfo(member), b"x")
    with pytest.raises(DataError, match="evil.zip.*unsafe member") as error:
        list_images(path)
    assert member in str(error.value)


def test_corrupt_zip_names_the_file(tmp_path):
    path = tmp_path / "broken.zip"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="broken.zip: not a readable zip"):
        list_images(path)


def test_missing_source_names_the_path(tmp_path):
    with pytest.raises(DataError, match="nowhere: no such folder"):
        list_images(tmp_path / "nowhere")


def encode(image, format="PNG"):
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def two_pixel(mode, dark, light):
    """A 1x2 image in ``mode``: a dark pixel then a light one."""
    image = Image.new(mode, (2, 1))
    image.putpixel((0, 0), dark)
    image.putpixel((1, 0), light)
    return image


@pytest.mark.parametrize(
    "image, expected",
    [
        (two_pixel("L", 0, 255), [0, 1]),
        (two_pixel("1", 0, 1), [0, 1]),
        (two_pixel("RGB", (0, 0, 0), (255, 255, 255)), [0, 1]),
        (two_pixel("RGBA", (0, 0, 0, 255), (0, 0, 0, 0)), [0, 1]),  # transparent shows white paper
        (two_pixel("LA", (0, 255), (0, 0)), [0, 1]),
        (two_pixel("I;16", 0, 32768), [0, 0.5]),
    ],
    ids=["L", "1-bit", "RGB", "RGBA", "LA", "16-bit"],
)
def test_decode_gray_modes(image, expected):
    out = decode_gray(encode(image), "x.png")
    assert out.dtype == np.float32 and out.shape == (1, 2)
    np.testing.assert_allclose(out[0], expected, atol=0.01)


def test_decode_palette_with_transparency():
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 1
    np.testing.assert_allclose(decode_gray(encode(image), "p.png")[0], [0, 1], atol=0.01)


def test_decode_jpeg():
    out = decode_gray(encode(Image.new("RGB", (16, 16), (255, 255, 255)), "JPEG"), "x.jpg")
    assert out.shape == (16, 16) and out.min() > 0.95


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", encode(Image.new("L", (64, 64), 128))[:60]],
    ids=["zero-byte", "text", "truncated"],
)
def test_unreadable_data_is_a_data_error_naming_the_file(data):
    with pytest.raises(DataError, match=r"^scan7\.png: not a readable image \(.+\)$"):
        decode_gray(data, "scan7.png")


def png_claiming_size(width, height):
    """A PNG whose header claims a size but holds almost no pixel data (a decompression-bomb probe)."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [int(MAX_PIXELS**0.5) + 10, 100_000])
def test_decompression_bombs_are_refused(side):
    with pytest.raises(DataError, match="bomb.png: image too large"):
        decode_gray(png_claiming_size(side, side), "bomb.png")


def save(image, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def test_class_folders_mixed_sizes_modes_and_polarity(tmp_path, glyph):
    mnist_like = np.zeros((28, 28), np.uint8)
    mnist_like[8:20, 13:15] = 255
    save(Image.fromarray(mnist_like), tmp_path / "0" / "a.png")  # white on black, used as is
    save(Image.fromarray(255 - mnist_like), tmp_path / "0" / "b.jpg")  # black on white: inverted
    save(glyph(1, size=(90, 60)).convert("RGB"), tmp_path / "1" / "c.png")  # large: preprocessed
    save(glyph(2).convert("P"), tmp_path / "10" / "d.png")
    (tmp_path / "1" / ".DS_Store").write_bytes(b"junk")
    data = load_class_folders(tmp_path, cache_dir=tmp_path / "cache")
    assert data.class_names == ("0", "1", "10")
    assert data.labels.tolist() == [0, 0, 1, 2] and data.groups.tolist() == [-1] * 4
    np.testing.assert_array_equal(data.images[0], mnist_like)
    assert np.abs(data.images[1].astype(int) - mnist_like).max() < 40  # JPEG loses a little
    assert data.images[2].max() == 255 and data.images[2][:4].max() == 0


def test_class_folders_under_a_single_folder_in_a_zip(tmp_path, glyph, zip_folder):
    for label in range(3):
        save(glyph(label), tmp_path / "tree" / str(label) / "x.png")
    data = load_class_folders(zip_folder(tmp_path / "tree", tmp_path / "d.zip", "mnist/train/"), cache_dir=tmp_path / "c")
    assert data.class_names == ("0", "1", "2") and len(data) == 3


def test_class_folders_empty_or_missing_class_is_an_error(tmp_path, glyph):
    save(glyph(0), tmp_path / "0" / "x.png")
    (tmp_path / "1").mkdir()
    with pytest.raises(DataError, match=r"1: class folder for class '1' has no images"):
        load_class_folders(tmp_path, cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match=r"7: missing class folder"):
        load_class_folders(tmp_path, class_names=["0", "7"], cache_dir=tmp_path / "c")


def test_class_folders_use_the_cache(tmp_path, glyph, monkeypatch):
    save(glyph(0, size=(50, 50)), tmp_path / "data" / "0" / "x.png")
    save(glyph(1, size=(50, 50)), tmp_path / "data" / "1" / "y.png")
    first = load_class_folders(tmp_path / "data", cache_dir=tmp_path / "c")
    monkeypatch.setattr("jaxcnn.data.imagefiles.decode_gray", lambda *a: pytest.fail("decoded despite a cache hit"))
    second = load_class_folders(tmp_path / "data", cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(first.images, second.images)


def test_damaged_zip_member_names_the_zip_and_member(tmp_path):
    path = tmp_path / "d.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a/img.png", encode(Image.new("L", (64, 64), 200)) * 4)
    raw = bytearray(path.read_bytes())
    raw[60:80] = b"\xff" * 20  # inside the compressed data of the only member
    path.write_bytes(bytes(raw))
    listing = list_images(path)
    with pytest.raises(DataError, match=r"d\.zip/a/img\.png: cannot read from the zip"):
        list(listing.read(listing.entries))


def test_an_unwritable_cache_is_a_warning_not_a_failure(tmp_path, glyph, caplog):
    (tmp_path / "data" / "0").mkdir(parents=True)
    glyph(0).save(tmp_path / "data" / "0" / "a.png")
    (tmp_path / "cache-file").write_text("not a folder")
    data = load_class_folders(tmp_path / "data", cache_dir=tmp_path / "cache-file")
    assert len(data) == 1
    assert "cannot write the preprocessing cache" in caplog.text and "cache-file" in caplog.text


def lying_zip(path, claimed: int, real: int):
    """A zip whose one member ``0/a.png`` claims ``claimed`` bytes but inflates to ``real``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("0/a.png", b"\0" * real)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 22, claimed)  # the local header's uncompressed size
    struct.pack_into("<I", data, data.rfind(b"PK\x01\x02") + 24, claimed)  # the central directory's
    path.write_bytes(bytes(data))
    return path


def test_a_zip_member_inflates_no_more_than_its_header_claims(tmp_path):
    listing = list_images(lying_zip(tmp_path / "liar.zip", claimed=1000, real=64 * 2**20))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"liar.zip/0/a.png: cannot read from the zip \(Bad CRC"):
            list(listing.read(listing.entries))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # was the whole 64 MiB (1 GiB inflated to 2.4 GB at peak)


def test_a_large_png_of_few_bytes_is_refused_before_decoding(png_bytes):
    data = png_bytes(Image.new("L", (7000, 7000), 255))
    assert len(data) < 200_000
    with pytest.raises(DataError, match=r"big.png: image too large \(7000x7000 pixels"):
        decode_gray(data, "big.png")


def look_alike(path, glyph, label, mtime_ns=1_600_000_000 * 10**9):
    """A PNG of ``glyph(label)`` whose size does not depend on its pixels (stored, not deflated),
    with a fixed modification time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    glyph(label).save(path, compress_level=0)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_look_alike_folders_do_not_share_a_cache_entry(tmp_path, glyph):
    first = look_alike(tmp_path / "a" / "digits" / "0" / "x.png", glyph, 0)
    second = look_alike(tmp_path / "b" / "digits" / "0" / "x.png", glyph, 1)
    assert first.stat().st_size == second.stat().st_size and first.read_bytes() != second.read_bytes()
    a = load_class_folders(tmp_path / "a" / "digits", cache_dir=tmp_path / "c")
    b = load_class_folders(tmp_path / "b" / "digits", cache_dir=tmp_path / "c")
    assert not np.array_equal(a.images, b.images)


def test_a_file_replaced_in_place_with_the_same_size_and_time_is_seen(tmp_path, glyph):
    path = look_alike(tmp_path / "digits" / "0" / "x.png", glyph, 0)
    before = load_class_folders(tmp_path / "digits", cache_dir=tmp_path / "c")
    size = path.stat().st_size
    look_alike(path, glyph, 1)
    assert path.stat().st_size == size
    after = load_class_folders(tmp_path / "digits", cache_dir=tmp_path / "c")
    assert not np.array_equal(before.images, after.images)


def test_worker_processes_preprocess_the_same_and_name_a_bad_file(tmp_path, glyph, monkeypatch):
    for label in range(3):
        for i in range(3):
            save(glyph(label, writer=i, size=(60, 50)), tmp_path / "data" / str(label) / f"{i}.png")
    alone = load_class_folders(tmp_path / "data", cache_dir=tmp_path / "alone")
    monkeypatch.setattr("jaxcnn.data.imagefiles.PARALLEL_FROM", 1)  # two workers, however few the images
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    real_workers, started = imagefiles._in_workers, []
    monkeypatch.setattr(imagefiles, "_in_workers",
                        lambda prepare, files, count: started.append(count) or real_workers(prepare, files, count))
    together = load_class_folders(tmp_path / "data", cache_dir=tmp_path / "together")
    assert started == [2]
    np.testing.assert_array_equal(together.images, alone.images)
    (tmp_path / "data" / "2" / "1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"2/1\.png: not a readable image"):
        load_class_folders(tmp_path / "data", cache_dir=tmp_path / "broken")


def exit_in_a_worker(data, name):
    """Returns ``name``, except that a worker process given file "x7" exits on the spot."""
    if name == "x7" and multiprocessing.parent_process() is not None:
        os._exit(3)
    return name


def test_a_worker_that_dies_is_said_and_its_files_are_prepared_here(monkeypatch, caplog):
    monkeypatch.setattr(imagefiles, "PARALLEL_FROM", 1)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    files = [(b"", f"x{i}") for i in range(40)]
    with caplog.at_level(logging.WARNING, logger="jaxcnn"):
        prepared = imagefiles._map_files(exit_in_a_worker, files)
    assert prepared == [name for _, name in files]
    assert "a worker process died" in caplog.text and "preparing the 40 images in this process" in caplog.text
