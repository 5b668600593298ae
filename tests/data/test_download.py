"""``python -m jaxcnn download`` against an HTTP server on 127.0.0.1 serving small archives made here."""

from __future__ import annotations

import functools
import http.server
import io
import re
import socket
import tarfile

import numpy as np
import pytest

from jaxcnn.cli import main
from jaxcnn.data import download
from jaxcnn.data.chars74k import load_chars74k
from jaxcnn.data.download import Chars74kArchive, download_all
from jaxcnn.data.mnist import load_mnist
from jaxcnn.errors import DataError
from tests.conftest import draw_glyph, serve_locally
from tests.data.test_mnist import GZ, SYNTHETIC, synthetic_files

CLASSES, WRITERS, TRAIN_WRITERS = 3, 5, 3


def png(label: int, writer: int) -> bytes:
    buffer = io.BytesIO()
    draw_glyph(label, writer).save(buffer, format="PNG")
    return buffer.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    tar.addfile(info, io.BytesIO(data))


def make_archive(drop=(), extra=()) -> bytes:
    """A tgz in the EnglishHnd layout: CLASSES x WRITERS images, a trajectory file and a list beside them."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for c in range(1, CLASSES + 1):
            for w in range(1, WRITERS + 1):
                if (c, w) not in drop:
                    add(tar, f"English/Hnd/Img/Sample{c:03d}/img{c:03d}-{w:03d}.png", png(c, w))
        add(tar, "English/Hnd/Trj/Sample001/img001-001.mat", b"not an image")
        add(tar, "English/Hnd/all.txt~", b"Img/Sample001/img001-001\n")
        for args in extra:
            add(tar, *args)
    return buffer.getvalue()


ARCHIVE = make_archive()


class Server(http.server.BaseHTTPRequestHandler):
    """``/good/NAME`` with Range support; ``/truncated/``, ``/corrupt/`` and ``/norange/`` variants; else 404."""

    files: dict = {}
    log: list = []

    def do_GET(self):
        kind, _, name = self.path.strip("/").partition("/")
        asked = self.headers.get("Range")
        if name not in Server.files or kind not in ("good", "truncated", "corrupt", "norange"):
            Server.log.append((self.path, asked, 404))
            self.send_error(404)
            return
        body = Server.files[name]
        if kind == "corrupt":
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1:]
        start = int(re.fullmatch(r"bytes=(\d+)-", asked)[1]) if asked and kind == "good" else 0
        if start >= len(body) > 0:
            Server.log.append((self.path, asked, 416))
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status = 206 if start else 200
        Server.log.append((self.path, asked, status))
        self.send_response(status)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start: len(body) // 2] if kind == "truncated" else body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def url():
    with serve_locally(Server) as base:
        yield base


@pytest.fixture(autouse=True)
def fresh_server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    Server.files = {"EnglishHnd.tgz": ARCHIVE, **GZ}
    Server.log.clear()


def spec(*urls) -> Chars74kArchive:
    return Chars74kArchive(urls=tuple(urls), classes=CLASSES, writers=WRITERS, train_writers=TRAIN_WRITERS)


def fetch_all(root, base, kind="good", mnist_kind="good"):
    return download_all(root, archive=spec(f"{base}/{kind}/EnglishHnd.tgz"), mirrors=[f"{base}/{mnist_kind}/"],
                        mnist_files=synthetic_files(), timeout=5)


def files_under(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_unpacks_writers_into_the_layout_the_study_reads(tmp_path, url):
    root = tmp_path / "data"
    lines = fetch_all(root, url)
    assert lines[0].startswith(f"Chars74K: each class's training writers in {root / 'trainPart1' / 'train'}")
    names = files_under(root)
    assert "trainPart1/train/Sample002/img002-003.png" in names and "testPart1/test/Sample003/img003-005.png" in names
    assert not [n for n in names if n.endswith(".part") or "Trj" in n or "all.txt" in n]
    classes = ["0", "1", "2"]
    train = load_chars74k(root / "trainPart1", classes=classes, cache_dir=tmp_path / "cache")
    test = load_chars74k(root / "testPart1", classes=classes, cache_dir=tmp_path / "cache")
    assert sorted(set(train.groups.tolist())) == [1, 2, 3] and sorted(set(test.groups.tolist())) == [4, 5]
    assert len(train) == CLASSES * TRAIN_WRITERS and len(test) == CLASSES * (WRITERS - TRAIN_WRITERS)
    np.testing.assert_array_equal(load_mnist(root, "test", files=synthetic_files()).labels, SYNTHETIC["test"][1])

    Server.log.clear()
    assert fetch_all(root, url)[0].endswith("(already there)")
    assert Server.log == []  # everything was there and valid: nothing fetched


def test_a_cut_download_is_kept_as_part_and_continued_with_a_range_request(tmp_path, url):
    root = tmp_path / "data"
    with pytest.raises(DataError) as caught:
        fetch_all(root, url, kind="truncated")
    message = str(caught.value)
    assert f"{url}/truncated/EnglishHnd.tgz: truncated download, {len(ARCHIVE) // 2} of {len(ARCHIVE)} bytes" in message
    assert "EnglishHnd.tgz.part kept: run again to resume" in message and "\n" not in message
    assert files_under(root) == ["EnglishHnd.tgz.part"]

    Server.log.clear()
    fetch_all(root, url)
    assert Server.log[0] == ("/good/EnglishHnd.tgz", f"bytes={len(ARCHIVE) // 2}-", 206)
    assert (root / "EnglishHnd.tgz").read_bytes() == ARCHIVE
    assert (root / "trainPart1" / "train" / "Sample001" / "img001-001.png").read_bytes() == png(1, 1)


def test_a_complete_part_is_checked_without_downloading_it_again(tmp_path, url):
    root = tmp_path / "data"
    root.mkdir()
    (root / "EnglishHnd.tgz.part").write_bytes(ARCHIVE)  # cut off after the last byte, before the rename
    fetch_all(root, url)
    assert Server.log[0] == ("/good/EnglishHnd.tgz", f"bytes={len(ARCHIVE)}-", 416)
    assert (root / "testPart1" / "test" / "Sample002").is_dir()


def test_a_server_that_ignores_range_restarts_the_part(tmp_path, url):
    root = tmp_path / "data"
    root.mkdir()
    (root / "EnglishHnd.tgz.part").write_bytes(b"stale bytes of another file")
    fetch_all(root, url, kind="norange")
    assert (root / "EnglishHnd.tgz").read_bytes() == ARCHIVE


@pytest.mark.parametrize("served, problem", [
    ("corrupt", "not a complete gzip tar archive"),
    ("cut", "not a complete gzip tar archive"),
    ("missing-image", "14 images in English/Hnd/Img, expected 3 classes x 5 writers = 15"),
    ("extra-writer", "img002-006.png is not one of Sample001..Sample003 x writers 1..5"),
    ("traversal", "member 'English/Hnd/Img/../../../../evil.png' points outside the archive"),
    ("absolute", "member '/tmp/evil.png' points outside the archive"),
    ("symlink", "English/Hnd/Img/Sample001/img001-001.png is not a regular file"),
])
def test_a_bad_archive_is_refused_and_nothing_is_left(tmp_path, url, served, problem):
    archives = {
        "corrupt": None,
        "cut": ARCHIVE[: len(ARCHIVE) - 200],
        "missing-image": make_archive(drop={(2, 4)}),
        "extra-writer": make_archive(extra=[("English/Hnd/Img/Sample002/img002-006.png", png(2, 6))]),
        "traversal": make_archive(extra=[("English/Hnd/Img/../../../../evil.png", b"x")]),
        "absolute": make_archive(extra=[("/tmp/evil.png", b"x")]),
        "symlink": make_archive(drop={(1, 1)}, extra=[("English/Hnd/Img/Sample001/img001-001.png", b"",
                                                       tarfile.SYMTYPE, "/etc/passwd")]),
    }
    if archives[served] is not None:
        Server.files["EnglishHnd.tgz"] = archives[served]
    root = tmp_path / "data"
    with pytest.raises(DataError) as caught:
        fetch_all(root, url, kind="corrupt" if served == "corrupt" else "good")
    message = str(caught.value)
    assert message.startswith("could not download EnglishHnd.tgz: ") and problem in message and "\n" not in message
    assert files_under(tmp_path) == []


def test_a_404_names_the_url_and_the_next_url_is_tried(tmp_path, url):
    root = tmp_path / "data"
    archive = spec(f"{url}/nowhere/EnglishHnd.tgz", f"{url}/good/EnglishHnd.tgz")
    download.download_chars74k(root, archive, timeout=5)
    assert [entry[2] for entry in Server.log] == [404, 200]
    with pytest.raises(DataError, match=f"{url}/nowhere/EnglishHnd.tgz: HTTP Error 404: Not Found$"):
        download.download_chars74k(tmp_path / "other", spec(f"{url}/nowhere/EnglishHnd.tgz"), timeout=5)
    assert not (tmp_path / "other").exists() or files_under(tmp_path / "other") == []


@pytest.mark.parametrize("have_chars74k", [False, True], ids=["nothing", "chars74k-there"])
def test_offline_download_exits_with_one_line_naming_the_url(tmp_path, monkeypatch, capsys, have_chars74k):
    base = f"http://127.0.0.1:{closed_port()}"
    root = tmp_path / "data"
    if have_chars74k:
        for top in ("trainPart1", "testPart1"):
            (root / top).mkdir(parents=True)
    monkeypatch.setattr(download, "download_all", functools.partial(
        download.download_all, archive=spec(f"{base}/EnglishHnd.tgz"), mirrors=[f"{base}/mnist/"],
        mnist_files=synthetic_files(), timeout=5))
    assert main(["download", "--data-root", str(root)]) != 0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    wanted = f"{base}/mnist/train-images-idx3-ubyte.gz" if have_chars74k else f"{base}/EnglishHnd.tgz"
    assert lines[0].startswith("error: could not download ") and f"{wanted}: " in lines[0]
    assert "Connection refused" in lines[0]
    assert [n for n in files_under(tmp_path) if not n.endswith(".part")] == []


def test_missing_part1_data_names_the_download_command(tmp_path):
    with pytest.raises(DataError, match=r"trainPart1: no such folder or zip file; run `python -m jaxcnn download"):
        load_chars74k(tmp_path / "trainPart1")


def test_evaluate_on_missing_test_writers_names_the_download_command(tmp_path, capsys):
    assert main(["evaluate", "--ckpt", str(tmp_path / "run"), "--data", str(tmp_path / "testPart1")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {tmp_path / 'testPart1'}: no such folder" in err
    assert "python -m jaxcnn download" in err



def test_data_already_there_is_kept_and_only_the_missing_side_is_unpacked_afresh(tmp_path, url):
    root = tmp_path / "data"
    (root / "trainPart1" / "train").mkdir(parents=True)
    (root / "trainPart1" / "train" / "mine.txt").write_text("the user's own copy")
    (root / "testPart1.part" / "test").mkdir(parents=True)  # left by an interrupted unpack
    (root / "testPart1.part" / "test" / "half-written.png").write_bytes(b"")
    fetch_all(root, url)
    assert [p.name for p in (root / "trainPart1" / "train").iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in (root / "testPart1" / "test").iterdir()) == ["Sample001", "Sample002", "Sample003"]
    assert not [n for n in files_under(root) if n.endswith(".part")]


def test_the_task_split_trains_40_writers_of_each_class_as_the_staged_training_set(shared_data):
    from jaxcnn.data.download import CHARS74K

    train = {(c, w) for c in range(1, 63) for w in range(1, 56) if CHARS74K.side(c, w) == "train"}
    assert len(train) == 62 * 40  # and so 62 * 15 = 930 test images, as the task's held-back set
    staged = {(int(p.name[3:6]), int(p.name[7:10])) for p in (shared_data / "trainPart1" / "train").glob("*/*.png")}
    assert staged == train
