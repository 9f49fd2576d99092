"""The two figures every training run logs, so that the MLflow UI shows a run at a glance: test
accuracy on every task over samples seen, with the task boundaries, and the accuracy matrix.

Small PNGs drawn on ``matplotlib.figure.Figure`` directly (no pyplot): no global figure state, no
display backend, safe in worker processes and threads. The layout is fixed: margins are set from
the measured width of the longest label instead of matplotlib's constrained layout, which measured
every artist's extent again and took ~40 % of the figures' time (docs/performance.md, "Tracking
overhead"); the axes keep their size and the figure grows with long task names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from forgetlab.trainer import TrainingResult

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn: ~0.5 s that untracked runs, sweep
    # parents and refused commands need not pay
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

DPI = 100
# PNG compression: zlib's level 1 writes these flat-coloured plots ~10 % larger than the default
# level 6 in a fraction of the time.
PNG_OPTIONS = {"compress_level": 1}
PAD = 0.08  # inches between a label and the edge of the figure


def stage_labels(result: TrainingResult) -> list[str]:
    """One label per row of the accuracy matrix: before training, then after each training stage."""
    stages = result.accuracy_matrix.shape[0] - 1
    trained = result.task_names if stages == len(result.task_names) else ["all tasks (joint)"] * stages
    return ["before training"] + [f"after {name}" for name in trained[:stages]]


def new_figure(width: float, height: float) -> tuple[Figure, FigureCanvasAgg]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    return fig, FigureCanvasAgg(fig)


def text_width(canvas: FigureCanvasAgg, labels: list[str], fontsize: float) -> float:
    """Width in inches of the widest of ``labels`` at ``fontsize`` points, as the figure draws it."""
    from matplotlib.font_manager import FontProperties

    renderer, font = canvas.get_renderer(), FontProperties(size=fontsize)
    widths = [renderer.get_text_width_height_descent(s, font, ismath=False)[0] for s in labels]
    return max(widths, default=0.0) / DPI


def place_axes(fig: Figure, *, left: float, right: float, bottom: float, top: float) -> None:
    """Margins in inches around the single axes of ``fig``."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)


def task_accuracy_figure(result: TrainingResult, title: str, path: Path) -> Path:
    """Test accuracy of every task against samples seen; dotted lines end the training stages, and
    each stage is labelled with what it trained."""
    points = result.points
    steps = np.array([p.samples_seen for p in points])
    accuracy = np.stack([p.accuracy for p in points])  # (points, tasks)
    axes_width, axes_height = 4.9, 2.55
    left, bottom, top = 0.62, 0.5, 0.3
    fig, canvas = new_figure(1.0, 1.0)
    # The legend sits right of the axes: its handles (~0.45 in) and the longest task name.
    right = 0.12 + 0.45 + text_width(canvas, result.task_names, 8) + PAD
    fig.set_size_inches(left + axes_width + right, bottom + axes_height + top)
    place_axes(fig, left=left, right=right, bottom=bottom, top=top)
    ax = fig.add_subplot()
    for j, name in enumerate(result.task_names):
        ax.plot(steps, accuracy[:, j], label=name, linewidth=1.4)
    ends = sorted({p.samples_seen for p in points if p.boundary and p.stage >= 0})
    for end in ends[:-1]:
        ax.axvline(end, color="0.45", linestyle=":", linewidth=1)
    # Which task each stretch trains, along the top edge; a name longer than the figure is wide
    # is cut at the axes (the legend has it whole).
    trained = stage_labels(result)[1:]
    for start, end, label in zip([0, *ends[:-1]], ends, trained):
        ax.text((start + end) / 2, 0.985, label.removeprefix("after "), transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=7, color="0.35", clip_on=True)
    ax.set(xlabel="samples seen", ylabel="test accuracy", ylim=(-0.02, 1.08), xlim=(0, max(steps.max(), 1)))
    ax.set_title(title, fontsize=10, y=1.0)  # y given: no search for ticks above the axes
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.grid(alpha=0.3)
    fig.savefig(path, pil_kwargs=PNG_OPTIONS)
    return path


def accuracy_matrix_figure(result: TrainingResult, title: str, path: Path) -> Path:
    """R[i, j] as a heatmap: rows before training and after each stage, columns the tasks."""
    R = result.accuracy_matrix
    rows, cols = R.shape
    rotated = cols > 4
    fig, canvas = new_figure(1.0, 1.0)
    row_labels = stage_labels(result)
    left = text_width(canvas, row_labels, 8) + 0.1 + PAD  # the labels and their ticks
    # Rotated by 30 degrees, a column label takes half its width in height.
    column_labels = 0.5 * text_width(canvas, result.task_names, 8) + 0.12 if rotated else 0.16
    bottom = column_labels + 0.08 + 0.2 + PAD  # tick, label gap, the axis label
    top, right = 0.3, 0.95  # the title; the colour bar with its ticks and label
    axes_width, axes_height = 0.75 * cols, 0.42 * rows
    fig.set_size_inches(left + axes_width + right, bottom + axes_height + top)
    place_axes(fig, left=left, right=right, bottom=bottom, top=top)
    ax = fig.add_subplot()
    image = ax.imshow(R, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for i in range(rows):
        for j in range(cols):
            ax.text(j, i, f"{R[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if R[i, j] > 0.6 else "white")
    ax.set_xticks(range(cols), result.task_names, fontsize=8,
                  rotation=30 if rotated else 0, ha="right" if rotated else "center")
    ax.set_yticks(range(rows), row_labels, fontsize=8)
    ax.set_title(title, fontsize=9, y=1.0)
    ax.set_xlabel("test accuracy on", fontsize=8)
    width, height = fig.get_size_inches()
    bar_height = 0.9 * axes_height
    colorbar_axes = fig.add_axes([(left + axes_width + 0.2) / width, (bottom + 0.05 * axes_height) / height,
                                  0.12 / width, bar_height / height])
    fig.colorbar(image, cax=colorbar_axes, label="test accuracy")
    fig.savefig(path, pil_kwargs=PNG_OPTIONS)
    return path
