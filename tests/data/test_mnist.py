"""MNIST: IDX parsing, checksum-verified loading, and downloads against a local HTTP server."""

import gzip
import hashlib
import http.server
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from jaxcnn.data import mnist
from jaxcnn.data.mnist import FILES, MnistFile, download_mnist, load_mnist, load_mnist_tfds
from jaxcnn.errors import DataError
from tests.conftest import SHARED_DATA, serve_locally

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file holding the uint8 ``array``."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def synthetic_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), np.uint8), rng.integers(0, 10, n).astype(np.uint8)


SYNTHETIC = {"train": synthetic_split(6, 0), "test": synthetic_split(4, 1)}
CONTENT = {
    entry.name: idx_bytes(array)
    for split, pair in FILES.items()
    for entry, array in zip(pair, SYNTHETIC[split])
}
GZ = {name: gzip.compress(content, mtime=0) for name, content in CONTENT.items()}


def synthetic_files() -> dict:
    """A file table with the real names and the checksums of the synthetic files."""
    return {
        split: tuple(
            MnistFile(entry.name, hashlib.md5(GZ[entry.name]).hexdigest(), hashlib.sha256(CONTENT[entry.name]).hexdigest())
            for entry in pair
        )
        for split, pair in FILES.items()
    }


# --- IDX parsing ---------------------------------------------------------------------------------


def read_idx(source: bytes | Path, name: str | None = None) -> np.ndarray:
    """An IDX file's array (gzip or raw), read as ``load_mnist`` reads each of its files."""
    name = name or (str(source) if isinstance(source, Path) else "<bytes>")
    data = mnist._read_bytes(source, name) if isinstance(source, Path) else source
    return mnist._parse_idx(mnist._decompressed(data, name), name)


def test_read_idx_reads_raw_and_gzip_alike():
    images = SYNTHETIC["train"][0]
    np.testing.assert_array_equal(read_idx(idx_bytes(images)), images)
    np.testing.assert_array_equal(read_idx(gzip.compress(idx_bytes(images))), images)


def test_read_idx_reads_a_path(tmp_path):
    labels = SYNTHETIC["test"][1]
    (tmp_path / "labels.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    result = read_idx(tmp_path / "labels.gz")
    assert result.dtype == np.uint8 and result.shape == (4,)
    np.testing.assert_array_equal(result, labels)


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + bytes(12), "bad IDX magic number 0x00000d01"),
        (b"\x01\x00\x08\x01" + (3).to_bytes(4, "big") + bytes(3), "bad IDX magic number 0x01000801"),
        (b"\x00\x00\x08", "too short for an IDX header"),
        (b"\x00\x00\x08\x03" + (10).to_bytes(4, "big"), "truncated IDX header"),
        (idx_bytes(np.zeros((5, 28, 28), np.uint8))[:-1], "truncated, 3919 data bytes where dimensions [5, 28, 28] need 3920"),
        (idx_bytes(np.zeros((5,), np.uint8)) + b"\x00\x00", "2 trailing bytes after the data of dimensions [5]"),
        (gzip.compress(idx_bytes(np.zeros(50, np.uint8)))[:-12], "bad gzip data"),
        (b"\x1f\x8b" + bytes(20), "bad gzip data"),
    ],
    ids=["dtype-code", "nonzero-prefix", "short", "truncated-header", "truncated-payload", "trailing", "cut-gzip", "bad-gzip"],
)
def test_read_idx_rejects_bad_files_with_one_line_naming_the_file(data, problem):
    with pytest.raises(DataError) as caught:
        read_idx(data, "some-file.gz")
    message = str(caught.value)
    assert message.startswith("some-file.gz: ") and problem in message
    assert "\n" not in message


def test_read_idx_reports_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="nothing.gz: cannot read"):
        read_idx(tmp_path / "nothing.gz")


# --- Loading -------------------------------------------------------------------------------------


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="shared MNIST data not present")
@pytest.mark.parametrize("split, counts, first_label", [("train", TRAIN_COUNTS, 5), ("test", TEST_COUNTS, 7)])
def test_load_mnist_reads_the_real_files(split, counts, first_label):
    dataset = load_mnist(SHARED_DATA, split)
    n = sum(counts)
    assert dataset.images.shape == (n, 28, 28) and dataset.images.dtype == np.uint8
    assert dataset.labels.shape == (n,) and dataset.labels.dtype == np.int32
    assert np.bincount(dataset.labels, minlength=10).tolist() == counts
    assert dataset.labels[0] == first_label
    assert (dataset.groups == -1).all() and dataset.class_names == tuple("0123456789")
    assert dataset.images.max() == 255 and np.median(dataset.images) == 0  # white ink on black


def write_synthetic(folder: Path, compressed: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in CONTENT:
        if compressed:
            (folder / name).write_bytes(GZ[name])
        else:
            (folder / name.removesuffix(".gz")).write_bytes(CONTENT[name])


@pytest.mark.parametrize("compressed", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("point_at", ["root", "mnist-folder"])
def test_load_mnist_accepts_the_root_or_the_folder_and_raw_or_gz(tmp_path, compressed, point_at):
    write_synthetic(tmp_path / "mnist", compressed)
    root = tmp_path if point_at == "root" else tmp_path / "mnist"
    for split, (images, labels) in SYNTHETIC.items():
        dataset = load_mnist(root, split, files=synthetic_files())
        np.testing.assert_array_equal(dataset.images, images)
        np.testing.assert_array_equal(dataset.labels, labels)
        assert dataset.labels.dtype == np.int32 and (dataset.groups == -1).all()


def test_load_mnist_names_the_missing_file_and_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as caught:
        load_mnist(tmp_path, "test")
    message = str(caught.value)
    assert "t10k-images-idx3-ubyte.gz" in message and str(tmp_path) in message
    assert "python -m jaxcnn download" in message and "JAXCNN_DATA" in message and "--data-root" in message


def test_load_mnist_rejects_content_that_fails_the_checksum(tmp_path):
    write_synthetic(tmp_path / "mnist", compressed=True)
    images, labels = SYNTHETIC["test"]
    altered = images.copy()
    altered[0, 0, 0] ^= 1
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(altered)))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: content SHA-256 [0-9a-f]{64} does not match"):
        load_mnist(tmp_path, "test", files=synthetic_files())


def test_load_mnist_rejects_labels_that_do_not_match_the_images(tmp_path):
    folder = tmp_path / "mnist"
    write_synthetic(folder, compressed=False)
    content = idx_bytes(np.array([1, 2, 3], np.uint8))  # 3 labels for 4 images
    (folder / "t10k-labels-idx1-ubyte").write_bytes(content)
    pair = synthetic_files()["test"]
    files = {"test": (pair[0], MnistFile(pair[1].name, "", hashlib.sha256(content).hexdigest()))}
    with pytest.raises(DataError, match="expected 4 labels, one per image"):
        load_mnist(tmp_path, "test", files=files)


# --- Downloading ---------------------------------------------------------------------------------


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    """Serves the synthetic .gz files under /good/, /corrupt/, /truncated/; anything else is a 404."""

    requests: list = []

    def do_GET(self):
        MirrorHandler.requests.append(self.path)
        kind, _, name = self.path.strip("/").partition("/")
        if name not in GZ or kind not in ("good", "corrupt", "truncated"):
            self.send_error(404)
            return
        body = GZ[name]
        if kind == "corrupt":
            body = body[:-9] + bytes([body[-9] ^ 0xFF]) + body[-8:]  # flip one byte inside the deflate data
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if kind == "truncated" else body)  # then the connection closes

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server_url():
    with serve_locally(MirrorHandler) as base:
        yield base


@pytest.fixture(autouse=True)
def no_proxy_for_localhost(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    MirrorHandler.requests.clear()


def test_download_fetches_files_that_load_as_the_source(tmp_path, server_url):
    dest = download_mnist(tmp_path / "mnist", mirrors=[f"{server_url}/good/"], timeout=5, files=synthetic_files())
    assert sorted(p.name for p in dest.iterdir()) == sorted(GZ)
    for split, (images, labels) in SYNTHETIC.items():
        dataset = load_mnist(tmp_path, split, files=synthetic_files())
        np.testing.assert_array_equal(dataset.images, images)
        np.testing.assert_array_equal(dataset.labels, labels)


@pytest.mark.parametrize(
    "kind, problem",
    [
        ("truncated", "truncated download"),
        ("corrupt", "does not match the published"),
        ("missing", "HTTP Error 404"),
    ],
)
def test_failed_download_names_the_file_and_leaves_at_most_a_part(tmp_path, server_url, kind, problem):
    dest = tmp_path / "mnist"
    with pytest.raises(DataError) as caught:
        download_mnist(dest, mirrors=[f"{server_url}/{kind}/"], timeout=5, files=synthetic_files())
    message = str(caught.value)
    assert message.startswith("could not download train-images-idx3-ubyte.gz: ")
    assert problem in message and "\n" not in message
    name = "train-images-idx3-ubyte.gz"
    left = {p.name: p.stat().st_size for p in dest.iterdir()}
    assert left == ({f"{name}.part": len(GZ[name]) // 2} if kind == "truncated" else {})  # kept to resume


def test_download_falls_back_to_the_next_mirror(tmp_path, server_url):
    mirrors = [f"{server_url}/truncated/", f"{server_url}/corrupt/", f"{server_url}/good/"]
    dest = download_mnist(tmp_path, mirrors=mirrors, timeout=5, files=synthetic_files())
    assert sorted(p.name for p in dest.iterdir()) == sorted(GZ)
    assert sum(path.startswith("/good/") for path in MirrorHandler.requests) == len(GZ)
    np.testing.assert_array_equal(load_mnist(dest, "test", files=synthetic_files()).images, SYNTHETIC["test"][0])


def test_download_keeps_valid_files_and_replaces_bad_ones(tmp_path, server_url):
    write_synthetic(tmp_path, compressed=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not a gzip file")
    download_mnist(tmp_path, mirrors=[f"{server_url}/good/"], timeout=5, files=synthetic_files())
    assert MirrorHandler.requests == ["/good/t10k-labels-idx1-ubyte.gz"]
    np.testing.assert_array_equal(load_mnist(tmp_path, "test", files=synthetic_files()).labels, SYNTHETIC["test"][1])


# --- tensorflow-datasets route (mocked: no network in tests) ----------------------------------------


def test_tfds_route_converts_to_an_array_dataset(monkeypatch):
    images, labels = SYNTHETIC["test"]
    calls = []

    def fake_load(name, **kwargs):
        calls.append((name, kwargs))
        return {"image": images[..., None], "label": labels.astype(np.int64)}

    fake_tfds = types.SimpleNamespace(load=fake_load, as_numpy=lambda tree: tree)
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds)
    dataset = load_mnist_tfds("test", data_dir="somewhere")
    assert calls == [("mnist", {"split": "test", "batch_size": -1, "data_dir": "somewhere"})]
    np.testing.assert_array_equal(dataset.images, images)
    assert dataset.labels.dtype == np.int32 and dataset.labels.tolist() == labels.tolist()


def test_tfds_route_without_tensorflow_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` fail
    with pytest.raises(DataError, match="load_mnist_tfds needs tensorflow"):
        load_mnist_tfds("test")


def test_importing_the_module_does_not_import_tfds():
    code = "import sys, jaxcnn.data.mnist; print('tensorflow_datasets' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
