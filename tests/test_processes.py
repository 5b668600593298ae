"""What only process 0 does, seen from the only process (two processes: tests/training/test_distributed.py)."""

import pytest

from jaxcnn.errors import DataError
from jaxcnn.processes import is_primary, on_primary


def test_the_only_process_is_primary_and_runs_the_work_with_its_own_error():
    assert is_primary()
    assert on_primary(lambda: 42, "the answer") == 42

    def fail():
        raise DataError("x.png: corrupt image")

    with pytest.raises(DataError, match="x.png: corrupt image"):
        on_primary(fail, "reading x.png")
