"""The MNIST convention: inverted, cropped, fitted to 20 px, centred by mass in 28x28."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from jaxcnn.data.preprocess import CENTRE, NoInkError, keep_stroke_width, stretch_to_box, to_mnist_convention
from jaxcnn.errors import DataError


def gray(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) / 255


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    weights = image.astype(np.float64)
    rows, cols = np.indices(image.shape)
    return (rows * weights).sum() / weights.sum(), (cols * weights).sum() / weights.sum()


def ink_box(image: np.ndarray) -> tuple[int, int]:
    """(height, width) of the nonzero pixels."""
    rows, cols = np.nonzero(image)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 127, b > 127
    return (a & b).sum() / (a | b).sum()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def scan(glyph, label, stroke=20, box=(250, 150, 590, 490)):
    """A 1200x900 white page with the glyph drawn inside ``box``."""
    return gray(glyph(label, size=(1200, 900), stroke=stroke, box=box))


def test_output_is_uint8_28x28_white_ink_on_black(glyph):
    out = to_mnist_convention(gray(glyph(1)))
    assert out.dtype == np.uint8 and out.shape == (28, 28)
    assert out.max() == 255
    assert out[:4].max() == 0 and out[-4:].max() == 0 and out[:, :4].max() == 0 and out[:, -4:].max() == 0


@pytest.mark.parametrize("label", range(5))
@pytest.mark.parametrize("box", [(250, 150, 590, 490), (20, 30, 300, 200), (900, 600, 1180, 880)])
def test_centre_of_mass_is_the_grid_centre(glyph, label, box):
    out = to_mnist_convention(scan(glyph, label, box=box))
    com_y, com_x = centre_of_mass(out)
    assert abs(com_y - CENTRE) <= 0.5 and abs(com_x - CENTRE) <= 0.5
    assert max(ink_box(out)) <= 20


@pytest.mark.parametrize("shape, expected_long_axis", [((40, 400), 0), ((400, 40), 1)])
def test_aspect_ratio_is_kept(shape, expected_long_axis):
    page = Image.new("L", (1200, 900), 255)
    width, height = shape
    ImageDraw.Draw(page).rectangle([500, 300, 500 + width - 1, 300 + height - 1], fill=0)
    box = ink_box(to_mnist_convention(gray(page)))
    assert box[expected_long_axis] == 20
    assert box[1 - expected_long_axis] <= 4


def test_all_white_page_has_no_ink():
    with pytest.raises(DataError, match="no ink found"):
        to_mnist_convention(np.ones((900, 1200), np.float32))


def test_noisy_grey_page_has_no_ink():
    page = np.clip(0.7 + np.random.default_rng(0).normal(0, 0.03, (900, 1200)), 0, 1)
    with pytest.raises(NoInkError):
        to_mnist_convention(page)


def test_grey_paper_and_noise_give_the_clean_result(glyph):
    clean = scan(glyph, 2)
    dirty = 0.15 + 0.6 * clean + np.random.default_rng(0).normal(0, 0.03, clean.shape)
    assert correlation(to_mnist_convention(clean), to_mnist_convention(np.clip(dirty, 0, 1))) > 0.95


def test_dust_specks_do_not_stretch_the_box(glyph):
    clean = scan(glyph, 3)
    dusty = clean.copy()
    dusty[20:23, 20:23] = 0  # a 3x3 speck far from the character
    dusty[850:852, 1100:1102] = 0
    np.testing.assert_array_equal(to_mnist_convention(dusty), to_mnist_convention(clean))


@pytest.mark.parametrize("label", range(5))
def test_large_scan_matches_small_crop(glyph, label):
    big = to_mnist_convention(scan(glyph, label, stroke=20, box=(300, 200, 640, 540)))
    small = to_mnist_convention(gray(glyph(label, size=(40, 40), stroke=2, box=(3, 3, 37, 37))))
    assert iou(big, small) > 0.6
    assert correlation(big, small) > 0.8


def stroke_width(image: np.ndarray) -> float:
    """Mean stroke width of the ink (> 127) in pixels: 2 * area / perimeter."""
    mask = np.pad(image > 127, 1)
    return 2 * mask.sum() / (np.count_nonzero(np.diff(mask, axis=0)) + np.count_nonzero(np.diff(mask, axis=1)))


@pytest.mark.parametrize("label", [1, 2])
def test_thin_strokes_survive_a_large_downscale(glyph, label):
    thin = to_mnist_convention(scan(glyph, label, stroke=3))  # 3 px pen, 340 px character: ~0.2 px at 28x28
    thick = to_mnist_convention(scan(glyph, label, stroke=20))
    assert thin.max() == 255
    assert stroke_width(thin) >= 2.0
    assert iou(thin, thick) > 0.8


def ink_mass(image: np.ndarray) -> float:
    """Total ink in pixels of full intensity: for one shape fitted to 20 px, it grows with stroke width."""
    return image.sum() / 255


def test_keep_stroke_width_leaves_a_small_letters_thick_strokes_thicker(glyph):
    """A small glyph drawn with the same pen, once fitted to 20 px, has thicker strokes than a large
    one; thickening every stroke to 2.5 px evens that out, ``keep_stroke_width`` keeps it."""
    small = scan(glyph, 3, stroke=9, box=(250, 150, 370, 270))  # 120 px glyph: 1.5 px strokes at 20 px
    large = scan(glyph, 3, stroke=9, box=(250, 150, 590, 490))  # 340 px: 0.5 px
    kept = [ink_mass(keep_stroke_width(image)) for image in (small, large)]
    evened = [ink_mass(to_mnist_convention(image)) for image in (small, large)]
    assert kept[0] / kept[1] > 1.15
    assert abs(evened[0] / evened[1] - 1) < 0.05
    assert stroke_width(keep_stroke_width(large)) >= 0.9  # still visible: about a pixel wide


def test_real_scans_are_centred_and_fitted(shared_data):
    files = sorted((shared_data / "trainPart1" / "train").glob("Sample0[0-6]1/*-00[1-3].png"))
    assert len(files) >= 12
    for path in files:
        out = to_mnist_convention(gray(Image.open(path).convert("L")))  # the scans are RGB pages
        com_y, com_x = centre_of_mass(out)  # whole-pixel shifts, then uint8 rounding (~0.01 px)
        assert abs(com_y - CENTRE) <= 0.51 and abs(com_x - CENTRE) <= 0.51, path.name
        assert max(ink_box(out)) in (19, 20), path.name


@pytest.mark.parametrize("shape", [(40, 400), (400, 40), (150, 300)])
def test_stretch_fills_the_20x20_box_whatever_the_aspect(shape):
    """The plain baseline's input: a bar of any proportions anywhere on the page becomes the
    same 20x20 square of ink inside a 4 px margin."""
    page = Image.new("L", (1200, 900), 255)
    width, height = shape
    ImageDraw.Draw(page).rectangle([50, 600, 50 + width - 1, 600 + height - 1], fill=0)
    out = stretch_to_box(gray(page))
    assert out.dtype == np.uint8 and out.shape == (28, 28)
    assert (out[4:24, 4:24] > 127).all() and out[:4].max() == 0 and out[24:].max() == 0
    assert out[:, :4].max() == 0 and out[:, 24:].max() == 0


def test_rejects_colour_arrays():
    with pytest.raises(ValueError, match="2-D"):
        to_mnist_convention(np.ones((28, 28, 3), np.float32))


@pytest.mark.parametrize("size", [28, 32, 48, 64])
def test_crops_at_each_size_are_centred_and_fill_the_scaled_box(glyph, size):
    out = to_mnist_convention(scan(glyph, 0, stroke=6), size=size)
    assert out.shape == (size, size) and out.dtype == np.uint8 and out.max() == 255
    com_y, com_x = centre_of_mass(out)
    assert abs(com_y - (size - 1) / 2) <= 0.5 and abs(com_x - (size - 1) / 2) <= 0.5
    assert max(ink_box(out)) <= round(size * 20 / 28) + 1


def test_a_larger_crop_thickens_a_thin_stroke_less_so_loops_stay_open(glyph):
    """A thin tablet stroke thickened to 2.5 px of a 20-px box fills more of it than of a 46-px box."""
    ink = {size: (to_mnist_convention(scan(glyph, 0, stroke=4), size=size) > 127).mean() for size in (28, 64)}
    assert ink[64] < ink[28]
    assert ink[64] > 0  # the stroke is still visible at 64
