"""``jaxcnn.predict`` and ``python -m jaxcnn predict``: any images, any layout, a row for every file."""

import csv
import dataclasses
import functools
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from jaxcnn.cli import main
from jaxcnn.config import NO_AUGMENT, ModelConfig, TrainConfig
from jaxcnn.data.chars74k import CLASS_NAMES, DIGIT_CLASSES, PREPROCESSORS, class_folder, load_chars74k
from jaxcnn.data.classfolders import load_class_folders, mnist_input
from jaxcnn.data.preprocess import stretch_to_box
from jaxcnn.evaluation.evaluate import member_probs
from jaxcnn.evaluation.predict import image_reader, predict
from jaxcnn.training.checkpoint import load_run
from jaxcnn.training.loop import fit
from tests.conftest import SHARED_DATA, digits_dataset, draw_glyph
from tests.generated import write_class_folders

CLASSES = ("0", "1", "A", "a")
WRITERS = (1, 2, 3, 4)
TINY = ModelConfig(widths=(4, 8), hidden=16)
PAGES = TrainConfig(seeds=(0, 1), epochs=1, batch_size=8, eval_batch_size=16, augment=NO_AUGMENT,
                    model=dataclasses.replace(TINY, page_geometry=True))
DIGITS = TrainConfig(seeds=(0,), epochs=1, batch_size=8, eval_batch_size=16, augment=NO_AUGMENT, model=TINY)


def page(label: int, writer: int) -> Image.Image:
    """A small black-on-white 'scan': a glyph drawn somewhere on a 60x80 page, sized by writer."""
    top = 10 + 6 * writer
    return draw_glyph(label, writer, size=(60, 80), box=(10 + 3 * writer, top, 40 + 2 * writer, top + 30))


def write_pages(root, classes=CLASSES):
    for c in classes:
        folder = root / class_folder(c)
        folder.mkdir(parents=True, exist_ok=True)
        for w in WRITERS:
            page(CLASS_NAMES.index(c), w).save(folder / f"img{CLASS_NAMES.index(c) + 1:03d}-{w:03d}.png")
    return root


@pytest.fixture(scope="module")
def page_run(tmp_path_factory):
    """``(run, Sample-folder tree)``: a part-1-like run (page geometry, preprocessing recorded)."""
    tmp = tmp_path_factory.mktemp("pages")
    folder = write_pages(tmp / "chars")
    data = load_chars74k(folder, classes=list(CLASSES), cache_dir=tmp / "cache")
    fit(data, data, PAGES, tmp / "run", meta={"preprocess": "mnist"})
    return tmp / "run", folder


@pytest.fixture(scope="module")
def digit_run(tmp_path_factory):
    """An MNIST-like run: ten digit classes, no page preprocessing recorded."""
    tmp = tmp_path_factory.mktemp("digits")
    fit(digits_dataset(40), None, DIGITS, tmp / "run")
    return tmp / "run"


def evaluate_probs(run, data, page_geometry: bool) -> np.ndarray:
    """The ensemble's probabilities as ``evaluate`` computes them for a loaded data set."""
    state, cfg, _, _ = load_run(run)
    return member_probs(state, data.inputs(page_geometry), cfg.eval_batch_size).mean(0)


def flat_zip(folder, zip_path):
    """Every image of a Sample-folder tree in a zip with no folders and no labels in the names
    (``page_07.png``, in a shuffled order); returns the zip and the original of each name."""
    files = sorted(folder.rglob("*.png"))
    order = np.random.default_rng(0).permutation(len(files))
    names = {f"page_{i:02d}.png": files[j] for i, j in enumerate(order)}
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name, original in names.items():
            archive.write(original, name)
    return zip_path, names


def test_a_flat_unlabelled_zip_gets_the_classes_evaluate_gives_in_the_layout(page_run, tmp_path):
    run, folder = page_run
    zipped, names = flat_zip(folder, tmp_path / "flat.zip")
    predictions = predict(run, zipped, top=2)
    data = load_chars74k(folder, classes=list(CLASSES), cache_dir=tmp_path / "cache")
    probs = evaluate_probs(run, data, page_geometry=True)
    order = sorted(folder.rglob("*.png"))  # the loader's order: by class folder, then name
    index = {path: i for i, path in enumerate(order)}
    assert len(predictions) == len(names) and all(p.ok for p in predictions)
    for p in predictions:
        expected = probs[index[names[p.source.rpartition("/")[2]]]]
        assert p.label == CLASSES[expected.argmax()]
        assert p.probability == pytest.approx(expected.max(), abs=1e-5)
        assert [name for name, _ in p.top] == [CLASSES[i] for i in np.argsort(-expected, kind="stable")[:2]]
        assert set(p.geometry) == {"log_height", "log_width", "centre_row", "centre_col", "log_stroke"}


def test_staged_scans_zipped_flat_get_the_classes_evaluate_gives_them(page_run, tmp_path):
    """The target on the real scans: four classes of the staged training set, copied in their layout
    and zipped flat without names, against ``evaluate``'s reading of the layout."""
    if not (SHARED_DATA / "trainPart1" / "train").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    folder = tmp_path / "scans"
    for c in CLASSES:
        shutil.copytree(SHARED_DATA / "trainPart1" / "train" / class_folder(c), folder / class_folder(c))
    files = sorted(folder.rglob("*.png"))[::5]  # every fifth scan: 32 of 160
    for extra in set(folder.rglob("*.png")) - set(files):
        extra.unlink()
    zipped, names = flat_zip(folder, tmp_path / "flat.zip")
    data = load_chars74k(folder, classes=list(CLASSES), cache_dir=tmp_path / "cache")
    expected = dict(zip(sorted(folder.rglob("*.png")), evaluate_probs(page_run[0], data, True).argmax(-1)))
    got = {names[p.source.rpartition("/")[2]]: p.label for p in predict(page_run[0], zipped)}
    assert got == {path: CLASSES[i] for path, i in expected.items()}


def test_a_prediction_comes_from_the_pixels_not_the_file_name(page_run, tmp_path):
    _, folder = page_run
    original = next(folder.rglob("img011-002.png"))  # an 'A' by writer 2
    renamed = tmp_path / "Sample037" / "img037-009.png"  # named as a 'a' by writer 9
    renamed.parent.mkdir()
    shutil.copy(original, renamed)
    first, second = predict(page_run[0], [original, renamed], top=4)
    assert first.top == second.top and first.geometry == second.geometry


def test_every_file_has_a_row_and_the_unreadable_are_counted(page_run, tmp_path, capsys):
    run, folder = page_run
    data = tmp_path / "mixed"
    (data / "deep" / "er").mkdir(parents=True)
    shutil.copy(next(folder.rglob("*.png")), data / "deep" / "er" / "good.png")
    good = (data / "deep" / "er" / "good.png").read_bytes()
    (data / "corrupt.png").write_bytes(good[: len(good) // 3])
    (data / "notes.txt").write_text("not a picture")
    Image.new("L", (60, 80), 255).save(data / "empty.png")
    out = tmp_path / "predictions.csv"
    assert main(["predict", "--ckpt", str(run), "--data", str(data), "--out", str(out), "--top", "2"]) == 0
    rows = list(csv.DictReader(out.open()))
    by_name = {row["path"].rpartition("/")[2]: row for row in rows}
    assert sorted(by_name) == ["corrupt.png", "empty.png", "good.png", "notes.txt"]
    assert by_name["good.png"]["class"] in CLASSES and by_name["good.png"]["reason"] == ""
    assert by_name["good.png"]["top2"] and by_name["good.png"]["log_height"]
    assert "not a readable image" in by_name["corrupt.png"]["reason"]
    assert by_name["notes.txt"]["reason"] == "not an image"
    assert by_name["empty.png"]["reason"].startswith("blank")
    assert all(by_name[n]["class"] == "" for n in ("corrupt.png", "empty.png", "notes.txt"))
    printed = capsys.readouterr().out
    assert "4 files: 1 predicted, 3 unreadable" in printed and f"predictions: {out}" in printed


def test_predict_refuses_a_missing_path_and_a_file_it_would_replace(page_run, tmp_path, capsys):
    run, folder = page_run
    assert main(["predict", "--ckpt", str(run), "--data", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path / "p.csv")]) == 2
    assert "no such image, folder or zip file" in capsys.readouterr().err
    notes = tmp_path / "notes.csv"
    notes.write_text("mine\n")
    assert main(["predict", "--ckpt", str(run), "--data", str(folder), "--out", str(notes)]) == 2
    assert "not a predictions table" in capsys.readouterr().err and notes.read_text() == "mine\n"
    assert main(["predict", "--ckpt", str(run), "--data", str(folder), "--out", str(run / "config.json")]) == 2
    assert main(["predict", "--ckpt", str(run), "--data", str(folder), "--top", "0", "--out",
                 str(tmp_path / "p.csv")]) == 2
    assert "--top must be at least 1" in capsys.readouterr().err


def test_an_mnist_run_reads_arrays_as_evaluate_reads_class_folders(digit_run, tmp_path):
    images = digits_dataset(12, seed=1).images
    folders = write_class_folders(images, np.arange(12) % 10, tmp_path / "classes")
    data = load_class_folders(folders, class_names=list(DIGIT_CLASSES), cache_dir=tmp_path / "cache")
    probs = evaluate_probs(digit_run, data, False)  # in the loader's order, which is the paths' order
    from_files = predict(digit_run, folders, top=10)
    from_arrays = predict(digit_run, images, top=10)
    assert [p.label for p in from_files] == [DIGIT_CLASSES[i] for i in probs.argmax(-1)]
    assert [p.probability for p in from_files] == pytest.approx(probs.max(-1), abs=1e-5)
    for p in from_files:
        same = from_arrays[int(p.source.rpartition("/")[2].removesuffix(".png"))]
        assert same.label == p.label and same.probability == pytest.approx(p.probability, abs=1e-5)
        assert p.geometry is None and len(p.top) == 10


def test_arrays_that_are_not_images_get_a_reason(digit_run):
    bad = [np.zeros((28, 28), np.uint8), np.full((28, 28), np.nan), np.zeros((2, 3, 4, 5)), np.ones((28, 28)) * 2]
    predictions = predict(digit_run, bad)
    assert [p.source for p in predictions] == ["array[0]", "array[1]", "array[2]", "array[3]"]
    assert predictions[0].reason.startswith("blank")
    assert "outside [0, 1]" in predictions[1].reason and "outside [0, 1]" in predictions[3].reason
    assert "not an image array" in predictions[2].reason


@pytest.mark.parametrize("meta, classes, geometry, expected", [
    ({}, DIGIT_CLASSES, False, mnist_input),  # an MNIST run
    ({"preprocess": "stretch"}, DIGIT_CLASSES, False, stretch_to_box),  # part 2's A, stretched
    ({}, CLASSES, False, PREPROCESSORS["mnist"]),  # characters: page scans, the default recorded
    ({}, DIGIT_CLASSES, True, PREPROCESSORS["mnist"]),  # page geometry: page scans
], ids=["mnist", "recorded", "characters", "geometry"])
def test_images_are_prepared_as_the_run_records(meta, classes, geometry, expected):
    model = ModelConfig(page_geometry=geometry)
    preprocess, page = image_reader(meta, model, classes)
    assert (preprocess.func if isinstance(preprocess, functools.partial) else preprocess) is expected
    assert (page is not None) == geometry
