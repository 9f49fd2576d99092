"""The two figures of a training run, so that the MLflow UI shows a run at a glance: test accuracy
on every task over samples seen, with the task boundaries, and the accuracy matrix.

They are drawn from the run's eval artifacts once it has ended, off the training path
(``add_figures``): by a sweep's parent after its jobs (in the launcher's worker processes when it
has several, ``add_figures_of``), by a single run's process after its run ended, or on demand (``python -m forgetlab.tracking.run_figures``, e.g. for the runs of a sweep whose
parent did not live to draw them). Drawing costs ~0.1 s of CPU per figure and matplotlib ~0.5 s to
import: in a sweep's jobs that was most of what tracking cost a run (docs/performance.md).

Small PNGs drawn on ``matplotlib.figure.Figure`` directly (no pyplot): no global figure state, no
display backend, safe in worker processes and threads. The layout is fixed: margins are set from
the measured width of the longest label instead of matplotlib's constrained layout, which measured
every artist's extent again and took ~40 % of the figures' time (docs/performance.md, "Tracking
overhead"); the axes keep their size and the figure grows with long task names.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from forgetlab import contract
from forgetlab.tracking.batch import artifact_repository
from forgetlab.tracking.store import RetryingClient, StoreError, open_store
from forgetlab.trainer import TrainingResult

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn: ~0.5 s that training processes,
    # untracked runs and refused commands need not pay
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from mlflow.entities import Run

log = logging.getLogger(__name__)

DPI = 100
# PNG compression: zlib's level 1 writes these flat-coloured plots ~10 % larger than the default
# level 6 in a fraction of the time.
PNG_OPTIONS = {"compress_level": 1}
PAD = 0.08  # inches between a label and the edge of the figure


@dataclass(frozen=True)
class RunCurves:
    """What the figures show: every evaluation point's test accuracy per task, as the eval artifacts
    (``eval/task_curve.parquet``, the task names of ``eval/sample_probe.npz``) hold it."""

    task_names: list[str]
    samples_seen: np.ndarray  # (E,) int
    accuracy: np.ndarray  # (E, T)
    stage: np.ndarray  # (E,) int, -1 before training
    boundary: np.ndarray  # (E,) bool: the init point and the end of each stage

    @property
    def accuracy_matrix(self) -> np.ndarray:
        return self.accuracy[self.boundary]

    @classmethod
    def of(cls, result: TrainingResult) -> RunCurves:
        points = result.points
        return cls(list(result.task_names), np.array([p.samples_seen for p in points]),
                   np.stack([p.accuracy for p in points]), np.array([p.stage for p in points]),
                   np.array([p.boundary for p in points], dtype=bool))

    @classmethod
    def read(cls, root: Path) -> RunCurves:
        """From the eval artifacts under the artifact root ``root``."""
        import pandas as pd

        curve = pd.read_parquet(root / contract.ARTIFACT_TASK_CURVE).sort_values(["samples_seen", "task"], kind="stable")
        with np.load(root / contract.ARTIFACT_SAMPLE_PROBE, allow_pickle=False) as probe:
            task_names = [str(name) for name in probe["task_names"]]
        points = curve[curve["task"] == 0]
        accuracy = curve["accuracy"].to_numpy().reshape(len(points), len(task_names))
        return cls(task_names, points["samples_seen"].to_numpy(), accuracy, points["stage"].to_numpy(),
                   points["boundary"].to_numpy(dtype=bool))


def stage_labels(task_names: list[str], stages: int) -> list[str]:
    """One label per row of the accuracy matrix of ``stages`` training stages: before training, then
    after each stage."""
    trained = task_names if stages == len(task_names) else ["all tasks (joint)"] * stages
    return ["before training"] + [f"after {name}" for name in trained[:stages]]


def curves_labels(curves: RunCurves) -> list[str]:
    return stage_labels(curves.task_names, curves.accuracy_matrix.shape[0] - 1)


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


def task_accuracy_figure(curves: RunCurves, title: str, path: Path) -> Path:
    """Test accuracy of every task against samples seen; dotted lines end the training stages, and
    each stage is labelled with what it trained."""
    steps, accuracy = curves.samples_seen, curves.accuracy  # (points,), (points, tasks)
    axes_width, axes_height = 4.9, 2.55
    left, bottom, top = 0.62, 0.5, 0.3
    fig, canvas = new_figure(1.0, 1.0)
    # The legend sits right of the axes: its handles (~0.45 in) and the longest task name.
    right = 0.12 + 0.45 + text_width(canvas, curves.task_names, 8) + PAD
    fig.set_size_inches(left + axes_width + right, bottom + axes_height + top)
    place_axes(fig, left=left, right=right, bottom=bottom, top=top)
    ax = fig.add_subplot()
    for j, name in enumerate(curves.task_names):
        ax.plot(steps, accuracy[:, j], label=name, linewidth=1.4)
    ends = sorted(set(steps[curves.boundary & (curves.stage >= 0)].tolist()))
    for end in ends[:-1]:
        ax.axvline(end, color="0.45", linestyle=":", linewidth=1)
    # Which task each stretch trains, along the top edge; a name longer than the figure is wide
    # is cut at the axes (the legend has it whole).
    trained = curves_labels(curves)[1:]
    for start, end, label in zip([0, *ends[:-1]], ends, trained):
        ax.text((start + end) / 2, 0.985, label.removeprefix("after "), transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=7, color="0.35", clip_on=True)
    ax.set(xlabel="samples seen", ylabel="test accuracy", ylim=(-0.02, 1.08), xlim=(0, max(steps.max(), 1)))
    ax.set_title(title, fontsize=10, y=1.0)  # y given: no search for ticks above the axes
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.grid(alpha=0.3)
    fig.savefig(path, pil_kwargs=PNG_OPTIONS)
    return path


def accuracy_matrix_figure(curves: RunCurves, title: str, path: Path) -> Path:
    """R[i, j] as a heatmap: rows before training and after each stage, columns the tasks."""
    R = curves.accuracy_matrix
    rows, cols = R.shape
    rotated = cols > 4
    fig, canvas = new_figure(1.0, 1.0)
    row_labels = curves_labels(curves)
    left = text_width(canvas, row_labels, 8) + 0.1 + PAD  # the labels and their ticks
    # Rotated by 30 degrees, a column label takes half its width in height.
    column_labels = 0.5 * text_width(canvas, curves.task_names, 8) + 0.12 if rotated else 0.16
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
    ax.set_xticks(range(cols), curves.task_names, fontsize=8,
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


# --- adding them to ended runs ----------------------------------------------------------------------


def add_figures(client: RetryingClient, run: Run) -> bool:
    """Draw the figures of the ended training run ``run`` (an MLflow ``Run``) from its eval artifacts
    and add them to its artifacts (``contract.FIGURES_DIR``), unless it has them. They only show what
    the eval artifacts hold, so a figure that cannot be drawn is a warning. Returns whether it drew."""
    repository = artifact_repository(client, run.info.artifact_uri)
    if any(f.path == contract.ARTIFACT_TASK_ACCURACY_FIGURE for f in repository.list_artifacts(contract.FIGURES_DIR)):
        return False
    title = run.info.run_name
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            local = getattr(repository, "artifact_dir", None)  # a local artifact store: read in place
            if local is None:
                for path in (contract.ARTIFACT_TASK_CURVE, contract.ARTIFACT_SAMPLE_PROBE):
                    repository.download_artifacts(path, str(root))
            curves = RunCurves.read(Path(local) if local is not None else root)
            (root / contract.FIGURES_DIR).mkdir()
            task_accuracy_figure(curves, title, root / contract.ARTIFACT_TASK_ACCURACY_FIGURE)
            accuracy_matrix_figure(curves, title, root / contract.ARTIFACT_ACCURACY_MATRIX_FIGURE)
            repository.log_artifacts(str(root / contract.FIGURES_DIR), contract.FIGURES_DIR)
    except StoreError:
        raise
    except Exception:
        log.warning("[%s] could not draw the run's figures", title, exc_info=True)
        return False
    return True


def finished_runs(client: RetryingClient, experiment_id: str, *, sweep_id: str | None = None,
                  run_ids: Sequence[str] = ()) -> list[Run]:
    """The FINISHED training runs of ``experiment_id``, of sweep ``sweep_id`` when given, or ``run_ids``."""
    if run_ids:
        runs = [client.get_run(run_id) for run_id in run_ids]
        return [r for r in runs if r.info.status == "FINISHED" and r.data.tags.get(contract.TAG_KIND) == contract.KIND_TRAIN]
    clauses = [contract.tag_equals(contract.TAG_KIND, contract.KIND_TRAIN), "attributes.status = 'FINISHED'"]
    if sweep_id:
        clauses.append(contract.tag_equals(contract.TAG_SWEEP_ID, sweep_id))
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], " and ".join(clauses), max_results=1000, page_token=token)
        runs += page
        token = page.token
        if not token:
            return runs


def add_missing_figures(client: RetryingClient, runs: Sequence[Run]) -> int:
    """``add_figures`` for every one of ``runs``; how many got their figures now."""
    return sum(add_figures(client, run) for run in runs)


def add_figures_of(tracking_uri: str, run_ids: Sequence[str]) -> int:
    """``add_missing_figures`` for the runs ``run_ids`` of the store at ``tracking_uri``, opened here:
    what a worker process of a sweep's launcher runs for its share of the sweep's runs."""
    client = RetryingClient(tracking_uri)
    return add_missing_figures(client, finished_runs(client, "", run_ids=run_ids))


def add_sweep_figures(client: RetryingClient, experiment_id: str, sweep_id: str) -> int:
    """``add_figures`` for the finished training runs of sweep ``sweep_id`` (a single run is a sweep of its own)."""
    return add_missing_figures(client, finished_runs(client, experiment_id, sweep_id=sweep_id))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m forgetlab.tracking.run_figures",
        description="Draw the figures of finished training runs that lack them, into their artifacts "
                    "(a sweep's parent does this for its runs when its jobs are done; a single run when it ends).")
    parser.add_argument("--tracking-uri", required=True, help="e.g. sqlite:////abs/path/mlflow.db")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--sweep-id", help="only the runs of this sweep")
    parser.add_argument("run_ids", nargs="*", help="only these runs")
    args = parser.parse_args(argv)
    try:
        client = open_store(args.tracking_uri, create=False, key="--tracking-uri")
        experiment = client.get_experiment_by_name(args.experiment)
        if experiment is None:
            print(f"No experiment {args.experiment!r} in {args.tracking_uri}.", file=sys.stderr)
            return 1
        runs = finished_runs(client, experiment.experiment_id, sweep_id=args.sweep_id, run_ids=args.run_ids)
        drawn = add_missing_figures(client, runs)
    except StoreError as error:
        print(f"Tracking store error: {error}", file=sys.stderr)
        return 2
    print(f"Figures drawn for {drawn} of {len(runs)} finished runs (the others had them).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
