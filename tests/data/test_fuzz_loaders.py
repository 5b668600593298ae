"""Bad data, tried systematically with hypothesis.

Every damaged or odd input to the image loaders either loads exactly as its undamaged twin or
stops with a DataError of one line naming the file; stray files are skipped and reported; a blank
page is kept and reported; the number of classes never changes silently. Nothing escapes from
inside PIL, zipfile or numpy.
"""

import contextlib
import io
import logging
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from jaxcnn.data.chars74k import load_chars74k
from jaxcnn.data.classfolders import load_class_folders
from jaxcnn.data.imagefiles import MAX_PIXELS, decode_gray, list_images
from jaxcnn.errors import DataError
from tests.conftest import draw_glyph
from tests.faults import bmp_claiming, png_claiming

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAME = "Sample002/img002-001.png"


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def assert_refused(call, *names: str) -> str:
    """``call()`` raises a DataError of one line that names one of ``names``; returns the message."""
    with pytest.raises(DataError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message and any(name in message for name in names), message
    return message


@contextlib.contextmanager
def warnings_logged():
    """The jaxcnn warnings logged inside the block (caplog does not reset between examples)."""
    messages = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("jaxcnn")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


# --- single files: decode_gray ----------------------------------------------------------------

GLYPH = draw_glyph(2, 1, size=(40, 32))
ENCODED = {
    "png": encode(GLYPH),
    "png-16-bit": encode(Image.fromarray(np.asarray(GLYPH).astype(np.uint16) * 257)),
    "png-palette": encode(GLYPH.convert("P")),
    "png-rgba": encode(GLYPH.convert("RGBA")),
    "jpeg": encode(GLYPH, "JPEG"),
    "jpeg-progressive": encode(GLYPH, "JPEG", progressive=True),
    "gif": encode(GLYPH, "GIF"),
    "bmp": encode(GLYPH, "BMP"),
    "tiff": encode(GLYPH, "TIFF"),
    "tiff-lzw": encode(GLYPH, "TIFF", compression="tiff_lzw"),
}


@FUZZ
@given(fmt=st.sampled_from(sorted(ENCODED)), data=st.data())
def test_a_truncated_image_is_refused_or_decoded_exactly(fmt, data):
    full = ENCODED[fmt]
    cut = data.draw(st.integers(0, len(full) - 1), label="cut")
    try:
        decoded = decode_gray(full[:cut], NAME)
    except DataError as error:
        assert str(error).startswith(f"{NAME}: ") and "\n" not in str(error)
    else:  # only the trailing bytes that carry no pixels may be missing
        np.testing.assert_array_equal(decoded, decode_gray(full, NAME))


@FUZZ
@given(fmt=st.sampled_from(sorted(ENCODED)),
       flips=st.lists(st.tuples(st.integers(0, 2**20), st.integers(1, 255)), min_size=1, max_size=4))
def test_a_corrupted_image_is_refused_or_decodes_to_a_valid_gray_image(fmt, flips):
    data = bytearray(ENCODED[fmt])
    for position, mask in flips:
        data[position % len(data)] ^= mask
    try:
        decoded = decode_gray(bytes(data), NAME)
    except DataError as error:
        assert str(error).startswith(f"{NAME}: ") and "\n" not in str(error)
    else:  # formats without checksums may decode to other pixels, but never to an invalid array
        assert decoded.dtype == np.float32 and decoded.ndim == 2 and decoded.size > 0
        assert np.isfinite(decoded).all() and decoded.min() >= 0 and decoded.max() <= 1


def grey_palette_png(pixels: np.ndarray) -> bytes:
    image = Image.fromarray(pixels, "L").convert("P")
    image.putpalette([v for i in range(256) for v in (i, i, i)])
    image.putdata(pixels.ravel().tolist())
    return encode(image)


LOSSLESS = {  # the same grey pixels in every lossless way a scanner or an export might store them
    "png": lambda p: encode(Image.fromarray(p, "L")),
    "png-16-bit": lambda p: encode(Image.fromarray(p.astype(np.uint16) * 257)),
    "png-palette": grey_palette_png,
    "png-rgb": lambda p: encode(Image.fromarray(p, "L").convert("RGB")),
    "png-rgba-opaque": lambda p: encode(Image.fromarray(p, "L").convert("RGBA")),
    "png-gray-alpha-opaque": lambda p: encode(Image.fromarray(p, "L").convert("LA")),
    "gif": lambda p: encode(Image.fromarray(p, "L"), "GIF"),
    "bmp": lambda p: encode(Image.fromarray(p, "L"), "BMP"),
    "tiff": lambda p: encode(Image.fromarray(p, "L"), "TIFF"),
    "tiff-16-bit": lambda p: encode(Image.fromarray(p.astype(np.uint16) * 257), "TIFF"),
}


@FUZZ
@given(variant=st.sampled_from(sorted(LOSSLESS)),
       pixels=arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_every_lossless_encoding_decodes_to_the_same_grey(variant, pixels):
    decoded = decode_gray(LOSSLESS[variant](pixels), NAME)
    np.testing.assert_allclose(decoded, pixels / 255, atol=1e-6)


FORGED = {
    "png-grey-8": lambda w, h: png_claiming(w, h),
    "png-grey-16": lambda w, h: png_claiming(w, h, bit_depth=16),
    "png-rgb": lambda w, h: png_claiming(w, h, colour_type=2),
    "png-palette": lambda w, h: png_claiming(w, h, colour_type=3),
    "bmp": lambda w, h: bmp_claiming(w, h),
    "bmp-top-down": lambda w, h: bmp_claiming(w, -h),
}


@FUZZ
@given(kind=st.sampled_from(sorted(FORGED)), width=st.integers(1, 2**31 - 1), data=st.data())
def test_a_header_claiming_too_many_pixels_is_refused_before_decoding(kind, width, data):
    height = data.draw(st.integers(MAX_PIXELS // width + 1, 2**31 - 1), label="height")
    message = assert_refused(lambda: decode_gray(FORGED[kind](width, height), NAME), NAME)
    assert message.startswith(f"{NAME}: image too large")


@FUZZ
@given(text=st.text(st.characters(min_codepoint=9, max_codepoint=0x2FFF), max_size=300))
@example("")
@example("#define img_width 8\n#define img_height 1\nstatic char img_bits[] = {0xff};\n")
@example("GIF89a is how a gif starts, but this is a note")
@example("\x89PNG\r\n\x1a\nnot really")
def test_a_text_file_named_like_an_image_is_refused(text):
    assume(not re.match(r"P[0-9fFy]", text))  # netpbm's text formats are images in plain text
    assert_refused(lambda: decode_gray(text.encode(), NAME), NAME)


# --- whole trees: load_chars74k and load_class_folders ---------------------------------------

CLASSES = ("0", "1", "2")  # Sample001..Sample003
WRITERS = (1, 2)
IMAGES = tuple(f"Sample{c:03d}/img{c:03d}-{w:03d}.png" for c in (1, 2, 3) for w in WRITERS)
STRAYS = (".DS_Store", "Thumbs.db", "desktop.ini", "notes.txt", "._img001-001.png", "Icon\r",
          "__MACOSX/Sample001/._img001-001.png", ".hidden/img001-001.png", ".git/config")


def glyph_for(name: str) -> Image.Image:
    """The glyph of ``imgCCC-SSS.png``: class CCC's shape in writer SSS's hand."""
    return draw_glyph(int(name[3:6]), int(name[7:10]), size=(40, 32))


def build_tree(root: Path, names=IMAGES) -> Path:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        glyph_for(path.name).save(path)
    return root


def zip_tree(folder: Path, path: Path, compression=zipfile.ZIP_DEFLATED) -> Path:
    """Zips a tree, folders included (an empty class folder stays a folder)."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for item in sorted(folder.rglob("*")):
            name = item.relative_to(folder).as_posix()
            archive.write(item, name + "/" if item.is_dir() else name)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The undamaged tree, loaded."""
    root = tmp_path_factory.mktemp("reference")
    return load_chars74k(build_tree(root / "data"), classes=CLASSES, cache_dir=root / "cache")


def assert_same_data(data, reference) -> None:
    assert data.class_names == reference.class_names
    for field in ("images", "labels", "groups"):
        np.testing.assert_array_equal(getattr(data, field), getattr(reference, field))


@dataclass(frozen=True)
class Expect:
    """What a damage must lead to: "refused" (naming ``name``), "same" (as the reference),
    "same-or-refused", or "blank" (the reference with image ``name`` empty, and reported)."""

    outcome: str
    name: str = ""


def _rewrite(root, target, data):
    (root / target).write_bytes(data)


def _truncate(root, target, draw):
    full = (root / target).read_bytes()
    _rewrite(root, target, full[: draw(st.integers(0, len(full) - 1), label="cut")])
    return Expect("same-or-refused", target)


def _reencode(root, target, draw):
    fmt = draw(st.sampled_from(["BMP", "GIF", "TIFF", "PNG-16", "PNG-P", "PNG-RGBA"]), label="format")
    image = Image.open(root / target).convert("L")
    if fmt == "PNG-16":
        image, fmt = Image.fromarray(np.asarray(image).astype(np.uint16) * 257), "PNG"
    elif fmt.startswith("PNG-"):
        image, fmt = image.convert(fmt[4:]), "PNG"
    _rewrite(root, target, encode(image, fmt))
    return Expect("same")


def _rename(root, target, draw):
    suffix = draw(st.sampled_from([".jpg", ".JPG", ".jpeg", ".tif", ".bmp", ".gif", ".PNG"]), label="suffix")
    (root / target).rename((root / target).with_suffix(suffix))  # a PNG under another image name
    return Expect("same")


def _white_page(root, target, draw):
    size = draw(st.tuples(st.integers(1, 120), st.integers(1, 120)), label="size")
    assume(size != (28, 28))  # class folders take 28x28 images as they are, blank or not
    level = draw(st.sampled_from([255, 240, 184]), label="paper")
    Image.new("L", size, level).save(root / target)
    return Expect("blank", target)


def _forged_huge(root, target, draw):
    side = draw(st.integers(int(MAX_PIXELS**0.5) + 1, 2**31 - 1), label="side")
    _rewrite(root, target, png_claiming(side, side))
    return Expect("refused", target)


def _misnamed(root, target, draw):
    new = draw(st.sampled_from(["scan.png", "img009-001.png", "IMG{c}-001.png", "img{c}_001.png"]), label="name")
    (root / target).rename(root / target.rpartition("/")[0] / new.format(c=target[6:9]))
    return Expect("refused", target.rpartition("/")[0])


FILE_DAMAGES = {
    "truncated": _truncate,
    "zero-byte": lambda root, target, draw: _rewrite(root, target, b"") or Expect("refused", target),
    "text": lambda root, target, draw: _rewrite(root, target, b"scan failed\n") or Expect("refused", target),
    "forged-huge": _forged_huge,
    "re-encoded": _reencode,
    "renamed": _rename,
    "white-page": _white_page,
    "misnamed": _misnamed,
}


def _missing_class(root, folder, draw):
    shutil.rmtree(root / folder)
    return Expect("refused", folder)


def _empty_class(root, folder, draw):
    for path in (root / folder).iterdir():
        path.unlink()
    return Expect("refused", folder)


def _nested_folder(root, folder, draw):
    nested = draw(st.sampled_from(["extra", "Sample004", "old/Sample001"]), label="nested")
    build_tree(root / folder / nested, [f"img{folder[-3:]}-009.png"])
    return Expect("same" if "Sample" not in nested else "refused", folder)


FOLDER_DAMAGES = {
    "missing-class": _missing_class,
    "empty-class": _empty_class,
    "nested-folder": _nested_folder,
    "unrequested-class": lambda root, folder, draw: build_tree(root, ["Sample004/img004-001.png"]) and Expect("same"),
    "class-63": lambda root, folder, draw: (root / "Sample063").mkdir() or Expect("refused", "Sample063"),
}


def apply_strays(root: Path, strays, draw) -> None:
    for stray in strays:
        where = draw(st.sampled_from(["", "Sample001/", "Sample003/"]), label="stray folder") if "/" not in stray else ""
        path = root / (where + stray)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0\0\0\1Bud1 not an image")


def check(outcome: Expect, load, source: Path, reference, strays, order=IMAGES) -> None:
    """Loads ``source`` and checks the ``outcome``; ``order`` lists the image files in load order."""
    with warnings_logged() as logged:
        try:
            data = load()
        except DataError as error:
            message = str(error)
            assert outcome.outcome in ("refused", "same-or-refused"), f"refused unexpectedly: {message}"
            assert "\n" not in message and outcome.name in message and str(source) in message, message
            return
    assert outcome.outcome != "refused", f"{outcome.name} was accepted"
    if outcome.outcome == "blank":
        expected = reference.images.copy()
        expected[order.index(outcome.name)] = 0
        np.testing.assert_array_equal(data.images, expected)
        assert any("blank images" in m and outcome.name.rpartition("/")[2] in m for m in logged), logged
    else:
        assert_same_data(data, reference)
    if strays:  # every stray file was skipped, and the skip was reported
        assert any(f"skipped {len(strays)} non-image files" in m for m in logged), logged


@FUZZ
@given(damage=st.sampled_from(sorted(FILE_DAMAGES) + sorted(FOLDER_DAMAGES) + ["dangling-link", "none"]),
       in_zip=st.booleans(), strays=st.lists(st.sampled_from(STRAYS), unique=True, max_size=3), data=st.data())
def test_a_damaged_chars74k_tree_loads_the_same_or_is_refused_naming_the_file(reference, damage, in_zip, strays, data):
    assume(not (in_zip and damage == "dangling-link"))  # a zip cannot hold a dangling link
    with tempfile.TemporaryDirectory() as tmp:
        root = build_tree(Path(tmp) / "data")
        apply_strays(root, strays, data.draw)
        if damage in FILE_DAMAGES:
            outcome = FILE_DAMAGES[damage](root, data.draw(st.sampled_from(IMAGES), label="file"), data.draw)
        elif damage in FOLDER_DAMAGES:
            folder = data.draw(st.sampled_from(["Sample001", "Sample002", "Sample003"]), label="folder")
            outcome = FOLDER_DAMAGES[damage](root, folder, data.draw)
        elif damage == "dangling-link":
            (root / NAME).unlink()
            (root / NAME).symlink_to(Path(tmp) / "gone.png")
            outcome = Expect("refused", NAME)
        else:
            outcome = Expect("same")
        source = zip_tree(root, Path(tmp) / "data.zip") if in_zip else root
        check(outcome, lambda: load_chars74k(source, classes=CLASSES, cache_dir=Path(tmp) / "cache"),
              source, reference, strays)


@FUZZ
@given(damage=st.sampled_from(["truncated", "zero-byte", "text", "forged-huge", "re-encoded", "renamed", "white-page",
                               "missing-class", "empty-class", "nested-folder", "none"]),
       in_zip=st.booleans(), strays=st.lists(st.sampled_from(STRAYS), unique=True, max_size=3), data=st.data())
def test_a_damaged_class_folder_tree_loads_the_same_or_is_refused_naming_the_file(damage, in_zip, strays, data):
    """The class-folder layout (``0/``, ``1/``, ...), with the class names given as evaluate gives them."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        layout = {name: f"{CLASSES[int(name[6:9]) - 1]}/{name.rpartition('/')[2]}" for name in IMAGES}
        root = tmp / "data"
        for name, path in layout.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            glyph_for(name.rpartition("/")[2]).save(root / path)
        reference = load_class_folders(root, class_names=CLASSES, cache_dir=tmp / "reference-cache")
        apply_strays(root, strays, lambda strategy, label: "")  # at the top
        target = data.draw(st.sampled_from(sorted(layout.values())), label="file")
        folder = target.partition("/")[0]
        if damage == "missing-class":
            outcome = _missing_class(root, folder, data.draw)
        elif damage == "empty-class":
            outcome = _empty_class(root, folder, data.draw)
        elif damage == "nested-folder":
            build_tree(root / folder / "extra", ["img001-009.png"])
            outcome = Expect("same")
        elif damage == "none":
            outcome = Expect("same")
        else:
            outcome = FILE_DAMAGES[damage](root, target, data.draw)
        source = zip_tree(root, tmp / "data.zip") if in_zip else root
        check(outcome, lambda: load_class_folders(source, class_names=CLASSES, cache_dir=tmp / "cache"),
              source, reference, strays, order=sorted(layout.values()))


@FUZZ
@given(names=st.lists(st.text(st.characters(codec="utf-8", exclude_characters="/\\\0", exclude_categories=("Cs",)),
                              min_size=1, max_size=4), min_size=2, max_size=4, unique=True))
@example(names=["²", "1"])
@example(names=["10", "2", "٣"])
@example(names=["0", ".ipynb_checkpoints", "__MACOSX"])
def test_class_folders_with_any_names_keep_one_class_per_folder(names):
    """Default class discovery: every folder that is not stray is a class, none is lost or added."""
    assume(all(n not in (".", "..") and len(n.encode()) < 200 for n in names))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        for i, name in enumerate(names):
            (root / name).mkdir(parents=True)
            draw_glyph(i, size=(40, 32)).save(root / name / "x.png")
        kept = sorted(n for n in names if not n.startswith(".") and n != "__MACOSX")
        assume(kept)
        data = load_class_folders(root, cache_dir=Path(tmp) / "cache")
        assert sorted(data.class_names) == kept and len(data) == len(kept)
        assert sorted(data.labels.tolist()) == list(range(len(kept)))
        numbers = [n for n in data.class_names if n.isdecimal()]
        assert list(data.class_names[: len(numbers)]) == sorted(numbers, key=lambda n: (int(n), n))  # 2 before 10


# --- zip archives ------------------------------------------------------------------------------

PARTS = ("..", ".", "a", "Sample001", "img001-001.png")


@FUZZ
@given(parts=st.lists(st.sampled_from(PARTS), min_size=1, max_size=5), separator=st.sampled_from(["/", "\\"]),
       anchor=st.sampled_from(["", "/", "\\", "C:", "C:/", "//server/"]))
def test_a_zip_member_that_climbs_out_or_is_absolute_is_refused(tmp_path_factory, parts, separator, anchor):
    member = anchor + separator.join(parts)
    assume(".." in parts or anchor)
    path = tmp_path_factory.mktemp("zip") / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("Sample001/img001-001.png", encode(GLYPH))
        archive.writestr(zipfile.ZipInfo(member), encode(GLYPH))
    message = assert_refused(lambda: list_images(path), f"'{member}'")
    assert message.startswith(f"{path}: refusing unsafe member")


@pytest.fixture(scope="module")
def zipped(tmp_path_factory):
    """The reference tree as a zip: (its bytes, the reference data set)."""
    root = tmp_path_factory.mktemp("zipped")
    archive = zip_tree(build_tree(root / "data"), root / "data.zip")
    return archive.read_bytes(), load_chars74k(archive, classes=CLASSES, cache_dir=root / "cache")


@FUZZ
@given(data=st.data(), damage=st.sampled_from(["truncated", "flipped"]))
def test_a_damaged_zip_is_refused_naming_it_or_loads_the_same(zipped, data, damage):
    raw, reference = zipped
    if damage == "truncated":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")]
    else:
        position = data.draw(st.integers(0, len(raw) - 1), label="position")
        raw = raw[:position] + bytes([raw[position] ^ data.draw(st.integers(1, 255), label="mask")]) + raw[position + 1:]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.zip"
        path.write_bytes(raw)
        with warnings_logged() as logged:
            try:
                loaded = load_chars74k(path, classes=CLASSES, cache_dir=Path(tmp) / "cache")
            except DataError as error:
                assert str(error).startswith(str(path)) and "\n" not in str(error), str(error)
                return
        assert loaded.class_names == CLASSES
        if len(loaded) == len(reference):
            assert_same_data(loaded, reference)
        else:  # a damaged name can hide an image, never silently
            assert logged, "an image went missing without a warning"


# --- regressions for what the fuzzing found --------------------------------------------------


def test_a_dangling_link_named_like_an_image_is_a_data_error(tmp_path):
    root = build_tree(tmp_path / "data")
    (root / NAME).unlink()
    (root / NAME).symlink_to(tmp_path / "moved-away.png")
    message = assert_refused(lambda: list_images(root), NAME)
    assert message == f"{root}/{NAME}: cannot read ({os.strerror(2)})"


def test_a_zip_with_the_same_member_twice_is_refused(tmp_path):
    path = zip_tree(build_tree(tmp_path / "data"), tmp_path / "data.zip")
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as archive:
        archive.writestr(NAME, encode(draw_glyph(4, 4, size=(40, 32))))  # zipfile reads the last copy for both
    assert_refused(lambda: load_chars74k(path, classes=CLASSES, cache_dir=tmp_path / "cache"), f"data.zip/{NAME}")


def test_class_folders_named_with_non_ascii_digits_load(tmp_path):
    for name in ("²", "1", "١٠"):
        build_tree(tmp_path / "data" / name, ["img001-001.png"])
    assert load_class_folders(tmp_path / "data", cache_dir=tmp_path / "cache").class_names == ("1", "١٠", "²")
