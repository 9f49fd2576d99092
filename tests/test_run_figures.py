"""The run's figures have a fixed layout (margins from the measured labels, no constrained layout):
whatever the task names, every label must stay inside the PNG."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from forgetlab.tracking import run_figures
from forgetlab.trainer import EvalPoint, Probe, TrainingResult


def result_with(task_names: list[str], points_per_stage: int = 4) -> run_figures.RunCurves:
    n = len(task_names)
    rng = np.random.default_rng(0)
    points = [EvalPoint(0, 0, -1, True, rng.random(n), rng.random(n), np.zeros(1, bool), np.zeros(1), np.nan, 0)]
    for stage in range(n):
        for k in range(1, points_per_stage + 1):
            seen = 1000 * stage + 250 * k
            points.append(EvalPoint(seen, seen, stage, k == points_per_stage, rng.random(n), rng.random(n),
                                    np.zeros(1, bool), np.zeros(1), 0.5, stage + 1))
    probe = Probe(np.zeros(1, int), np.zeros(1, int), np.zeros(1, int))
    return run_figures.RunCurves.of(TrainingResult(task_names, points, probe, np.full((1, 1), -1)))


def drawn_outside_the_figure(fig) -> list[str]:
    """The axes whose drawn artists (tick labels, axis labels, title, legend, texts) reach past the
    figure's edge, with their extent and the figure's, in pixels."""
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    frame = fig.bbox
    outside = []
    for ax in fig.axes:
        box = ax.get_tightbbox(renderer)
        if box.x0 < frame.x0 - 1 or box.x1 > frame.x1 + 1 or box.y0 < frame.y0 - 1 or box.y1 > frame.y1 + 1:
            outside.append(f"{ax.get_label() or ax}: {box.extents} beyond {frame.extents}")
    return outside


@pytest.mark.parametrize("names", [
    ["digits_01", "digits_23"],
    [f"digits_{2 * i}{2 * i + 1}" for i in range(5)],
    ["permuted_mnist_with_a_very_long_name_0", "b", "c", "permuted_mnist_with_a_very_long_name_3", "e", "f"],
])
@pytest.mark.parametrize("draw", [run_figures.task_accuracy_figure, run_figures.accuracy_matrix_figure])
def test_every_label_of_a_run_figure_lies_inside_the_png(tmp_path, monkeypatch, names, draw):
    figures = []
    original = run_figures.new_figure

    def keep(*args):
        fig, canvas = original(*args)
        figures.append(fig)
        return fig, canvas

    monkeypatch.setattr(run_figures, "new_figure", keep)
    path = draw(result_with(names), "backprop·split_digits·class·s0", tmp_path / "figure.png")
    (fig,) = figures
    assert drawn_outside_the_figure(fig) == []
    with Image.open(path) as image:
        assert image.size == pytest.approx(tuple(v * run_figures.DPI for v in fig.get_size_inches()), abs=1)


def test_long_task_names_widen_the_figure_not_shrink_the_axes(tmp_path, monkeypatch):
    sizes = {}
    original = run_figures.new_figure

    for label, names in (("short", ["a", "b"]), ("long", ["a task with a long name", "b"])):
        figures = []
        monkeypatch.setattr(run_figures, "new_figure", lambda *a: figures.append(original(*a)) or figures[-1])
        run_figures.task_accuracy_figure(result_with(names), "t", tmp_path / f"{label}.png")
        fig, _ = figures[0]
        (ax,) = fig.axes
        sizes[label] = fig.get_size_inches()[0], ax.get_position().width * fig.get_size_inches()[0]
    assert sizes["long"][0] > sizes["short"][0] + 0.5
    assert sizes["long"][1] == pytest.approx(sizes["short"][1])


def test_the_curves_read_back_from_a_runs_artifacts_are_those_it_trained(tmp_path):
    from forgetlab.tracking.mlflow_run import write_eval_artifacts

    names = ["digits_01", "digits_23", "digits_45"]
    n = len(names)
    rng = np.random.default_rng(1)
    points = [EvalPoint(0, 0, -1, True, rng.random(n), rng.random(n), np.zeros(2, bool), np.zeros(2), np.nan, 0)]
    for stage in range(n):
        for k in (1, 2, 3):
            seen = 300 * stage + 100 * k
            points.append(EvalPoint(seen, seen // 2, stage, k == 3, rng.random(n), rng.random(n), np.ones(2, bool),
                                    np.ones(2), 0.5, stage + 1))
    result = TrainingResult(names, points, Probe(np.zeros(2, int), np.arange(2), np.zeros(2, int)), np.full((2, 1), -1))
    write_eval_artifacts(result, tmp_path)
    read, trained = run_figures.RunCurves.read(tmp_path), run_figures.RunCurves.of(result)
    assert read.task_names == trained.task_names
    for field in ("samples_seen", "accuracy", "stage", "boundary"):
        np.testing.assert_array_equal(getattr(read, field), getattr(trained, field))
    np.testing.assert_array_equal(read.accuracy_matrix, result.accuracy_matrix)
