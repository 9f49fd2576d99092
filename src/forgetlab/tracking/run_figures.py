"""The two figures every training run logs, so that the MLflow UI shows a run at a glance: test
accuracy on every task over samples seen, with the task boundaries, and the accuracy matrix.

Small PNGs drawn on ``matplotlib.figure.Figure`` directly (no pyplot): no global figure state, no
display backend, safe in worker processes and threads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from forgetlab.trainer import TrainingResult

DPI = 100


def stage_labels(result: TrainingResult) -> list[str]:
    """One label per row of the accuracy matrix: before training, then after each training stage."""
    stages = result.accuracy_matrix.shape[0] - 1
    trained = result.task_names if stages == len(result.task_names) else ["all tasks (joint)"] * stages
    return ["before training"] + [f"after {name}" for name in trained[:stages]]


def task_accuracy_figure(result: TrainingResult, title: str, path: Path) -> Path:
    """Test accuracy of every task against samples seen; dotted lines end the training stages, and
    each stage is labelled with what it trained."""
    points = result.points
    steps = np.array([p.samples_seen for p in points])
    accuracy = np.stack([p.accuracy for p in points])  # (points, tasks)
    fig = Figure(figsize=(6.4, 3.4), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for j, name in enumerate(result.task_names):
        ax.plot(steps, accuracy[:, j], label=name, linewidth=1.4)
    ends = sorted({p.samples_seen for p in points if p.boundary and p.stage >= 0})
    for end in ends[:-1]:
        ax.axvline(end, color="0.45", linestyle=":", linewidth=1)
    # Which task each stretch trains, along the top edge.
    trained = stage_labels(result)[1:]
    for start, end, label in zip([0, *ends[:-1]], ends, trained):
        ax.text((start + end) / 2, 0.985, label.removeprefix("after "), transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=7, color="0.35")
    ax.set(xlabel="samples seen", ylabel="test accuracy", ylim=(-0.02, 1.08), xlim=(0, max(steps.max(), 1)))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.grid(alpha=0.3)
    fig.savefig(path)
    return path


def accuracy_matrix_figure(result: TrainingResult, title: str, path: Path) -> Path:
    """R[i, j] as a heatmap: rows before training and after each stage, columns the tasks."""
    R = result.accuracy_matrix
    rows, cols = R.shape
    fig = Figure(figsize=(1.8 + 0.75 * cols, 0.9 + 0.42 * rows), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(R, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for i in range(rows):
        for j in range(cols):
            ax.text(j, i, f"{R[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if R[i, j] > 0.6 else "white")
    ax.set_xticks(range(cols), result.task_names, fontsize=8, rotation=30 if cols > 4 else 0, ha="right" if cols > 4 else "center")
    ax.set_yticks(range(rows), stage_labels(result), fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("test accuracy on", fontsize=8)
    fig.colorbar(image, ax=ax, label="test accuracy", shrink=0.9)
    fig.savefig(path)
    return path
