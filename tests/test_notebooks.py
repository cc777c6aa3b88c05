"""Executes every examples/*.ipynb offline with nbclient, small data and one epoch.

Convention (stated in each notebook's first markdown cell): a code cell tagged `parameters`
defines `USE_MNIST`, `EPOCHS` and `SMALL`; this test inserts a cell right after it that sets
`USE_MNIST = False`, `EPOCHS = 1`, `SMALL = True`, and runs the notebook in a temporary directory.
"""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
OVERRIDES = "# injected by tests/test_notebooks.py\nUSE_MNIST = False\nEPOCHS = 1\nSMALL = True\n"


def test_examples_exist():
    assert any(nb.name == "quickstart.ipynb" for nb in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_offline(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    tagged = [i for i, cell in enumerate(nb.cells)
              if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one code cell tagged 'parameters'"
    source = nb.cells[tagged[0]].source
    for name in ("USE_MNIST", "EPOCHS", "SMALL"):
        assert f"{name} =" in source, f"{path.name}: the parameters cell must define {name}"
    nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(OVERRIDES))
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
