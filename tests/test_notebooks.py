"""The notebooks stay true: each runs top to bottom in a Jupyter kernel against the current library, and
is committed stripped (no outputs, no execution counts), so a diff shows only what a person wrote.

The run test executes each notebook with nbclient (``requirements-dev.txt`` brings nbclient and
ipykernel) in quick mode: ``STGCMA_NOTEBOOK_QUICK=1`` shrinks data sets and schedules, nothing else.
"""

import json
import os
import time
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
IDS = [p.name for p in NOTEBOOKS]
EXPECTED = {"quickstart.ipynb", "explain.ipynb", "train_synthav.ipynb"}
CELL_TIMEOUT_S = 600  # one cell; a whole notebook takes a few minutes on 2 CPU cores in quick mode
QUICK_ENV = "STGCMA_NOTEBOOK_QUICK"


def test_the_notebooks_are_there():
    assert EXPECTED <= set(IDS), f"missing notebooks: {sorted(EXPECTED - set(IDS))}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_committed_stripped(path):
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            assert "outputs" not in cell and "execution_count" not in cell, f"{path.name} cell {i}"
            continue
        assert cell["outputs"] == [], f"{path.name} cell {i} has outputs: strip them before committing"
        assert cell["execution_count"] is None, f"{path.name} cell {i} has an execution count"
        assert "".join(cell["source"]).strip(), f"{path.name} cell {i} is an empty code cell"
    assert "widgets" not in nb["metadata"], f"{path.name} keeps widget state in its metadata"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv(QUICK_ENV, "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "1"))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    started = time.perf_counter()
    try:
        client.execute()
    finally:
        nbformat.write(nb, tmp_path / path.name)  # the executed copy, to read when a cell failed
    seconds = time.perf_counter() - started
    images = sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
                 for out in cell.outputs)
    if any("matplotlib" in cell.source for cell in nb.cells if cell.cell_type == "code"):
        assert images > 0, f"{path.name} plots with matplotlib but showed no figure"
    print(f"{path.name}: {seconds:.0f} s, {images} figures")
