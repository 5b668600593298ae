"""Where data and caches live: explicit flags first, then environment, then defaults."""

from __future__ import annotations

import os
from pathlib import Path

DOWNLOAD_HINT = "run `python -m jaxcnn download [--data-root DIR]` to fetch it, or point --data-root / JAXCNN_DATA at it"


def data_root(flag: str | os.PathLike | None = None) -> Path:
    """The data root: ``--data-root`` if given, else ``$JAXCNN_DATA``, else ``./data``."""
    return Path(flag or os.environ.get("JAXCNN_DATA") or "data")


def cache_dir(flag: str | os.PathLike | None = None) -> Path:
    """The cache directory: the flag, else ``$JAXCNN_CACHE``, else ``~/.cache/jaxcnn``.

    Caches never go into the data root, which may be read-only.
    """
    return Path(flag or os.environ.get("JAXCNN_CACHE") or Path.home() / ".cache" / "jaxcnn")
