"""The documented Python API (forgetlab.api) and its example notebook, executed as a reader would."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import ROOT


def test_the_api_composes_trains_and_gives_the_metrics_a_tracked_run_logs():
    from forgetlab import api
    from forgetlab.config import ConfigError

    cfg = api.compose("task_sequence.n_tasks=2", "trainer.epochs_per_task=1", "seed=3")
    assert cfg.seed == 3 and cfg.task_sequence.n_tasks == 2
    result = api.train(cfg)
    assert result.accuracy_matrix.shape == (3, 2)
    final = api.final_metrics(result)
    assert final["final/acc"] == pytest.approx(np.mean(result.accuracy_matrix[-1]))
    (again,) = api.build(cfg).run()
    np.testing.assert_array_equal(again.accuracy_matrix, result.accuracy_matrix)
    with pytest.raises(ConfigError, match="Did you mean 'seed'"):
        api.compose("sed=1")


@pytest.mark.slow
def test_the_example_notebook_runs_from_top_to_bottom(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "examples" / "api.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = ["".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.get("outputs", []))
               for cell in notebook.cells if cell.cell_type == "code"]
    text = "\n".join(outputs)
    assert "Did you mean 'algorithm.lr'?" in text
    assert "final/acc" in text and "metrics.final/acc" in text
    assert not any(o.get("output_type") == "error" for cell in notebook.cells for o in cell.get("outputs", []))
