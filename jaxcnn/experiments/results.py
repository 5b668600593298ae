"""A run's results file (``WORKDIR/results.json``, ``ablation.json``): written and read only through
here, stamped with the layout's version and the environment that wrote it.

Each part builds its own results and reads them back for its report sections (``partN.sections``);
a file of a version this jaxcnn cannot read is refused with one line that says what to rerun.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import TypedDict

from jaxcnn.errors import JaxcnnError
from jaxcnn.rundir import write_json

VERSION = 2  # 2: stamped with its version and environment; 1: the same layout, before the stamp
READABLE = (1, 2)
RESULTS_FILE = "results.json"  # in a part's (or cv's) work directory; the ablation writes ABLATION_FILE
ABLATION_FILE = "ablation.json"


class Stamped(TypedDict, total=False):
    """What ``write_results`` adds to every results file; each part's results type extends it."""

    version: int
    environment: dict


def environment() -> dict:
    """JAX, Flax and Python versions and the default device: what a results file records of its run."""
    import flax
    import jax
    device = jax.devices()[0]
    return {"jax": jax.__version__, "flax": flax.__version__, "backend": jax.default_backend(),
            "device_kind": device.device_kind, "device_count": jax.device_count(),
            "python": platform.python_version(), "platform": platform.platform()}


def write_results(path: Path, results: dict) -> dict:
    """Writes ``results`` to ``path`` (JSON) with ``version`` and ``environment``; returns what it wrote."""
    stamped = {"version": VERSION, **results, "environment": environment()}
    write_json(path, stamped)
    return stamped


def results_of(run_dir: Path) -> dict | None:
    """The results a run wrote in ``run_dir`` (None when it wrote none)."""
    return read_results(Path(run_dir) / RESULTS_FILE)


def read_results(path: Path) -> dict | None:
    """The results in ``path``, or None when it is not there; a file of another version is an error."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except ValueError as err:
        raise JaxcnnError(f"{path}: not a results file ({err}); run it again with --overwrite") from None
    version = results.get("version", 1) if isinstance(results, dict) else None
    if version not in READABLE:
        raise JaxcnnError(f"{path}: results of layout version {version}, this jaxcnn reads "
                          f"{', '.join(map(str, READABLE))}: run that part again with --overwrite")
    return results
