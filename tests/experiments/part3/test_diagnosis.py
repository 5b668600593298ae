"""Part 3's diagnosis alone: the three views of the folders (matched, oracle, oracle-free), how
they compare, and the readings of a model of the folder labels."""

import numpy as np
import pytest

from jaxcnn.data import noise
from jaxcnn.data.dataset import ArrayDataset
from jaxcnn.data.mnist import CLASS_NAMES as DIGITS
from jaxcnn.experiments import part3
from jaxcnn.experiments.part3 import diagnosis
from jaxcnn.experiments.part3.sources import load_noisy


def _posteriors(spec, n=4000, sharp=0.9, seed=0):
    """Held-out P(folder | image) of a folder model that learnt T's row of each image's digit, a
    little smoothed, and the folder labels drawn by ``spec``."""
    rng = np.random.default_rng(seed)
    digits = rng.integers(0, 10, n)
    T = noise.transition_matrix(spec, 10, seed)
    q = sharp * T[digits] + (1 - sharp) * rng.dirichlet(np.ones(10), n)
    return noise.corrupt_labels(digits, spec, seed), q


@pytest.mark.parametrize("spec, kind", [
    ("complementary", "complementary"), ("clean", "clean"), ("permutation", "clean"),
    ("permutation+symmetric:0.2", "symmetric"), ("symmetric:0.3", "symmetric"), ("pairflip:0.3", "pair_flip"),
    ("symmetric:0.9", "uninformative")])
def test_the_oracle_free_view_reads_the_posteriors_shape(spec, kind):
    folders, q = _posteriors(spec)
    free = diagnosis.free_diagnosis(folders, q)
    assert free["kind"] == kind, free
    assert free["anchor"] == ("least likely" if kind == "complementary" else "most likely")
    if kind == "complementary":
        assert free["folder_is_least_likely"] < 0.05  # the folder's own digit is never the one missing


@pytest.mark.parametrize("spec, kind", [("complementary", "complementary"), ("complementary+permutation", "complementary"),
                                        ("symmetric:0.9", "uninformative"), ("clean", "clean")])
def test_the_oracle_free_view_reads_a_weak_folder_model_right(spec, kind):
    # a folder model that has learnt only 15% of the way: a shallow hole, a low peak (for clean
    # folders 0.15 + 0.85/10: read from T as clean only because the peak lies off the flat band)
    folders, q = _posteriors(spec, n=3000, sharp=0.15 if kind != "clean" else 0.5)
    free = diagnosis.free_diagnosis(folders, q)
    assert free["kind"] == kind, free
    assert free["z_hole" if kind == "complementary" else "z_peak"] > (diagnosis.FREE_Z if kind != "uninformative" else -9)


def test_the_views_disagree_on_a_permutation_and_say_why():
    folders, q = _posteriors("permutation+symmetric:0.1")
    views = diagnosis.compare_views({"kind": "permutation"}, diagnosis.free_diagnosis(folders, q))
    assert not views["agree"] and "cannot see a permutation (as here)" in views["note"]
    assert diagnosis.compare_views({"kind": "complementary"}, {"kind": "complementary"})["agree"]


def test_the_oracle_view_reads_complementary_labels_and_renaming_inverts_a_permutation():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 10, 3000)
    probs = np.full((3000, 10), 0.02)
    probs[np.arange(3000), truth] = 0.82  # an oracle that is always right, 82% confident
    folders = noise.corrupt_labels(truth, "complementary", seed=3)
    diagnosed = diagnosis.diagnose(folders, probs, min_confidence=0.5)
    assert diagnosed["kind"] == "complementary" and diagnosed["mapping"] == list(range(10))
    assert diagnosed["hole_mass"] == 0.0 and sum(diagnosed["rows_seen"]) == 3000
    permuted = noise.corrupt_labels(truth, "permutation+symmetric:0.2", seed=3)
    diagnosed = diagnosis.diagnose(permuted, probs, min_confidence=0.5)
    assert diagnosed["kind"] == "permutation" and diagnosed["mapping"] == noise.derangement(10, 3).tolist()
    assert diagnosed["noise_rate"] == pytest.approx(0.2, abs=0.03)
    folder_logits = 10.0 * np.eye(10)[np.asarray(diagnosed["mapping"])[truth]][None]
    renamed = diagnosis.renamed_accuracy(folder_logits, truth, diagnosed["mapping"])
    assert renamed["ensemble_accuracy"] == 1.0 and np.mean(folder_logits[0].argmax(-1) == truth) == 0.0


def test_a_model_of_complementary_folders_is_right_by_its_least_likely_class():
    digits = np.arange(10).repeat(3)
    logits = np.log((1 - np.eye(10)[digits]) / 9 + 1e-3)[None]  # it learnt P(folder | x): all but the digit
    assert np.mean(logits[0].argmax(-1) == digits) == 0.0
    assert diagnosis.least_likely_accuracy(logits, digits)["ensemble_accuracy"] == 1.0


def test_the_matched_view_counts_the_images_in_their_own_digits_folder():
    rng = np.random.default_rng(0)
    train = ArrayDataset(rng.integers(0, 256, (2000, 28, 28), dtype=np.uint8), np.arange(2000, dtype=np.int32) % 10,
                         np.full(2000, -1, np.int32), DIGITS)
    order = rng.permutation(2000)[:1500]  # 1,500 of the training images, shuffled, in other digits' folders ...
    digits = train.labels[order]
    folders = (digits + rng.integers(1, 10, 1500)) % 10
    own = np.flatnonzero(digits == 3)[:2].tolist() + np.flatnonzero(digits == 7)[:1].tolist()
    folders[own] = digits[own]  # ... but for two threes and a seven
    noisy = np.clip(train.images[order].astype(int) + rng.integers(-2, 3, (1500, 28, 28)), 0, 255).astype(np.uint8)
    matched = diagnosis.matched_view(folders, noisy, train)
    assert matched["near_copies"] == 1500 and matched["distinct_nearest"] == 1500
    assert matched["own_folder"]["images"] == 3 and matched["own_folder"]["per_digit"] == [0, 0, 0, 2, 0, 0, 0, 1, 0, 0]
    assert matched["kind"] == "complementary"
    strangers = diagnosis.matched_view(folders, rng.integers(0, 256, (1500, 28, 28), dtype=np.uint8), train)
    assert strangers["near_copies"] == 0 and strangers["kind"] is None and "near copies" in strangers["reason"]


@pytest.mark.slow
def test_on_the_task_set_the_program_finds_mnist_train_and_the_images_in_their_own_folder(real_data, tmp_path):
    """The task's own set against what its file names tell (``image_NNNNNN.jpg`` is MNIST train's
    image NNNNNN): read here to check the program, which never reads a name."""
    from jaxcnn.data.audit import duplicates
    from jaxcnn.data.imagefiles import list_images
    from jaxcnn.data.mnist import load_mnist
    task = real_data / "mnistTask3.zip"
    if not task.is_file():
        pytest.skip(f"{task} not staged")
    noisy = load_noisy(part3.get_config(), task, cache_dir=tmp_path)
    train, test = load_mnist(real_data, "train"), load_mnist(real_data, "test")
    matched = diagnosis.matched_view(noisy.labels, noisy.images, train)
    names = [e.name for e in list_images(task).entries]  # the loader's order: folder by folder, as listed
    names = [n for digit in DIGITS for n in names if n.rpartition("/")[0].endswith(f"/{digit}")]
    numbers = np.array([int(n.rpartition("_")[2].removesuffix(".jpg")) for n in names])
    truth = train.labels[numbers]
    in_own = truth == noisy.labels
    assert matched["distinct_nearest"] == len(noisy) == 60000 and matched["near_copies"] > 0.99 * len(noisy)
    assert matched["own_folder"]["images"] == in_own.sum()
    assert matched["own_folder"]["per_digit"] == np.bincount(truth[in_own], minlength=10).tolist()
    assert matched["kind"] == "complementary" and matched["mapping"] == list(range(10))
    assert duplicates(noisy.images, test.images)["near"] == 0  # nothing of MNIST test: the test score is fair
