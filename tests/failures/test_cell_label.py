"""A failed job names the cell that raised as JupyterLab shows it to the user.

Closes: the failure message names the output notebook's cell index ("Cell 4") instead of the user's cell
("In [3]").

Real parts: job_runner.run_notebook (the attempt runner both executors use) with papermill and a real
Python kernel, on a notebook with a parameters cell (papermill injects a cell after it, and an error banner
at the top of the output notebook: both shift the output's cell indices).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def notebook() -> dict:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("scale = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A notebook whose third code cell raises"),
        params,                                               # In [1]
        nbformat.v4.new_code_cell("x = 2 * scale"),           # In [2]
        nbformat.v4.new_markdown_cell("then it fails:"),
        nbformat.v4.new_code_cell("raise ValueError(f'bad scale {scale}')"),  # In [3]
        nbformat.v4.new_code_cell("print('never runs')"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_a_failing_third_code_cell_is_reported_as_in_3(tmp_path):
    """Closes: the failure names "Cell 4"-style output indices; it must say "In [3]"."""
    attempt = tmp_path / "attempt-1"
    attempt.mkdir()
    nbformat.write(nbformat.from_dict(notebook()), str(attempt / "input.ipynb"))
    (attempt / "spec.json").write_text(json.dumps({"parameters": {"scale": 7}, "kernel_name": "python3",
                                                   "output_link": "jobs/1/output"}))
    out = subprocess.run([sys.executable, "-m", "job_runner.run_notebook", str(attempt)], cwd=REPO,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    fail = json.loads((attempt / "result.json").read_text())["failure"]
    assert fail["class"] == "cell_error"
    assert fail["cell_label"] == "In [3]" and fail["code_cell"] == 3
    assert fail["message"] == "In [3] raised ValueError: bad scale 7"
    assert "Cell" not in fail["message"] and "cell 7" not in fail["message"]
    # the user's own notebook: the failing cell is its 5th cell (index 4)
    assert fail["input_cell_index"] == 4
    # the output notebook has two error banners and the injected parameters before it: cell_index points there
    output = json.loads((attempt / "output.ipynb").read_text())
    cell = output["cells"][fail["cell_index"]]
    assert "".join(cell["source"]).startswith("raise ValueError") and fail["cell_index"] == 7
    assert fail["link"] == f"jobs/1/output#cell={fail['cell_index']}"
    # what the kernel counted is not what the user sees: the injected cell ran as [2], this one as [4]
    assert cell["execution_count"] == 4
