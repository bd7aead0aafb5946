"""The notebooks run top to bottom (tiny setting) and are committed with their outputs cleared."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from conftest import requires_mnist
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
RESULTS = Path(__file__).resolve().parents[2] / "experiments" / "results"


def _execute(name: str, monkeypatch, **env: str) -> nbformat.NotebookNode:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def _outputs_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") + str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def _images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


@pytest.mark.parametrize("name", ["quickstart.ipynb", "results.ipynb"])
def test_notebooks_are_committed_without_outputs(name):
    """Outputs are cleared in git, so diffs stay readable and nothing stale is shown."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@requires_mnist
def test_quickstart_notebook_trains_and_plots(monkeypatch):
    """Quickstart trains MNIST with TED (tiny), prints accuracy and saving, and draws two figures."""
    nb = _execute("quickstart.ipynb", monkeypatch, LIGHTNING_TED_TINY="1", WANDB_MODE="offline")
    text = _outputs_text(nb)
    assert "test accuracy" in text and "sample-passes saved" in text
    assert _images(nb) == 2


@pytest.mark.skipif(not any(RESULTS.glob("*.csv")), reason="experiments/results holds no compare tables")
def test_results_notebook_draws_every_task(monkeypatch):
    """The results notebook finds the compare tables and draws one figure per task."""
    nb = _execute("results.ipynb", monkeypatch, LIGHTNING_TED_RESULTS=str(RESULTS))
    tasks = [p for p in RESULTS.glob("*.csv") if "test_acc_std" in p.read_text().splitlines()[0]]
    assert tasks, "no compare.py tables in experiments/results"
    assert _images(nb) == len(tasks)
    assert all(p.stem in _outputs_text(nb) for p in tasks)
    assert os.environ["LIGHTNING_TED_RESULTS"] == str(RESULTS)
