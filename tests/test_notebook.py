"""examples/notebook.ipynb run in a real Jupyter kernel (nbclient, ipykernel): the summary
shows once and the curves show as a PNG, with no ``%matplotlib inline``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient", reason="the examples extra installs nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "notebook.ipynb"
ROOT = str(NOTEBOOK.parent.parent)


@pytest.fixture(scope="module")
def executed():
    """The example notebook, every cell run in a fresh kernel that imports this xpnn."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Then pyplot's inline backend, as a user's own plots would start it: still one figure.
    notebook.cells.append(nbformat.v4.new_code_cell("import matplotlib.pyplot as plt"))
    notebook.cells.append(
        nbformat.v4.new_code_cell("plt.plot([1, 2])\nhistory.plot(title='again')")
    )
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = ROOT if not path else f"{ROOT}{os.pathsep}{path}"
    try:
        nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    finally:
        if path is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = path
    return notebook


def cell(notebook, last_line):
    """The code cell whose last line is ``last_line``."""
    code = [c for c in notebook.cells if c.cell_type == "code"]
    (found,) = [c for c in code if c.source.splitlines()[-1] == last_line]
    return found


def test_summary_on_a_cells_last_line_shows_once(executed):
    outputs = cell(executed, "model.summary()").outputs
    assert [o.output_type for o in outputs] == ["stream"]  # printed, no value shown again
    assert outputs[0].text.count("Total parameters: ") == 1


def test_history_plot_shows_a_png(executed):
    (output,) = cell(executed, "history.plot()").outputs
    assert output.output_type == "execute_result"
    assert output.data["image/png"]  # base64 of the PNG


def test_history_plot_shows_once_beside_pyplots_inline_backend(executed):
    outputs = cell(executed, "history.plot(title='again')").outputs
    kinds = [(o.output_type, "image/png" in o.get("data", {})) for o in outputs]
    # the curves once, as the cell's value, and the user's own pyplot figure once
    assert sorted(kinds) == [("display_data", True), ("execute_result", True)]
