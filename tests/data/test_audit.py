"""The image audit: files, pixel statistics, duplicates inside a set and against another."""

import io

import numpy as np
import pytest
from PIL import Image

from jaxcnn.data import audit
from jaxcnn.data import noise
from jaxcnn.data.imagefiles import list_images


def _digits(n, seed=0):
    """Blob-like 28x28 images, different enough from one another to have no near-duplicates."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    for image in images:
        for _ in range(4):
            r, c = rng.integers(6, 22, 2)
            image[r - 3:r + 3, c - 2:c + 2] = 255
    return images


def _jpeg_roundtrip(image, quality=75):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())))


@pytest.mark.parametrize("quality", [50, 75, 90, 95])
def test_jpeg_quality_is_read_back_from_the_quantisation_table(quality):
    buffer = io.BytesIO()
    Image.fromarray(_digits(1)[0]).save(buffer, format="JPEG", quality=quality)
    with Image.open(buffer) as image:
        assert audit.jpeg_quality(image.quantization[0]) == quality


def test_file_audit_of_a_mac_zip_counts_folders_formats_and_mac_files(tmp_path):
    images, labels = _digits(30), np.arange(30) % 10
    archive = noise.write_task_set(images, labels, tmp_path / "set.zip", seed=0, as_zip=True)
    report = audit.file_audit(list_images(archive), {str(d): 3 for d in range(10)})
    assert report["is_zip"] and report["image_files"] == 30 and report["extensions"] == {"jpg": 30}
    assert report["formats"] == {"JPEG L 28x28": 30} and report["jpeg_quality_estimate"] == {75: 30}
    assert report["stray_files"]["mac"] == {"__MACOSX": 30, "appledouble": 30, "ds_store": 0}
    assert report["bytes_per_file"]["min"] > 100


def test_pixel_stats_measure_ink_and_its_place():
    images = np.zeros((2, 28, 28), np.uint8)
    images[:, 10:20, 4:8] = 255  # a 10x4 bar, centred at row 14.5, column 5.5
    stats = audit.pixel_stats(images)
    assert stats["ink_fraction"] == pytest.approx(40 / 784) and stats["mean_ink_intensity"] == 255
    assert stats["ink_height"] == 10 and stats["ink_width"] == 4
    assert stats["centre_row"] == pytest.approx(14.5) and stats["centre_col"] == pytest.approx(5.5)
    assert audit.pixel_stats(np.zeros((3, 28, 28), np.uint8))["blank_images"] == 3


def test_duplicates_find_a_jpeg_copy_of_a_test_image_and_exact_copies_inside():
    test = _digits(300, seed=1)
    data = _digits(200, seed=2)
    clean = audit.duplicates(data, test)
    assert clean["exact"] == 0 and clean["near"] == 0
    data[17] = _jpeg_roundtrip(test[123])  # leaked, through the JPEG encoder: not bit-identical
    data[40] = test[5]  # leaked exactly
    leaked = audit.duplicates(data, test)
    assert leaked["exact"] == 1 and leaked["near"] == 2
    assert sorted((i, j) for i, j, _ in leaked["examples"]) == [(17, 123), (40, 5)]
    data[99] = data[3]
    inside = audit.duplicates(data)
    assert inside["exact"] == 1 and inside["near"] == 2  # each of the pair finds the other


def test_nearest_finds_a_copy_of_a_thin_stroke_that_the_coarse_blocks_cannot_place():
    # bars two pixels wide at columns 12-13, 13-14 and 14-15 all fall in one 4x4 block column:
    # equal coarse means, so only the fine check tells them apart (MNIST's vertical ones do this)
    bars = np.zeros((3, 28, 28), np.uint8)
    for i, column in enumerate((12, 13, 14)):
        bars[i, 5:24, column:column + 2] = 255
    pool = np.concatenate([_digits(100), bars])
    copies = np.stack([_jpeg_roundtrip(bar) for bar in bars])
    index, distance = audit.nearest(copies, pool)
    assert index.tolist() == [100, 101, 102] and np.all(distance <= audit.NEAR)


def test_on_real_mnist_jpeg_copies_of_test_digits_are_found_and_nothing_else(shared_data):
    from jaxcnn.data.mnist import load_mnist
    train, test = load_mnist(shared_data, "train"), load_mnist(shared_data, "test")
    data = np.stack([_jpeg_roundtrip(image) for image in train.images[:600]])
    planted = np.arange(0, 600, 30)
    data[planted] = [_jpeg_roundtrip(image) for image in test.images[planted * 7]]
    found = audit.duplicates(data, test.images)
    assert found["near"] == len(planted) and found["exact"] == 0
    assert sorted(j for _, j, _ in found["examples"]) == sorted((planted * 7).tolist())[:10]
