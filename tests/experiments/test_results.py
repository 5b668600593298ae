"""Results files: written and read through one module, stamped with their layout's version and environment."""

import json

import jax
import pytest

from jaxcnn.cli import main
from jaxcnn.errors import JaxcnnError
from jaxcnn.experiments.results import READABLE, VERSION, results_of, write_results


def test_results_are_stamped_with_their_version_and_environment(tmp_path):
    written = write_results(tmp_path / "results.json", {"config": {"epochs": 3}})
    assert written["version"] == VERSION and written["config"] == {"epochs": 3}
    assert written["environment"]["backend"] == jax.default_backend()
    assert results_of(tmp_path) == written and results_of(tmp_path / "elsewhere") is None


def test_results_before_the_stamp_are_read_as_the_first_layout(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"config": {}}))
    assert 1 in READABLE and results_of(tmp_path) == {"config": {}}


@pytest.mark.parametrize("content", [{"version": VERSION + 1, "config": {}}, [1, 2], "{not json"])
def test_results_of_another_layout_are_refused_in_one_line_that_says_what_to_rerun(tmp_path, content, capsys):
    (tmp_path / "part2").mkdir()
    (tmp_path / "part2" / "results.json").write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(JaxcnnError, match=r"part2/results.json: .*run (that part|it) again with --overwrite"):
        results_of(tmp_path / "part2")
    assert main(["report", "--workdir", str(tmp_path)]) == 2  # the report says so in one line
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "part2/results.json" in error and "\n" not in error
