"""What part 3's tests share: the staged real data, and a reading of a diagnosis made up for the methods."""

from pathlib import Path

import numpy as np
import pytest

from jaxcnn.experiments.part3.methods import Reading
from tests.conftest import SHARED_DATA


@pytest.fixture(scope="module")
def real_data() -> Path:
    """The staged data root ($JAXCNN_DATA or ../shared/data), for a module-scoped run; skips if absent."""
    if not (SHARED_DATA / "mnist").is_dir() or not (SHARED_DATA / "trainPart1").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def views(kind: str, free_kind: str | None = None, permutation: bool = False) -> Reading:
    """What the methods read of a diagnosis: the two views' kinds, the oracle's mapping and its T."""
    return Reading(kinds={"oracle": kind, "oracle_free": free_kind or kind},
                   mapping=tuple(range(10)) if permutation else (0,) * 10, is_permutation=permutation,
                   transition=tuple(map(tuple, np.eye(10))))
