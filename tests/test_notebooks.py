"""The notebooks in ``notebooks/`` are committed without outputs and execute top to bottom (their own asserts,
e.g. the completeness checks, included)."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.integration  # real pre-trained models (MiniLM, SmolLM2)


def test_the_notebooks_are_there():
    assert {path.name for path in NOTEBOOKS} >= {"heatmaps.ipynb", "decoder.ipynb", "analysis.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_is_committed_without_outputs_and_executes(path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), f"clear the outputs of {path}"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits the environment
    # raises CellExecutionError, with the cell and its traceback, if any cell fails
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
