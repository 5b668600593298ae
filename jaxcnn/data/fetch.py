"""Resumable HTTP downloads: bytes go only to ``TARGET.part``, which is checked, then renamed.

An interrupted download leaves ``TARGET.part``; the next attempt continues it with an HTTP Range
request (a server that answers with the whole file restarts it). A complete part that fails its
check is deleted, since continuing it cannot fix it. Nothing half-written ever has TARGET's name.
"""

from __future__ import annotations

import http.client
import math
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from jaxcnn.errors import DataError
from jaxcnn.progress import progress_bar

MIB = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-\d+|\*)/(\d+)")


def part_path(target: Path) -> Path:
    """Where the download of ``target`` is kept until it is complete and checked."""
    return target.with_name(target.name + ".part")


def fetch_any(urls, target: str | os.PathLike, check: Callable[[Path, str], None], *,
              timeout: float = 60.0) -> Path:
    """``fetch`` from the first of ``urls`` that works; else one DataError naming each URL's problem."""
    problems = []
    for url in urls:
        try:
            return fetch(url, target, check, timeout=timeout)
        except DataError as error:
            problems.append(str(error))
    raise DataError(f"could not download {Path(target).name}: " + "; ".join(problems))


def fetch(url: str, target: str | os.PathLike, check: Callable[[Path, str], None], *, timeout: float = 60.0) -> Path:
    """Downloads ``url`` to ``target`` through ``target.part``, continuing a part an earlier attempt left.

    ``check(part, url)`` raises DataError when the complete file is wrong; the part is then deleted.
    Any other failure (offline, HTTP error, cut connection) is a DataError naming ``url``.
    """
    target = Path(target)
    part = part_path(target)
    try:
        _continue(url, part, timeout)
    except (OSError, http.client.HTTPException) as error:
        cause = error.reason if isinstance(error, urllib.error.URLError) and not isinstance(
            error, urllib.error.HTTPError) else error
        raise DataError(f"{url}: {cause}{_kept(part)}") from None
    try:
        check(part, url)
    except DataError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, target)
    return target


def _kept(part: Path) -> str:
    return f" ({part.name} kept: run again to resume)" if part.is_file() and part.stat().st_size else ""


def _continue(url: str, part: Path, timeout: float) -> None:
    """Appends the rest of ``url`` to ``part`` (all of it when ``part`` is absent or the server ignores Range)."""
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not offset:
            raise
        match = _CONTENT_RANGE.fullmatch(error.headers.get("Content-Range", ""))
        if match and int(match[2]) == offset:
            return  # the part is already the whole file
        part.unlink()  # longer than the file: not a prefix of it
        return _continue(url, part, timeout)
    with response:
        start = _start(response, offset, url)
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        received = start
        with open(part, "ab" if start else "wb") as out, \
                progress_bar(math.ceil(total / MIB) if total else None, part.name.removesuffix(".part"), unit="MiB",
                             initial=start // MIB) as bar:
            while chunk := response.read(MIB):
                out.write(chunk)
                received += len(chunk)
                bar.update(math.ceil(received / MIB) - bar.n)
    if total is not None and received != total:
        raise DataError(f"{url}: truncated download, {received} of {total} bytes{_kept(part)}")


def _start(response, offset: int, url: str) -> int:
    """The byte the response body starts at: ``offset`` for a 206 that continues the part, 0 for a 200."""
    if response.status != 206:
        return 0
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
    if not match or match[1] is None or int(match[1]) != offset:
        raise DataError(f"{url}: asked for bytes from {offset}, got Content-Range "
                        f"{response.headers.get('Content-Range')!r}")
    return offset
