"""The Chars74K loader: layout, validation, caching, writer splits."""

import logging
import shutil
import time
import zipfile

import numpy as np
from PIL import Image
import pytest

from jaxcnn.data.chars74k import (
    CLASS_NAMES,
    DIGIT_CLASSES,
    fold_indices,
    load_chars74k,
    writer_folds,
    writer_split,
)
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.data.preprocess import CENTRE
from jaxcnn.errors import DataError

SMALL = ("0", "1", "2")  # Sample001..Sample003


def load(source, tmp_path, **kwargs):
    return load_chars74k(source, cache_dir=tmp_path / "cache", **kwargs)


def test_class_names_are_digits_upper_lower():
    assert len(CLASS_NAMES) == 62 and len(set(CLASS_NAMES)) == 62
    assert CLASS_NAMES[:11] == tuple("0123456789A") and CLASS_NAMES[36] == "a" and CLASS_NAMES[-1] == "z"
    assert DIGIT_CLASSES == tuple("0123456789")


def test_loads_a_tiny_tree(tmp_path, make_chars74k):
    make_chars74k(tmp_path / "data", classes=(1, 2, 3), writers=(4, 5))
    data = load(tmp_path / "data", tmp_path, classes=SMALL)
    assert data.images.shape == (6, 28, 28) and data.images.dtype == np.uint8
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.groups.tolist() == [4, 5, 4, 5, 4, 5]
    assert data.class_names == SMALL
    assert (data.images.max(axis=(1, 2)) == 255).all() and (data.images[:, 0, :] == 0).all()


def test_requested_classes_are_relabelled_from_zero(tmp_path, make_chars74k):
    make_chars74k(tmp_path, classes=(1, 5, 12))  # "0", "4", "B"
    data = load(tmp_path, tmp_path, classes=["B", "4"])
    assert data.class_names == ("B", "4") and sorted(set(data.labels.tolist())) == [0, 1]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_a_zip_under_a_prefix_loads_the_same(tmp_path, make_chars74k, zip_folder):
    make_chars74k(tmp_path / "data")
    from_folder = load(tmp_path / "data", tmp_path, classes=SMALL)
    archive = zip_folder(tmp_path / "data", tmp_path / "d.zip", prefix="chars/train/")
    from_zip = load(archive, tmp_path, classes=SMALL)
    np.testing.assert_array_equal(from_zip.images, from_folder.images)
    np.testing.assert_array_equal(from_zip.groups, from_folder.groups)


@pytest.mark.parametrize("sub", ["", "train", "test", "anything"])
def test_layout_root_at_top_or_under_one_folder(tmp_path, make_chars74k, sub):
    make_chars74k(tmp_path / "data" / sub, classes=(1,), writers=(1,))
    assert load(tmp_path / "data", tmp_path, classes=["0"]).groups.tolist() == [1]


def test_wrong_layout_says_what_was_expected_and_found(tmp_path):
    (tmp_path / "digits" / "0").mkdir(parents=True)
    with pytest.raises(DataError, match=r"expected Chars74K folders Sample001\.\.Sample062.*found digits"):
        load(tmp_path, tmp_path / "cache", classes=["0"])


def test_two_places_with_sample_folders_is_ambiguous(tmp_path, make_chars74k):
    make_chars74k(tmp_path / "train", classes=(1,), writers=(1,))
    make_chars74k(tmp_path / "test", classes=(1,), writers=(2,))
    with pytest.raises(DataError, match="2 places.*test, train"):
        load(tmp_path, tmp_path, classes=["0"])


def break_file(root, name, content):
    (root / "Sample002" / name).write_bytes(content)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: break_file(r, "img002-001.png", b"\x89PNG\r\n\x1a\n garbage"), r"Sample002/img002-001\.png: not a readable image"),
        (lambda r: break_file(r, "img002-001.png", b""), r"Sample002/img002-001\.png: not a readable image \(empty file\)"),
        (lambda r: shutil.copy(r / "Sample002" / "img002-001.png", r / "Sample002" / "scan.png"), r"Sample002/scan\.png: expected a name like img002-001\.png"),
        (lambda r: shutil.copy(r / "Sample003" / "img003-001.png", r / "Sample002" / "img003-001.png"), r"Sample002/img003-001\.png: expected a name"),
        (lambda r: shutil.rmtree(r / "Sample002"), r"Sample002: missing class folder for class '1'"),
        (lambda r: [p.unlink() for p in (r / "Sample002").iterdir()], r"Sample002: class folder for class '1' has no images"),
        (lambda r: (r / "Sample063").mkdir(), r"Sample063: no such Chars74K class"),
        (lambda r: shutil.copy(r / "Sample002" / "img002-001.png", r / "Sample002" / "img002-001.jpg"),
         r"Sample002/img002-001\.jpg and .*Sample002/img002-001\.png: two images of class '1' by writer 1"),
    ],
    ids=["corrupt", "zero-byte", "wrong-name", "class-mismatch", "missing-class", "empty-class", "class-63",
         "two-files-one-writer"],
)
def test_bad_data_stops_with_an_error_naming_the_file(tmp_path, make_chars74k, damage, message):
    root = make_chars74k(tmp_path / "data")
    damage(root)
    with pytest.raises(DataError, match=message):
        load(root, tmp_path, classes=SMALL)


def test_zip_with_path_traversal_is_refused(tmp_path, make_chars74k, zip_folder):
    archive = zip_folder(make_chars74k(tmp_path / "data"), tmp_path / "d.zip")
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("../x.png", b"x")
    with pytest.raises(DataError, match=r"d\.zip: refusing unsafe member '\.\./x\.png'"):
        load(archive, tmp_path, classes=SMALL)


def test_stray_files_are_skipped_and_reported(tmp_path, make_chars74k, caplog):
    root = make_chars74k(tmp_path / "data")
    (root / "Sample001" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "Sample002" / "Thumbs.db").write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="jaxcnn"):
        data = load(root, tmp_path, classes=SMALL)
    assert len(data) == 9
    assert "skipped 2 non-image files" in caplog.text and ".DS_Store" in caplog.text


def test_blank_image_is_kept_as_an_empty_input_and_reported(tmp_path, make_chars74k, caplog):
    from PIL import Image

    root = make_chars74k(tmp_path / "data")
    Image.new("L", (28, 28), 184).save(root / "Sample002" / "img002-002.png")  # like the real img042-012
    with caplog.at_level(logging.WARNING, logger="jaxcnn"):
        data = load(root, tmp_path, classes=SMALL)
    assert len(data) == 9 and data.images[4].max() == 0 and data.images[3].max() == 255
    assert "1 blank images" in caplog.text and "img002-002.png" in caplog.text


def test_cache_hit_returns_identical_arrays_without_decoding(tmp_path, make_chars74k, monkeypatch):
    root = make_chars74k(tmp_path / "data")
    first = load(root, tmp_path, classes=SMALL)
    monkeypatch.setattr("jaxcnn.data.imagefiles.decode_gray", lambda *a: pytest.fail("decoded despite a cache hit"))
    start = time.perf_counter()
    second = load(root, tmp_path, classes=SMALL)
    assert time.perf_counter() - start < 0.5
    for field in ("images", "labels", "groups"):
        np.testing.assert_array_equal(getattr(second, field), getattr(first, field))
    assert second.class_names == first.class_names


def test_cache_misses_when_a_file_or_a_setting_changes(tmp_path, make_chars74k, glyph):
    root = make_chars74k(tmp_path / "data")
    first = load(root, tmp_path, classes=SMALL)
    stretched = load(root, tmp_path, classes=SMALL, preprocess="stretch")
    assert not np.array_equal(stretched.images, first.images)
    glyph(4, size=(40, 30)).save(root / "Sample001" / "img001-001.png")
    changed = load(root, tmp_path, classes=SMALL)
    assert not np.array_equal(changed.images[0], first.images[0])
    np.testing.assert_array_equal(changed.images[1:], first.images[1:])
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3


def test_corrupt_cache_file_is_rebuilt(tmp_path, make_chars74k):
    root = make_chars74k(tmp_path / "data")
    first = load(root, tmp_path, classes=SMALL)
    (cache_file,) = (tmp_path / "cache").glob("*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    np.testing.assert_array_equal(load(root, tmp_path, classes=SMALL).images, first.images)
    assert np.load(cache_file)["images"].shape == (9, 28, 28)  # rewritten whole
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_writer_split_is_disjoint_and_complete(tmp_path, make_chars74k):
    data = load(make_chars74k(tmp_path, writers=(31, 32, 33, 40, 41)), tmp_path, classes=SMALL)
    train, val = writer_split(data, range(33, 41))
    assert set(val.groups.tolist()) == {33, 40} and set(train.groups.tolist()) == {31, 32, 41}
    assert len(train) + len(val) == len(data)
    with pytest.raises(DataError, match="empty side"):
        writer_split(data, val_writers=[99])


def test_writer_folds_partition_the_writers():
    folds = writer_folds(range(1, 41), 5)
    assert len(folds) == 5 and all(len(f) == 8 for f in folds)
    assert sorted(w for f in folds for w in f) == list(range(1, 41))  # every writer exactly once
    uneven = writer_folds([5, 3, 3, 9, 1, 7, 2, 8], 3)  # per image: repeats count once
    assert sorted(w for f in uneven for w in f) == [1, 2, 3, 5, 7, 8, 9]
    assert sorted(len(f) for f in uneven) == [2, 2, 3]
    with pytest.raises(ValueError, match="between 2"):
        writer_folds(range(1, 5), 1)


def test_class_folds_hold_out_each_image_once_and_keep_every_class_in_every_fold():
    labels = np.repeat(np.arange(4), 10).astype(np.int32)
    writers = np.concatenate([np.random.default_rng(c).permutation(55)[:10] + 1 for c in range(4)]).astype(np.int32)
    data = ArrayDataset(np.zeros((40, 28, 28), np.uint8), labels, writers, ("0", "1", "A", "a"))
    folds = fold_indices(data, 5)
    assert sorted(np.concatenate(folds).tolist()) == list(range(40))  # each (class, writer) pair held out once
    assert all(np.bincount(labels[f], minlength=4).tolist() == [2, 2, 2, 2] for f in folds)
    assert [f.tolist() for f in fold_indices(data, 5)] == [f.tolist() for f in folds]  # seeded: the same folds
    by_writer = fold_indices(data, 5, "writer")
    assert all(not set(writers[a]) & set(writers[b]) for i, a in enumerate(by_writer) for b in by_writer[i + 1:])
    with pytest.raises(ValueError, match="smallest class"):
        fold_indices(data, 11)


def test_real_subset(tmp_path, shared_data):
    real = shared_data / "trainPart1" / "train"
    writers = []
    for folder in ("Sample001", "Sample011", "Sample037"):  # "0", "A", "a"
        (tmp_path / "train" / folder).mkdir(parents=True)
        for path in sorted((real / folder).glob("*.png"))[:5]:
            shutil.copy(path, tmp_path / "train" / folder)
            writers.append(int(path.stem[-3:]))  # imgCCC-SSS: each class has its own 40 writers
    data = load(tmp_path, tmp_path, classes=["0", "A", "a"])
    assert len(data) == 15 and data.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert data.groups.tolist() == writers
    rows, cols = np.indices((28, 28))
    for image in data.images.astype(float):
        assert image.max() == 255 and image[0].max() == 0
        assert abs((rows * image).sum() / image.sum() - CENTRE) <= 0.5
        assert abs((cols * image).sum() / image.sum() - CENTRE) <= 0.5


def page(size: tuple[int, int], box: tuple[int, int, int, int], mode: str) -> Image.Image:
    """A white ``size`` (height, width) page in ``mode`` with a black ring filling ``box`` (top, left, bottom, right)."""
    pixels = np.full(size, 255, np.uint8)
    top, left, bottom, right = box
    pixels[top:bottom, left:right] = 0
    pixels[top + 12:bottom - 12, left + 12:right - 12] = 255  # strokes 12 px wide
    return Image.fromarray(pixels).convert(mode)


def test_page_geometry_survives_the_cache_and_no_file_name_field_reaches_the_model(tmp_path):
    """A big ``A`` high on one page, a small ``a`` low on another: the features say so, from the
    cache too; renaming the writers changes no input (writers are groups, never inputs)."""
    boxes = {"Sample011": (100, 300, 600, 700), "Sample037": (500, 500, 700, 650)}  # "A", "a"
    for writers, root in (((1, 2), tmp_path / "one"), ((7, 9), tmp_path / "other")):
        for (folder, box), mode in zip(boxes.items(), ("RGB", "L")):
            (root / folder).mkdir(parents=True)
            for writer in writers:
                page((900, 1200), box, mode).save(root / folder / f"img{folder[-3:]}-{writer:03d}.png")
    first = load_chars74k(tmp_path / "one", classes=["A", "a"], cache_dir=tmp_path / "cache")
    cached = load_chars74k(tmp_path / "one", classes=["A", "a"], cache_dir=tmp_path / "cache")
    log_height, log_width, centre_row, centre_col, log_stroke = first.geometry[0]
    assert np.exp(log_height) == pytest.approx(500 / 900, abs=0.01) and np.exp(log_width) == pytest.approx(400 / 900, abs=0.01)
    assert centre_row == pytest.approx(350 / 900 - 0.5, abs=0.01) and centre_col == pytest.approx(500 / 1200 - 0.5, abs=0.01)
    assert np.exp(log_stroke) * 900 == pytest.approx(12, rel=0.15)
    assert first.geometry[2, 0] < first.geometry[0, 0] - 0.8 and first.geometry[2, 2] > first.geometry[0, 2]  # small, low
    np.testing.assert_array_equal(cached.geometry, first.geometry)
    renamed = load_chars74k(tmp_path / "other", classes=["A", "a"], cache_dir=tmp_path / "cache")
    assert renamed.groups.tolist() != first.groups.tolist()
    assert set(first.inputs(page_geometry=True)) == {"image", "geometry"}
    for name, values in first.inputs(page_geometry=True).items():
        np.testing.assert_array_equal(renamed.inputs(page_geometry=True)[name], values)
