"""Label corruption: specs, sampling, the folder writer, and recovering planted noise."""

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from jaxcnn.data import noise
from jaxcnn.errors import DataError
from jaxcnn.evaluation import transitions

K = 10


def _images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def _uniform_labels(n, seed=0):
    return np.random.default_rng(seed).integers(0, K, n)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("permutation", noise.CorruptionSpec(permutation=True)),
        ("symmetric:0.2", noise.CorruptionSpec(symmetric=0.2)),
        ("pairflip:0.45", noise.CorruptionSpec(pairflip=0.45)),
        ("permutation+symmetric:0.1", noise.CorruptionSpec(permutation=True, symmetric=0.1)),
        ("complementary", noise.CorruptionSpec(complementary=True)),
        ("permutation+complementary", noise.CorruptionSpec(permutation=True, complementary=True)),
        ("clean", noise.CorruptionSpec()),
    ],
)
def test_parse_corruption_and_canonical_string_round_trip(text, expected):
    spec = noise.parse_corruption(text)
    assert spec == expected
    assert noise.parse_corruption(str(spec)) == spec


@pytest.mark.parametrize(
    "text",
    ["", "gaussian:0.1", "symmetric", "symmetric:", "symmetric:abc", "symmetric:1.5", "pairflip:-0.1",
     "permutation:0.3", "complementary:0.5", "complementary+complementary", "permutation+permutation", "symmetric:0.1+symmetric:0.2", "permutation+"],
)
def test_bad_specs_raise_with_the_grammar(text):
    with pytest.raises(ValueError, match="symmetric:RATE"):
        noise.parse_corruption(text)


def test_derangement_has_no_fixed_points_and_depends_on_seed():
    perms = [noise.derangement(K, seed) for seed in range(200)]
    for perm in perms:
        assert sorted(perm.tolist()) == list(range(K))
        assert not np.any(perm == np.arange(K))
    assert len({tuple(p) for p in perms}) > 150


def test_transition_matrix_rows_sum_to_one_and_match_hand_values():
    T = noise.transition_matrix("pairflip:0.3", K, seed=0)
    np.testing.assert_allclose(T.sum(axis=1), 1.0)
    assert T[3, 3] == pytest.approx(0.7) and T[3, 4] == pytest.approx(0.3) and T[9, 0] == pytest.approx(0.3)
    S = noise.transition_matrix("symmetric:0.18", K, seed=0)
    assert S[2, 2] == pytest.approx(0.82) and S[2, 7] == pytest.approx(0.02)
    P = noise.transition_matrix("permutation", K, seed=4)
    np.testing.assert_array_equal(P.argmax(axis=1), noise.derangement(K, 4))


def test_complementary_labels_are_never_the_digit_and_uniform_over_the_others():
    labels = _uniform_labels(90_000, seed=4)
    observed = noise.corrupt_labels(labels, "complementary", seed=2)
    assert not np.any(observed == labels)
    measured = noise.empirical_transition(labels, observed, K)
    np.testing.assert_allclose(noise.transition_matrix("complementary", K), (1 - np.eye(K)) / (K - 1))
    assert np.abs(measured - (1 - np.eye(K)) / (K - 1)).max() < 0.02  # 9,000 a row: sd 0.0033
    # the new term draws last: adding it leaves the draws of the other terms as they were
    symmetric = noise.corrupt_labels(labels, "symmetric:0.3", seed=2)
    both = noise.corrupt_labels(labels, "symmetric:0.3+complementary", seed=2)
    assert not np.any(both == symmetric)


def test_corrupt_labels_is_deterministic_in_the_seed():
    labels = _uniform_labels(2000)
    a = noise.corrupt_labels(labels, "permutation+symmetric:0.3", seed=7)
    b = noise.corrupt_labels(labels, "permutation+symmetric:0.3", seed=7)
    c = noise.corrupt_labels(labels, "permutation+symmetric:0.3", seed=8)
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.3


@pytest.mark.parametrize(
    "spec", ["permutation", "symmetric:0.3", "pairflip:0.4", "permutation+symmetric:0.2",
             "pairflip:0.3+permutation", "symmetric:0.2+pairflip:0.2+permutation", "complementary",
             "complementary+permutation", "symmetric:0.1+complementary"]
)
def test_measured_transition_matches_transition_matrix(spec):
    labels = _uniform_labels(100_000, seed=1)
    observed = noise.corrupt_labels(labels, spec, seed=3)
    measured = noise.empirical_transition(labels, observed, K)
    assert transitions.transition_error(measured, noise.transition_matrix(spec, K, seed=3))["max_abs_error"] < 0.02


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_task_form_is_jpegs_under_mnisttask_with_shuffled_numbers(tmp_path):
    images, labels = _images(50), _uniform_labels(50, seed=2)
    out = noise.write_task_set(images, labels, tmp_path / "set", seed=3)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert len(files) == 50 and [p.name for p in out.iterdir()] == ["mnistTask"]
    names = noise.task_names(labels, seed=3)
    assert sorted(names) == files and names[0].startswith(f"mnistTask/{labels[0]}/image_")
    numbers = [int(n.rsplit("_", 1)[1][:-4]) for n in names]
    assert sorted(numbers) == list(range(50)) and numbers != list(range(50))
    with Image.open(out / names[7]) as image:
        assert image.format == "JPEG" and image.mode == "L" and image.size == (28, 28)
        assert np.abs(np.asarray(image, float) - images[7]).mean() < 40  # lossy, but the same image
    assert [p.name for p in tmp_path.iterdir()] == ["set"]  # no temp folder left behind


def test_the_zip_form_has_mac_appledouble_members_and_loads_like_the_folder(tmp_path):
    from jaxcnn.data.classfolders import load_class_folders
    from jaxcnn.data.imagefiles import list_images
    images, labels = _images(40), np.repeat(np.arange(K), 4)
    folder = noise.write_task_set(images, labels, tmp_path / "set", seed=1)
    archive = noise.write_task_set(images, labels, tmp_path / "set.zip", seed=1, as_zip=True)
    with zipfile.ZipFile(archive) as z:
        members = z.namelist()
        assert "mnistTask/3/" in members
        mac = [m for m in members if m.startswith("__MACOSX/")]
        assert len(mac) == 40 and all("/._image_" in m for m in mac)
        assert z.read(mac[0])[:4] == b"\x00\x05\x16\x07"
    listing = list_images(archive)
    assert len(listing.entries) == 40 and any(name == "__MACOSX/" for name, _ in listing.skipped)
    names = tuple(str(d) for d in range(K))
    from_zip = load_class_folders(archive, class_names=names, cache_dir=tmp_path / "cache", exact=True)
    from_folder = load_class_folders(folder, class_names=names, cache_dir=tmp_path / "cache", exact=True)
    np.testing.assert_array_equal(from_zip.images, from_folder.images)
    np.testing.assert_array_equal(np.bincount(from_zip.labels), [4] * K)
    with pytest.raises(DataError, match="not empty"):
        noise.write_task_set(images, labels, archive, seed=1, as_zip=True)


def test_make_noisy_mnist_is_reproducible_and_keeps_the_truth_outside(tmp_path):
    images, labels = _images(200), _uniform_labels(200)
    summary = noise.make_noisy_mnist(images, labels, tmp_path / "a", "permutation+symmetric:0.2", seed=5)
    noise.make_noisy_mnist(images, labels, tmp_path / "b", "permutation+symmetric:0.2", seed=5)
    noise.make_noisy_mnist(images, labels, tmp_path / "c", "permutation+symmetric:0.2", seed=6)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert _tree(tmp_path / "a").keys() != _tree(tmp_path / "c").keys()

    truth_file = tmp_path / "a.truth.json"
    assert summary["truth_file"] == str(truth_file)
    assert not any(p.suffix == ".json" for p in (tmp_path / "a").rglob("*"))
    truth = json.loads(truth_file.read_text())
    np.testing.assert_allclose(truth["transition_matrix"], noise.transition_matrix("permutation+symmetric:0.2", K, 5))
    assert truth["permutation"] == noise.derangement(K, 5).tolist()
    assert truth["spec"] == "symmetric:0.2+permutation" and truth["seed"] == 5
    assert abs(truth["measured_noise_rate"] - 0.2) < 0.1
    assert sum(summary["observed_class_counts"]) == 200


def _oracle_probs(true_labels, accuracy, rng):
    """Probabilities of a fake clean-data model: right with ``accuracy``, and more confident when right."""
    n = len(true_labels)
    right = rng.random(n) < accuracy
    predicted = np.where(right, true_labels, (true_labels + rng.integers(1, K, n)) % K)
    confidence = np.where(right, rng.uniform(0.6, 1.0, n), rng.uniform(0.3, 0.7, n))
    probs = np.tile(((1 - confidence) / (K - 1))[:, None], (1, K))
    probs[np.arange(n), predicted] = confidence
    return probs


def test_estimator_recovers_a_planted_permutation_and_noise_rate():
    rng = np.random.default_rng(0)
    true_labels = _uniform_labels(20_000, seed=3)
    spec, seed = "permutation+symmetric:0.2", 11
    observed = noise.corrupt_labels(true_labels, spec, seed)
    probs = _oracle_probs(true_labels, 0.95, rng)
    T_true = noise.transition_matrix(spec, K, seed)

    T_hard = transitions.estimate_transition(observed, probs.argmax(axis=1), num_classes=K)
    T_confident = transitions.estimate_transition(observed, probs, min_confidence=0.7)
    description = transitions.describe_transition(T_hard)
    assert description["mapping"] == noise.derangement(K, seed).tolist()
    assert description["is_permutation"] and description["is_derangement"]
    assert abs(description["noise_rate"] - 0.2) < 0.05
    assert description["pattern"] == "symmetric-like"
    assert transitions.transition_error(T_hard, T_true)["max_abs_error"] < 0.1
    assert transitions.transition_error(T_confident, T_true)["mean_abs_error"] < transitions.transition_error(T_hard, T_true)["mean_abs_error"]
    corrected = transitions.correct_labels(observed, description["mapping"])
    assert np.mean(corrected == true_labels) == pytest.approx(0.8, abs=0.02)


def test_describe_transition_tells_pairflip_from_symmetric():
    pairflip = transitions.describe_transition(noise.transition_matrix("pairflip:0.3", K, 0))
    assert pairflip["pattern"] == "pairflip-like" and pairflip["mapping"] == list(range(K))
    assert pairflip["secondary"] == [(i + 1) % K for i in range(K)]
    assert not pairflip["is_derangement"] and pairflip["cycles"] == "()"
    assert transitions.describe_transition(np.eye(K))["pattern"] == "none"
    assert transitions.describe_transition(noise.transition_matrix("symmetric:0.3", K, 0))["pattern"] == "symmetric-like"


def test_describe_transition_flags_a_non_bijective_mapping():
    T = np.eye(K)
    T[1] = T[0]
    description = transitions.describe_transition(T)
    assert not description["is_permutation"] and description["cycles"] is None


def test_cycle_notation_and_inverse_mapping():
    assert transitions.cycle_notation([1, 2, 0, 4, 3, 5]) == "(0 1 2)(3 4)"
    mapping = noise.derangement(K, 2)
    np.testing.assert_array_equal(transitions.inverse_mapping(mapping)[mapping], np.arange(K))
    with pytest.raises(ValueError, match="not a permutation"):
        transitions.inverse_mapping([0, 0, 1])


def test_estimate_transition_raises_when_a_class_has_no_confident_examples():
    probs = np.full((4, K), 0.1)
    with pytest.raises(ValueError, match="min_confidence"):
        transitions.estimate_transition(np.zeros(4, int), probs, min_confidence=0.5)


@pytest.mark.parametrize("layout, message", [
    ({"mnistTask/a/x.jpg": "image"} | {f"mnistTask/{d}/x.jpg": "image" for d in range(K)}, "mnistTask/a: not one of the class folders"),
    ({f"mnistTask/{d}/x.jpg": "image" for d in range(K) if d != 4}, "mnistTask/4: missing class folder"),
    ({f"mnistTask/{d}/x.jpg": "image" for d in range(K) if d != 2} | {"mnistTask/2/notes.txt": "text"},
     "mnistTask/2: class folder for class '2' has no images \\(only 1 files that are not images\\)"),
])
def test_bad_layouts_fail_with_one_line_naming_the_folder(tmp_path, layout, message):
    from jaxcnn.data.classfolders import load_class_folders
    for name, kind in layout.items():
        path = tmp_path / "set" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(noise._jpeg(_images(1)[0]) if kind == "image" else b"notes")
    with pytest.raises(DataError, match=message) as error:
        load_class_folders(tmp_path / "set", class_names=tuple(str(d) for d in range(K)), exact=True,
                           cache_dir=tmp_path / "cache")
    assert "\n" not in str(error.value)


def test_an_empty_class_folder_is_named(tmp_path):
    from jaxcnn.data.classfolders import load_class_folders
    noise.write_task_set(_images(20), np.repeat(np.arange(K), 2), tmp_path / "set", seed=0)
    for f in (tmp_path / "set" / "mnistTask" / "7").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"mnistTask/7: class folder for class '7' has no images \(nothing\)"):
        load_class_folders(tmp_path / "set", class_names=tuple(str(d) for d in range(K)), exact=True,
                           cache_dir=tmp_path / "cache")


def _estimated(spec, rows_seen, seed):
    """T estimated from ``rows_seen`` draws a row, as noisy as a quick run's estimate, and the counts."""
    rng = np.random.default_rng(seed)
    counts = np.array([rng.multinomial(rows_seen, row) for row in noise.transition_matrix(spec, K, seed)])
    return counts / counts.sum(axis=1, keepdims=True), counts.sum(axis=1)


KIND_OF = {
    "clean": "clean", "permutation": "permutation", "permutation+symmetric:0.1": "permutation",
    "permutation+symmetric:0.3": "permutation", "pairflip:0.2+permutation": "permutation",
    "complementary": "complementary", "complementary+permutation": "complementary",
    "pairflip:0.3": "pair_flip", "pairflip:0.4": "pair_flip",
    "symmetric:0.1": "symmetric", "symmetric:0.3": "symmetric", "symmetric:0.6": "symmetric",
    "symmetric:0.9": "uninformative",  # for K = 10, the uniform matrix
}


@pytest.mark.parametrize("spec", KIND_OF)
@pytest.mark.parametrize("rows_seen", [None, 100, 300, 6000])
def test_classify_transition_names_each_kind_exact_and_estimated_from_few_samples(spec, rows_seen):
    for seed in range(5):
        T, seen = (noise.transition_matrix(spec, K, seed), None) if rows_seen is None else _estimated(spec, rows_seen, seed)
        verdict = transitions.classify_transition(T, seen)
        assert verdict["kind"] == KIND_OF[spec], (seed, verdict)
    if KIND_OF[spec] in ("permutation", "clean"):
        assert verdict["mapping"] == noise.transition_matrix(spec, K, seed).argmax(1).tolist()
    if spec == "complementary":
        assert verdict["mapping"] == list(range(K)) and verdict["noise_rate"] < 0.01
        assert verdict["hole_mass"] < 0.01 and abs(verdict["peak_mass"] - 1 / (K - 1)) < 0.1


def test_classify_transition_at_its_boundaries():
    eye, flat = np.eye(K), np.full((K, K), 1 / K)
    symmetric = lambda a: a * eye + (1 - a) * (1 - eye) / (K - 1)  # a on the diagonal, the rest even
    kind = lambda T, seen=None: transitions.classify_transition(T, seen)["kind"]
    # the noise off a bijective mapping: just under CLEAN_MAX_NOISE is clean, just over symmetric
    assert kind(symmetric(1 - transitions.CLEAN_MAX_NOISE + 0.005)) == "clean"
    assert kind(symmetric(1 - transitions.CLEAN_MAX_NOISE - 0.005)) == "symmetric"
    # the diagonal mass: above 1/K + 1/(2K) a peak, below 1/K - 1/(2K) a hole, between them flat
    assert kind(symmetric(0.16)) == "symmetric" and kind(symmetric(0.14)) == "uninformative"
    assert kind(symmetric(0.06)) == "uninformative" and kind(symmetric(0.04)) == "complementary"
    # fewer samples widen the flat band: 0.16 on the diagonal from 60 draws a row is not yet a peak
    assert kind(symmetric(0.16), np.full(K, 60)) == "uninformative"
    assert kind(flat) == "uninformative"
    # pair flips need both the share and the amount
    pair = lambda r: (1 - r) * eye + r * np.roll(eye, 1, axis=1)
    assert kind(pair(0.16)) == "pair_flip" and kind(pair(0.14)) == "mixed"
    half = pair(0.3) * 0.6 + symmetric(0.7) * 0.4  # 40% of the off-mass even: share ~0.68
    assert kind(half) == "pair_flip"
    # two digits in one folder: not a permutation, not a kind of its own
    merged = eye.copy()
    merged[1] = merged[0]
    assert kind(merged) == "mixed"
    # half the rows complementary, half clean
    rows = np.where(np.arange(K)[:, None] < K // 2, eye, (1 - eye) / (K - 1))
    assert kind(rows) == "mixed"
