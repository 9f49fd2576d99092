"""Figures of the report's update-resolution section (analysis/update_resolution.py): erasure against
the number of updates, the first-order prediction against the measured loss change, the task x task
interference matrices and the cosine traces. seaborn on matplotlib's Agg backend, PNG."""

from __future__ import annotations

import math
import textwrap
import warnings
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from forgetlab import metrics as M  # noqa: E402

DPI = 200
SCATTER_POINTS = 4000  # points drawn per condition (all are used for r and the slope)


def _colors(order: list[str]) -> dict[str, tuple]:
    palette = sns.color_palette("colorblind", max(len(order), 1))
    return {c: palette[i % len(palette)] for i, c in enumerate(order)}


def _panels(n: int, width: float, height: float, max_cols: int = 4):
    cols = min(max(n, 1), max_cols)
    rows = math.ceil(max(n, 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _title(condition: str, width: int = 40) -> str:
    return "\n".join(textwrap.wrap(condition, width=width, break_long_words=False) or [condition])


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def erasure_vs_k(curves: dict[str, np.ndarray], ks: np.ndarray, order: list[str], path: Path) -> Path:
    """erasure(k) per condition: ``curves[c]`` is (runs, len(ks)); the mean over runs, the runs' range shaded."""
    fig, ax = plt.subplots(figsize=(8.5, 4.6), layout="constrained")
    colors = _colors(order)
    for condition in order:
        runs = np.asarray(curves[condition], dtype=float)
        if not np.isfinite(runs).any():
            continue
        with _quiet():
            mean, low, high = np.nanmean(runs, axis=0), np.nanmin(runs, axis=0), np.nanmax(runs, axis=0)
        shown = np.isfinite(mean)
        ax.plot(ks[shown], mean[shown], marker="o", markersize=3, lw=1.6, color=colors[condition],
                label=f"{condition} (n={len(runs)})")
        if len(runs) > 1:
            ax.fill_between(ks[shown], low[shown], high[shown], color=colors[condition], alpha=0.15, lw=0)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("k: weight updates after the sample's presentation (log)")
    ax.set_ylabel("erasure(k) = P(wrong after k updates\n| correct right after its presentation)")
    fig.suptitle("Erasure of just-learned probe samples (mean over seeds; band: range of the seeds)")
    ax.grid(alpha=0.3, which="both")
    if ax.lines:
        fig.legend(fontsize=8, loc="outside right center", frameon=False)
    return _save(fig, path)


def first_order_scatter(probes: dict[str, list[dict]], order: list[str], path: Path, seed: int = 0) -> Path:
    """Predicted against measured loss change per condition, all runs pooled, with y = x."""
    fig, axes = _panels(len(order), 3.8, 3.6)
    colors = _colors(order)
    rng = np.random.default_rng(seed)
    for ax, condition in zip(axes, order):
        predicted = np.concatenate([u["predicted"].astype(float).ravel() for u in probes[condition]])
        measured = np.concatenate([u["measured"].astype(float).ravel() for u in probes[condition]])
        agreement = M.first_order_agreement(predicted, measured)
        pick = rng.choice(predicted.size, size=min(SCATTER_POINTS, predicted.size), replace=False)
        ax.scatter(predicted[pick], measured[pick], s=3, alpha=0.35, color=colors[condition], lw=0)
        both = np.concatenate([predicted, measured])
        low, high = np.nanpercentile(both, [0.5, 99.5]) if both.size else (-1, 1)
        if not high > low:
            low, high = low - 1e-9, high + 1e-9
        ax.plot([low, high], [low, high], color="0.3", lw=0.8, ls="--")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_title(f"{_title(condition)}\nr = {agreement['correlation']:.3f}, slope = {agreement['slope']:.3f}, "
                     f"{agreement['n']:,} pairs", fontsize=8)
        ax.set_xlabel("predicted ⟨∇ℓ_p, Δθ⟩")
        ax.set_ylabel("measured Δℓ_p")
        ax.ticklabel_format(style="sci", scilimits=(-2, 2))
    fig.suptitle("First-order prediction of each probe sample's loss change against the measured change")
    return _save(fig, path)


def interference_matrices(probes: dict[str, list[dict]], order: list[str], path: Path) -> Path:
    """The final interference matrix per condition, mean over runs, on a symmetric colour scale."""
    fig, axes = _panels(len(order), 3.9, 3.4)
    matrices = {c: np.nanmean([u["interference_matrix"][-1] for u in probes[c]], axis=0) for c in order}
    limit = max((np.nanmax(np.abs(m)) for m in matrices.values() if np.isfinite(m).any()), default=1.0)
    image = None
    for ax, condition in zip(axes, order):
        I = matrices[condition]
        names = [str(n) for n in probes[condition][0]["task_names"]]
        image = ax.imshow(I, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        if I.shape[0] <= 10:
            for (a, b), value in np.ndenumerate(I):
                ax.text(b, a, f"{value:.2f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(np.arange(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(np.arange(len(names)), names, fontsize=7)
        ax.set_title(f"{_title(condition)} (n={len(probes[condition])})", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.7, label="mean cos(∇ℓ_p, ∇ℓ_q)")
    fig.suptitle("Interference between tasks at the end of training")
    return _save(fig, path)


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the finite values in a centred window of ``window`` steps (NaN where there is none)."""
    finite = np.isfinite(x)
    kernel = np.ones(window)
    total = np.convolve(np.where(finite, x, 0.0), kernel, mode="same")
    count = np.convolve(finite.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def cosine_traces(traces: dict[str, tuple[dict, np.ndarray]], order: list[str], path: Path) -> Path:
    """Per condition (one run): cos(g_i, g_{i-1}) and the mean over earlier tasks of cos(g_i, m_t)
    against the update, moving averages, task boundaries dashed. ``traces[c]`` = (update probe
    arrays, earlier-task cosines (R-1, T))."""
    fig, axes = _panels(len(order), 4.6, 3.0, max_cols=2)
    for ax, condition in zip(axes, order):
        u, earlier = traces[condition]
        x = u["updates"][1:]
        window = max(1, len(x) // 100)
        with _quiet():
            earlier_mean = np.nanmean(earlier, axis=1) if earlier.size else np.full(len(x), np.nan)
        ax.plot(x, _moving_average(u["consecutive_cosine"], window), lw=1.0, label="cos(g_i, g_{i−1})")
        ax.plot(x, _moving_average(earlier_mean, window), lw=1.0, label="cos(g_i, earlier tasks' gradient)")
        for end in np.flatnonzero(np.diff(u["update_stage"])) + 1:
            ax.axvline(end, color="0.4", ls="--", lw=0.7)
        ax.axhline(0, color="0.2", lw=0.6)
        ax.set_ylim(-1.02, 1.02)
        ax.set_title(f"{_title(condition, 60)}\n(moving average over {window} steps)", fontsize=8)
        ax.set_xlabel("weight update")
        ax.set_ylabel("cosine")
    if axes:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False, fontsize=8)
    fig.suptitle("Direction of the applied updates (first seed of each condition)")
    return _save(fig, path)


@contextmanager
def _quiet():
    """Silence 'mean of empty slice' where a column has no finite value (it stays NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


if __name__ == "__main__":
    from analysis import explain_module

    explain_module(__doc__, __file__)
