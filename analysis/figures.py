"""The report's figures (seaborn on matplotlib's Agg backend), PNG at print resolution.

Colours: every algorithm has its own hue (``algorithm_colors``); the conditions of one algorithm are
shades of that hue with distinct line styles, so a figure with several algorithms stays readable.
Bands and error bars are 95 % bootstrap CIs of the mean over seeds.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis.aggregate import METRICS, mean_and_ci  # noqa: E402

DPI = 200
KNOWN_ALGORITHMS = ["backprop", "bptt_epochwise", "bptt_truncated", "rtrl"]
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (3, 1, 1, 1, 1, 1))]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
BAR_METRICS = ["acc", "bwt", "forgetting_max", "learning_acc"]


def algorithm_colors(algorithms: list[str]) -> dict[str, tuple]:
    """A fixed colour per known algorithm (the same in every report), then the rest in name order."""
    palette = sns.color_palette("colorblind", 10)
    names = KNOWN_ALGORITHMS + sorted(set(algorithms) - set(KNOWN_ALGORITHMS))
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def condition_styles(order: list[str], algorithm_of: dict[str, str]) -> dict[str, dict]:
    """colour (a shade of the algorithm's hue) and line style per condition."""
    base = algorithm_colors(sorted(set(algorithm_of.values())))
    styles = {}
    for algorithm in sorted(set(algorithm_of.values())):
        members = [c for c in order if algorithm_of[c] == algorithm]
        c = np.array(base[algorithm])
        light, dark = tuple(c + (1 - c) * 0.6), tuple(c * 0.35)
        shades = sns.blend_palette([light, tuple(c), dark], max(len(members), 2)) if len(members) > 1 else [tuple(c)]
        for k, condition in enumerate(members):
            styles[condition] = {
                "color": shades[k], "linestyle": LINESTYLES[k % len(LINESTYLES)], "marker": MARKERS[k % len(MARKERS)]
            }
    return styles


def _grid(n: int, width: float, height: float, max_cols: int = 3, **kw):
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained", **kw
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)  # every figure uses constrained layout: no second "tight" draw needed
    plt.close(fig)
    return path


def _title(condition: str, n: int, width: int = 48) -> str:
    """The condition's key=value pairs wrapped to fit a panel, then the number of seeds."""
    lines = textwrap.wrap(condition, width=width, break_long_words=False) or [condition]
    return "\n".join(lines) + f" (n = {n} seed{'s' if n != 1 else ''})"


def accuracy_matrices(matrices: dict[str, list[np.ndarray]], task_names: dict[str, list[str]], order, path: Path):
    """Mean accuracy matrix (rows: before training, after each stage; columns: tasks) per condition.

    Drawn with ``imshow``: seaborn's heatmap redraws the whole figure for every panel (to check its
    tick labels for overlap), which is quadratic in the number of panels."""
    fig, axes = _grid(len(order), 5.0, 4.2)
    cmap = plt.get_cmap("viridis")
    for ax, condition in zip(axes, order):
        R = np.mean(matrices[condition], axis=0)
        names = task_names[condition]
        rows = ["init"] + ([f"after {n}" for n in names] if R.shape[0] - 1 == R.shape[1] else ["after joint"])
        image = ax.imshow(R, cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        if R.shape[1] <= 10:
            for (i, j), value in np.ndenumerate(R):
                dark = sns.utils.relative_luminance(cmap(value)) < 0.408
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color="white" if dark else "black")
        ax.set_xticks(np.arange(R.shape[1]), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(np.arange(R.shape[0]), rows, fontsize=8)
        ax.set_xticks(np.arange(R.shape[1] + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(R.shape[0] + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", linewidth=0.8)
        ax.tick_params(which="minor", length=0)
        ax.set_title(_title(condition, len(matrices[condition])), fontsize=10)
        ax.set_xlabel("test accuracy on task")
    fig.colorbar(image, ax=axes, shrink=0.6, label="test accuracy")
    fig.suptitle("Accuracy matrix R[i, j]: accuracy on task j after training stage i (mean over seeds)")
    return _save(fig, path)


def task_curves(curves: pd.DataFrame, boundaries: dict[str, list[int]], task_names: dict[str, list[str]], order, path: Path):
    """Test accuracy per task over samples_seen, mean and 95 % CI band over seeds, task boundaries dashed.

    ``curves``: columns condition, run_id, samples_seen, task, accuracy."""
    fig, axes = _grid(len(order), 5.2, 3.4, sharey=True)
    n_tasks = int(curves["task"].max()) + 1
    palette = sns.color_palette("Dark2" if n_tasks <= 8 else "husl", n_tasks)
    for ax, condition in zip(axes, order):
        data = curves[curves["condition"] == condition]
        for task, group in data.groupby("task"):
            wide = group.pivot_table(index="run_id", columns="samples_seen", values="accuracy")
            mean, low, high = mean_and_ci(wide.to_numpy())
            x = wide.columns.to_numpy()
            label = task_names[condition][task]
            ax.plot(x, mean, color=palette[task], lw=1.4, label=label)
            ax.fill_between(x, low, high, color=palette[task], alpha=0.2, lw=0)
        for b in boundaries[condition]:
            ax.axvline(b, color="0.4", ls="--", lw=0.8)
        ax.set_title(_title(condition, data["run_id"].nunique()), fontsize=10)
        ax.set_xlabel("training samples seen")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(-0.02, 1.02)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="task", loc="outside lower center", ncol=min(n_tasks, 10), frameon=False)
    fig.suptitle("Test accuracy per task (mean, 95 % CI over seeds); dashed: task boundaries")
    return _save(fig, path)


def final_metric_bars(table: pd.DataFrame, order, colors: dict[str, tuple], summary: pd.DataFrame, path: Path):
    """ACC, BWT, forgetting and learning accuracy per condition: mean, 95 % CI and the seeds."""
    fig, axes = plt.subplots(
        1, len(BAR_METRICS), figsize=(3.4 * len(BAR_METRICS) + 2.5, 0.45 * len(order) + 1.6), sharey=True,
        layout="constrained",
    )
    y = np.arange(len(order))
    s = summary.set_index("condition").loc[order]
    for ax, name in zip(axes, BAR_METRICS):
        mean = s[f"{name}_mean"].to_numpy(dtype=float)
        low, high = s[f"{name}_ci_low"].to_numpy(dtype=float), s[f"{name}_ci_high"].to_numpy(dtype=float)
        bar_colors = [colors[a] for a in s["algorithm"]]
        ax.barh(y, np.nan_to_num(mean), color=bar_colors, alpha=0.75, height=0.7)
        err = np.vstack([mean - low, high - mean])
        ax.errorbar(mean, y, xerr=np.where(np.isfinite(err), err, 0), fmt="none", ecolor="black", capsize=3, lw=1)
        for k, condition in enumerate(order):
            seeds = table.loc[table["condition"] == condition, name].to_numpy(dtype=float)
            ax.scatter(seeds, np.full(len(seeds), k), s=10, color="black", zorder=3)
            if not np.isfinite(mean[k]):
                ax.text(0, k, " n/a", va="center", fontsize=8, color="0.4")
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set_title(METRICS[name][0], fontsize=10)
        ax.set_xlabel({"bwt": "BWT (< 0: forgetting)", "forgetting_max": "forgetting (> 0: lost accuracy)"}.get(name, "accuracy"))
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, order, fontsize=9)
    axes[0].invert_yaxis()
    fig.suptitle("Final metrics per condition: bars = mean, whiskers = 95 % bootstrap CI, dots = seeds")
    return _save(fig, path)


def retention_curves(retention: dict[str, np.ndarray], bin_edges: np.ndarray, order, styles, path: Path):
    """P(still correct n samples later | correct right after its last presentation) per condition."""
    fig, ax = plt.subplots(figsize=(10.5, 4.8), layout="constrained")
    centers = (bin_edges[:-1] + bin_edges[1:]) / 2
    for condition in order:
        stacked = np.asarray(retention[condition])
        if not np.isfinite(stacked).any():
            continue
        mean, low, high = mean_and_ci(stacked)
        st = styles[condition]
        ax.plot(
            centers, mean, color=st["color"], ls=st["linestyle"], marker=st["marker"], markersize=4,
            markevery=max(1, len(centers) // 12), lw=1.8, label=f"{condition} (n={len(stacked)})",
        )
        ax.fill_between(centers, low, high, color=st["color"], alpha=0.15, lw=0)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, bin_edges[-1])
    ax.set_xlabel("n: training samples since the sample's last presentation")
    ax.set_ylabel("P(correct after n samples | correct\nright after its presentation)")
    ax.set_title("Retention of probe samples (mean, 95 % CI over seeds)")
    ax.grid(alpha=0.3)
    if ax.lines:
        fig.legend(fontsize=8, loc="outside right center", frameon=False)
    else:
        ax.text(0.5, 0.5, "no probe sample was correct right after its presentation", ha="center", transform=ax.transAxes)
    return _save(fig, path)


def forgetting_event_histograms(events: pd.DataFrame, order, styles, path: Path):
    """Distribution of forgetting events per probe sample, pooled over seeds, per condition.

    ``events``: columns condition, forgetting_events (one row per presented probe sample and run)."""
    fig, axes = _grid(len(order), 4.2, 3.0, sharey=True)
    top = int(np.nanmax(events["forgetting_events"])) if len(events) else 0
    for ax, condition in zip(axes, order):
        counts = events.loc[events["condition"] == condition, "forgetting_events"].dropna().astype(int)
        if len(counts):
            sns.histplot(
                x=counts, ax=ax, discrete=True, stat="probability", color=styles[condition]["color"],
                edgecolor="white", alpha=0.9,
            )
            ax.set_title(f"{condition}\nmean {counts.mean():.2f} events, {(counts == 0).mean():.0%} with none", fontsize=9)
        else:
            ax.set_title(f"{condition}\n(no presented probe samples)", fontsize=9)
        ax.set_xlim(-0.6, top + 0.6)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("forgetting events per sample")
        ax.set_ylabel("fraction of probe samples")
    fig.suptitle("Forgetting events (correct → wrong between consecutive evaluations), all seeds pooled")
    return _save(fig, path)
