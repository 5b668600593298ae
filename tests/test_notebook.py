"""``notebooks/study.ipynb``: stored without outputs, and run top to bottom in quick mode (``-m notebook``)."""

import ast
import os
import re
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "study.ipynb"


def test_the_notebook_is_valid_and_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat")  # the 'notebook' extra
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    for cell in code:
        ast.parse(cell.source)  # no cell that cannot even be parsed
    assert "runtime:" in code[0].source  # the first cell says which runtime it found


@pytest.mark.notebook
def test_the_notebook_runs_top_to_bottom_and_shows_the_report_s_figures(tmp_path, monkeypatch):
    """Quick mode against the staged data; ``$JAXCNN_STUDY_WORKDIR`` may hold a finished quick study
    (CI passes the slow suite's), which the notebook reuses; the executed copy goes to
    ``$JAXCNN_NOTEBOOK_OUT`` (default: a temporary folder)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    if not (SHARED_DATA / "trainPart1" / "train").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    workdir = Path(os.environ.get("JAXCNN_STUDY_WORKDIR") or tmp_path / "study").resolve()
    monkeypatch.setenv("JAXCNN_DATA", str(SHARED_DATA.resolve()))
    monkeypatch.setenv("JAXCNN_STUDY_WORKDIR", str(workdir))
    monkeypatch.setenv("JAXCNN_QUICK", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=3600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    out = Path(os.environ.get("JAXCNN_NOTEBOOK_OUT") or tmp_path / "study.executed.ipynb")
    nbformat.write(notebook, out)
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    images = sum("image/png" in output.get("data", {}) for output in outputs)
    text = "".join(output.get("text", "") for output in outputs)
    shown = re.search(r"(\d+) figures shown", text)
    assert shown and int(shown[1]) > 0 and images == int(shown[1]) + 1  # the report's figures, then the scans
    assert int(shown[1]) <= len(re.findall(r"!\[", (workdir / "REPORT.md").read_text()))
    assert "runtime: " in text and "the model" in text
