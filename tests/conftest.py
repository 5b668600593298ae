"""Shared fixtures: the real data root (or a skip) and small generators of synthetic image trees."""

from __future__ import annotations

import contextlib
import http.server
import io
import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from jaxcnn.data.dataset import ArrayDataset


def pytest_configure(config):
    """Reuse XLA compilations across test runs (the suite is mostly compile time on a CPU)."""
    import jax

    cache = os.environ.get("JAXCNN_TEST_COMPILE_CACHE")
    if not cache and getattr(config, "cache", None) is not None:  # absent with -p no:cacheprovider
        cache = str(config.cache.mkdir("jax-compile"))
    if not cache:
        return
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


@pytest.fixture(autouse=True)
def full_float32_in_equivalence_tests(request):
    """Equivalence tests compare programs at float32's own precision: on a GPU (Ampere and later)
    float32 convolutions and matrix products default to TF32, a 10-bit mantissa, so two programs
    differ by ~1e-3 there (seen on an H200: the vmapped population against each seed alone)."""
    if request.node.get_closest_marker("equivalence") is None:
        yield
        return
    import jax

    with jax.default_matmul_precision("highest"):
        yield


SHARED_DATA = Path(os.environ.get("JAXCNN_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture
def shared_data() -> Path:
    """The staged real data root ($JAXCNN_DATA or ../shared/data); skips the test if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def draw_glyph(label: int, writer: int = 0, size: tuple[int, int] = (28, 28), stroke: int = 3,
               box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """A black-on-white synthetic character: a polyline picked by ``label``, jittered by ``writer``.

    ``box`` (left, top, right, bottom) is where the glyph is drawn; default: the image less 3 px.
    """
    width, height = size
    left, top, right, bottom = box or (3, 3, width - 3, height - 3)
    shapes = [
        [(0.5, 0.0), (0.5, 1.0)],
        [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)],
        [(0.0, 1.0), (0.5, 0.0), (1.0, 1.0)],
        [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)],
        [(1.0, 0.0), (0.0, 0.5), (1.0, 1.0)],
    ]
    jitter = 0.05 * (writer % 3)
    points = [
        (left + (x + jitter * (1 - 2 * x)) * (right - left), top + y * (bottom - top))
        for x, y in shapes[label % len(shapes)]
    ]
    image = Image.new("L", size, 255)
    ImageDraw.Draw(image).line(points, fill=0, width=stroke, joint="curve")
    return image


@pytest.fixture
def glyph():
    """``draw_glyph`` as a fixture, for tests that draw their own characters."""
    return draw_glyph


@pytest.fixture
def make_chars74k():
    """A factory for a tiny Chars74K tree: ``make(root, classes=(1, 2, 3), writers=(1, 2, 3))``.

    ``classes`` are 1-based folder numbers; returns the folder holding the Sample folders.
    """

    def make(root: Path, classes=(1, 2, 3), writers=(1, 2, 3)) -> Path:
        for c in classes:
            folder = root / f"Sample{c:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for w in writers:
                draw_glyph(c, w).save(folder / f"img{c:03d}-{w:03d}.png")
        return root

    return make


@pytest.fixture
def zip_folder():
    """A factory: ``zip_folder(folder, zip_path, prefix="")`` zips a tree (folders included)."""

    def make(folder: Path, zip_path: Path, prefix: str = "") -> Path:
        with zipfile.ZipFile(zip_path, "w") as archive:
            for path in sorted(folder.rglob("*")):
                archive.write(path, prefix + path.relative_to(folder).as_posix() + ("/" if path.is_dir() else ""))
        return zip_path

    return make


@pytest.fixture
def png_bytes():
    """A factory: ``png_bytes(array_or_image, mode=None)`` -> the bytes of a PNG file."""

    def make(image, mode: str | None = None) -> bytes:
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image, mode) if mode else Image.fromarray(image)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    return make


@contextlib.contextmanager
def serve_locally(handler):
    """An HTTP server for ``handler`` on 127.0.0.1 at a free port; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def generated_root(tmp_path_factory):
    """A generated data root (``tests/generated.py``) and its MNIST checksum table."""
    from tests.generated import write_chars74k, write_mnist
    root = tmp_path_factory.mktemp("generated-data")
    write_chars74k(root, writers=6)
    return root, write_mnist(root, {"train": 3000, "test": 1000})


@pytest.fixture
def generated_data(generated_root, monkeypatch) -> Path:
    """The generated data root, with ``load_mnist`` verifying its files against their own checksums."""
    from jaxcnn.data import mnist
    root, table = generated_root
    monkeypatch.setitem(mnist.load_mnist.__kwdefaults__, "files", table)
    return root


def digits_dataset(n: int, seed: int = 0) -> ArrayDataset:
    """``n`` random 28x28 images labelled 0-9 in turn: data for tests of the training machinery."""
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.int32),
                        np.full(n, -1, np.int32), tuple("0123456789"))
