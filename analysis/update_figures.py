"""Figures of the report's update-resolution section (analysis/update_resolution.py), in the house style
of ``style.py`` (page and column width, PDF and PNG, one colour per learner, clipped 95 % t-intervals):
erasure against the number of updates, the first-order prediction against the measured loss change, the
task x task interference matrices and the cosine traces.

Each figure takes the conditions in ``order`` with a ``Look``: each condition's label (its learner's,
with what else tells it apart) and colour (its learner's), and the figures' ``style.Source``."""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from analysis import style  # noqa: E402
from analysis.aggregate import t_interval  # noqa: E402
from forgetlab import metrics as M  # noqa: E402

SCATTER_POINTS = 4000  # points drawn per condition (all are used for r and the slope)


@dataclass(frozen=True)
class Look:
    """How the figures show each condition: ``labels[c]``, ``colors[c]``; ``source`` for the titles."""

    labels: dict
    colors: dict
    source: style.Source | None = None

    @classmethod
    def plain(cls, order: list[str]) -> Look:
        """Conditions named by themselves, coloured as learners of those names would be."""
        return cls({c: c for c in order}, style.learner_palette(order))


def _panels(width: str, n: int, panel_height: float, most_cols: int = 3, extra_height: float = 0.9):
    """``n`` panels wrapped into rows of at most ``most_cols`` (2 at column width), the rest hidden."""
    cols = max(1, min(n, most_cols if width == "page" else 2))
    fig, axes = style.grid(width, math.ceil(max(n, 1) / cols), cols, panel_height=panel_height,
                           extra_height=extra_height, sharex=False, sharey=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n]), axes


def _first_column(axes) -> list:
    return [row[0] for row in axes if row[0].get_visible()]


def erasure_vs_k(curves: dict[str, np.ndarray], ks: np.ndarray, order: list[str], path: Path,
                 look: Look | None = None) -> Path:
    """erasure(k) per condition: ``curves[c]`` is (runs, len(ks)); the mean over runs and its 95 %
    t-interval clipped to [0, 1]. Lines that coincide (RTRL and epochwise BPTT make the same update
    when the loss is at the last step) both show: each has its own marker, at offset positions."""
    return style.both_widths(draw_erasure_vs_k, path, curves, ks, order, look or Look.plain(order))


def draw_erasure_vs_k(curves, ks, order, look: Look, *, width: str):
    with style.theme():
        fig, axes = style.grid(width, 1, 1, panel_height=2.2 if width == "page" else 2.0, extra_height=0.9)
        ax, entries = axes[0, 0], {}
        for i, condition in enumerate(order):
            runs = np.asarray(curves[condition], dtype=float)
            if not np.isfinite(runs).any():
                continue
            with _quiet():
                mean = np.nanmean(runs, axis=0)
            low, high = (np.clip(end, 0, 1) for end in t_interval(runs))
            shown = np.isfinite(mean)
            line = {"color": look.colors[condition], "lw": 1.1, "marker": style.MARKERS[i % len(style.MARKERS)],
                    "markersize": 3.2, "markeredgewidth": 0, "ls": style.DASHES[i % len(style.DASHES)]}
            ax.plot(ks[shown], mean[shown], markevery=(i % 3, 3), **line)
            band = shown & np.isfinite(low)
            ax.fill_between(ks[band], low[band], high[band], color=line["color"], alpha=style.BAND_ALPHA, lw=0)
            entries[look.labels[condition] + ("" if look.source else f" (n = {len(runs)})")] = Line2D([], [], **line)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("k: weight updates after the sample's presentation")
        ax.set_ylabel("erasure(k)")
        style.legend(fig, entries, width, look.source)
        return fig


def _scale(values: np.ndarray) -> tuple[float, str]:
    """A power of ten that brings ``values`` near 1, and how an axis label says it (× 1e-3)."""
    top = np.nanpercentile(np.abs(values), 99.5) if values.size else 1.0
    if not np.isfinite(top) or top == 0:
        return 1.0, ""
    exponent = int(math.floor(math.log10(top)))
    return (1.0, "") if -1 <= exponent <= 1 else (10.0 ** exponent, f" (× 1e{exponent})")


def first_order_scatter(probes: dict[str, list[dict]], order: list[str], path: Path, seed: int = 0,
                        look: Look | None = None) -> Path:
    """Predicted against measured loss change per condition, all runs pooled, with y = x; r, the slope
    through the origin and the number of pairs in each panel."""
    return style.both_widths(draw_first_order_scatter, path, probes, order, seed, look or Look.plain(order))


def draw_first_order_scatter(probes, order, seed, look: Look, *, width: str):
    rng = np.random.default_rng(seed)
    with style.theme():
        fig, panels, axes = _panels(width, len(order), 1.9 if width == "page" else 1.55)
        for ax, condition in zip(panels, order):
            predicted = np.concatenate([u["predicted"].astype(float).ravel() for u in probes[condition]])
            measured = np.concatenate([u["measured"].astype(float).ravel() for u in probes[condition]])
            agreement = M.first_order_agreement(predicted, measured)
            scale, unit = _scale(np.concatenate([predicted, measured]))
            pick = rng.choice(predicted.size, size=min(SCATTER_POINTS, predicted.size), replace=False)
            ax.scatter(predicted[pick] / scale, measured[pick] / scale, s=2, alpha=0.35, color=look.colors[condition],
                       lw=0, rasterized=True)
            both = np.concatenate([predicted, measured]) / scale
            low, high = np.nanpercentile(both, [0.5, 99.5]) if both.size else (-1, 1)
            if not high > low:
                low, high = low - 1e-9, high + 1e-9
            ax.plot([low, high], [low, high], color="0.3", lw=0.7, ls="--")
            ax.set(xlim=(low, high), ylim=(low, high))
            ax.set_title(look.labels[condition])
            ax.text(0.03, 0.97, f"r = {agreement['correlation']:.2f}\nslope = {agreement['slope']:.2f}\n"
                    f"{agreement['n']:,} pairs", transform=ax.transAxes, ha="left", va="top", fontsize=style.MIN_FONT_PT)
            ax.set_xlabel(f"predicted{unit}")
            ax.set_ylabel(f"measured Δℓ{unit}" if ax in _first_column(axes) else "")
            ax.xaxis.set_major_locator(plt.MaxNLocator(4))
            ax.yaxis.set_major_locator(plt.MaxNLocator(4))
        entries = {"y = x (the first-order prediction is exact)": Line2D([], [], color="0.3", lw=0.7, ls="--")}
        style.legend(fig, entries, width, look.source)
        return fig


def interference_matrices(probes: dict[str, list[dict]], order: list[str], path: Path, look: Look | None = None) -> Path:
    """The final interference matrix per condition, mean over runs, on one symmetric colour scale."""
    return style.both_widths(draw_interference_matrices, path, probes, order, look or Look.plain(order))


def draw_interference_matrices(probes, order, look: Look, *, width: str):
    matrices = {c: np.nanmean([u["interference_matrix"][-1] for u in probes[c]], axis=0) for c in order}
    limit = max((np.nanmax(np.abs(m)) for m in matrices.values() if np.isfinite(m).any()), default=1.0)
    with style.theme():
        fig, panels, axes = _panels(width, len(order), 1.75 if width == "page" else 1.45, most_cols=4,
                                    extra_height=1.0)
        for ax, condition in zip(panels, order):
            I = matrices[condition]
            names = [str(n).rsplit("_", 1)[-1] for n in probes[condition][0]["task_names"]]
            ax.imshow(I, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            cell_pt = ax.get_position().width * fig.get_figwidth() * 72 / max(I.shape[0], 1)
            if cell_pt >= 24:
                for (a, b), value in np.ndenumerate(I):
                    ax.text(b, a, f"{value:.2f}", ha="center", va="center", fontsize=style.MIN_FONT_PT)
            ax.set_xticks(np.arange(len(names)), names)
            ax.set_yticks(np.arange(len(names)), names)
            ax.grid(False)
            ax.tick_params(length=0)
            ax.set_title(look.labels[condition] + ("" if look.source else f" (n = {len(probes[condition])})"))
            ax.set_xlabel("task of q")
        for ax in _first_column(axes):
            ax.set_ylabel("task of p")
        fig.colorbar(matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(-limit, limit), cmap="RdBu_r"),
                     ax=panels, location="bottom", shrink=0.6, aspect=30, label="mean cos(∇ℓ_p, ∇ℓ_q)")
        style.title(fig, look.source)
        return fig


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the finite values in a centred window of ``window`` steps (NaN where there is none)."""
    finite = np.isfinite(x)
    kernel = np.ones(window)
    total = np.convolve(np.where(finite, x, 0.0), kernel, mode="same")
    count = np.convolve(finite.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def cosine_traces(traces: dict[str, tuple[dict, np.ndarray]], order: list[str], path: Path,
                  look: Look | None = None) -> Path:
    """Per condition (one run): cos(g_i, g_{i-1}) and the mean over earlier tasks of cos(g_i, m_t)
    against the update, moving averages over 1 % of the updates, task boundaries dotted. ``traces[c]``
    = (update probe arrays, earlier-task cosines (R-1, T))."""
    return style.both_widths(draw_cosine_traces, path, traces, order, look or Look.plain(order))


def draw_cosine_traces(traces, order, look: Look, *, width: str):
    with style.theme():
        fig, panels, axes = _panels(width, len(order), 1.3 if width == "page" else 1.1, most_cols=2)
        for ax, condition in zip(panels, order):
            u, earlier = traces[condition]
            x = u["updates"][1:]
            window = max(1, len(x) // 100)
            with _quiet():
                earlier_mean = np.nanmean(earlier, axis=1) if earlier.size else np.full(len(x), np.nan)
            color = look.colors[condition]
            ax.plot(x, _moving_average(u["consecutive_cosine"], window), lw=0.9, color=color)
            ax.plot(x, _moving_average(earlier_mean, window), lw=0.9, color="0.25", ls="--")
            for end in np.flatnonzero(np.diff(u["update_stage"])) + 1:
                ax.axvline(end, **style.BOUNDARY)
            ax.axhline(0, color="0.2", lw=0.5)
            ax.set_ylim(-1.02, 1.02)
            ax.set_title(look.labels[condition])
            ax.xaxis.set_major_locator(plt.MaxNLocator(4))
            ax.set_ylabel("cosine" if ax in _first_column(axes) else "")
        fig.supxlabel("weight update (moving average over 1 % of the updates)", fontsize=style.FONT_PT)
        entries = {"cos(g_i, g_{i−1}), in the learner's colour": Line2D([], [], color="0.5", lw=0.9),
                   "cos(g_i, earlier tasks' gradient)": Line2D([], [], color="0.25", lw=0.9, ls="--"),
                   "task boundary": Line2D([], [], **style.BOUNDARY)}
        style.legend(fig, entries, width, look.source, n_cols=2 if width == "page" else 1)
        return fig


@contextmanager
def _quiet():
    """Silence 'mean of empty slice' where a column has no finite value (it stays NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


if __name__ == "__main__":
    from analysis import explain_module

    explain_module(__doc__, __file__)
