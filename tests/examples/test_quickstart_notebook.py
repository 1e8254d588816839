"""The example notebook runs top to bottom in a fresh kernel (as CI runs it), and the kernel is
shut down afterwards."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"


@pytest.mark.integration
def test_the_quickstart_notebook_runs_and_its_kernel_is_shut_down(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    kernel = KernelManager(kernel_name="python3")
    kernel.kernel_spec.argv[0] = sys.executable  # this interpreter, whatever kernels are installed
    client = NotebookClient(notebook, km=kernel, timeout=180, resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    finally:
        if kernel.has_kernel:
            kernel.shutdown_kernel(now=True)
    assert not kernel.is_alive()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    text = "".join(output.get("text", "") for output in outputs)
    assert "UNet (1, 2, 16, 16) ['hospital_a', 'hospital_b', 'hospital_c']" in text
    assert "Sequential" in text
    assert (tmp_path / "runs" / "quickstart" / "report.html").is_file()
