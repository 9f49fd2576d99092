"""The report's figures, in the house style of ``style.py``: each at page and at column width, as PDF and PNG.

Conditions are decomposed into the params that vary (``Layout``): the learner is the hue (one colour per
learner label, the same in every report), the scenario (else the task sequence) the facet columns, any
other swept param the facet rows, and joint training (all tasks shuffled together) is the reference
drawn beside the sequential runs. Every level follows ``aggregate.value_rank``, so a figure does not
depend on the order MLflow returns runs in. Bands and error bars are 95 % t-intervals of the mean over
seeds clipped to the metric's range; dots are seeds.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis import style  # noqa: E402
from analysis.aggregate import (  # noqa: E402
    ALGORITHM, JOINT, JOINT_TRAINING, SCENARIO, SEQUENTIAL_TRAINING, STRATEGY, TASK_SEQUENCE, short_names, value_rank,
)
from analysis.style import Source  # noqa: E402
from forgetlab.metric_registry import BY_NAME  # noqa: E402

FORMATS = style.FORMATS
COLUMN_KEYS = (SCENARIO, TASK_SEQUENCE)  # the first that varies becomes the facet columns
TRAINING_ORDER = [SEQUENTIAL_TRAINING, JOINT_TRAINING]
# The metric records drawn as bars: the final accuracy, what each task reached when it was trained
# (plasticity) and what was lost since (BWT; forgetting as RWalk defines it mirrors it, so it is left out).
BAR_METRICS = ("acc", "learning_acc", "bwt")
ACCURACY = BY_NAME["acc"]
LEARNER_ORDER = list(style.LEARNER_COLORS)  # known learners in this order, then any other by name


def bar_title(metric) -> str:
    return style.metric_label(metric)


@dataclass
class Layout:
    """Where each condition goes. ``frame``: one row per condition (index) with the labels ``hue`` (its
    learner, or the swept value), ``col`` and ``row`` ("" when unused), ``training`` (sequential | joint),
    ``panel`` (hue and row together: the facet rows of figures that give every hue its own panel) and
    ``chance`` (its chance accuracy, NaN when unknown)."""

    frame: pd.DataFrame
    hue_title: str
    col_title: str | None
    hue_order: list[str]
    col_order: list[str]  # [] when no column key varies
    row_order: list[str]  # [] when no row key varies
    panel_order: list[str]
    palette: dict[str, tuple]
    source: Source | None = None

    @property
    def markers(self) -> dict[str, str]:
        return {h: style.MARKERS[i % len(style.MARKERS)] for i, h in enumerate(self.hue_order)}

    def attach(self, data: pd.DataFrame) -> pd.DataFrame:
        """``data`` (a ``condition`` column) with the condition's layout columns."""
        return data.join(self.frame, on="condition")

    def chance(self, conditions) -> float | None:
        """The chance accuracy of ``conditions`` when they share one (else None: no line)."""
        levels = self.frame.loc[list(conditions), "chance"].dropna().round(6).unique() if len(conditions) else []
        return float(levels[0]) if len(levels) == 1 else None


def learner_rank(label: str) -> tuple:
    return (LEARNER_ORDER.index(label), "") if label in LEARNER_ORDER else (len(LEARNER_ORDER), label)


def build_layout(table: pd.DataFrame, keys: list[str], source: Source | None = None) -> Layout:
    """``table``: ``aggregate.condition_table`` (label keys as columns, ``learner``); ``keys``: the condition keys."""
    keys = [k for k in keys if k in table]
    names = short_names(keys)
    col_keys = [k for k in COLUMN_KEYS if k in keys][:1]
    learner = table["learner"] if "learner" in table else table["algorithm"]  # its label: algorithm + strategy
    others = [k for k in keys if k not in (ALGORITHM, STRATEGY, JOINT, *col_keys)]
    frame = pd.DataFrame(index=table.index)
    frame["training"] = table["training"]
    frame["chance"] = table["chance"] if "chance" in table else np.nan
    if learner.nunique() > 1 or not others:
        # a key that follows from the learner (its network's input form, BPTT's h) adds no grouping
        others = [k for k in others if not (table.groupby(learner)[k].nunique() <= 1).all()]
        frame["hue"], hue_order, hue_title = learner, sorted(set(learner), key=learner_rank), "learner"
        palette = style.learner_palette(hue_order)
        row_keys = others
    else:
        frame["hue"], hue_order = _levels(table, others, names)
        hue_title = names[others[0]] if len(others) == 1 else "condition"
        palette = {h: style._COLORBLIND[style._SPARE[i % len(style._SPARE)]] for i, h in enumerate(hue_order)}
        row_keys = []
    frame["col"], col_order = _levels(table, col_keys, names)
    frame["row"], row_order = _levels(table, row_keys, names, named=True)
    frame["panel"] = frame["hue"] + np.where(frame["row"] != "", " · " + frame["row"], "")
    panels = set(frame["panel"])
    panel_order = [p for h in hue_order for r in row_order or [""] if (p := h + (f" · {r}" if r else "")) in panels]
    return Layout(frame=frame, hue_title=hue_title, col_title=names[col_keys[0]] if col_keys else None,
                  hue_order=hue_order, col_order=col_order, row_order=row_order, panel_order=panel_order,
                  palette=palette, source=source)


def panel_count(layout: Layout) -> int:
    """Panels of the largest figure: one per hue and row (the per-hue figures), times the columns."""
    return max(1, len(layout.panel_order)) * max(1, len(layout.col_order))


def _levels(table: pd.DataFrame, keys: list[str], names: dict[str, str], named: bool = False
            ) -> tuple[pd.Series, list[str]]:
    """A label per condition from ``keys`` (``name=value, ...``; the value alone for one key unless
    ``named``) and the labels in rank order."""
    if not keys:
        return pd.Series("", index=table.index), []
    if len(keys) == 1 and not named:
        labels = table[keys[0]].astype(str)
    else:
        labels = table[keys].astype(str).apply(lambda r: ", ".join(f"{names.get(k, k)}={r[k]}" for k in keys), axis=1)
    ranks = {
        label: tuple(value_rank(k, v) for k, v in zip(keys, values))
        for label, values in zip(labels, table[keys].itertuples(index=False))
    }
    return labels, sorted(ranks, key=ranks.get)


# --- facets ------------------------------------------------------------------------------------


@dataclass
class Facets:
    """A figure's panels: ``cells[(row, col)]`` is the axes of facet row ``row`` and column ``col``."""

    figure: object
    cells: dict
    first_column: list  # the axes that carry the y label

    def axes(self):
        return list(self.cells.values())


def facets(width: str, rows: list[str], cols: list[str], *, panel_height: float, sharey: bool = True,
           sharex: bool = True, extra_height: float = 0.8) -> Facets:
    """Panels for every (row, col) facet, arranged for ``width`` (``style.arrangement``), titled like a
    facet grid's margins: the column over the top panels, the row in the first column's y label."""
    rows, cols = rows or [""], cols or [""]
    n_rows, n_cols, transposed = style.arrangement(width, len(rows), len(cols))
    fig, axes = style.grid(width, n_rows, n_cols, panel_height=panel_height, extra_height=extra_height,
                           sharex=sharex, sharey=sharey)
    wrapped = transposed or len(cols) > n_cols
    cells = {}
    for k, (r, c) in enumerate((r, c) for r in rows for c in cols):
        ax = axes.flat[k]
        cells[(r, c)] = ax
        if wrapped:
            ax.set_title(" · ".join(filter(None, [r, c])))
        elif ax in axes[0]:
            ax.set_title(c)
    for ax in axes.flat[len(cells):]:
        ax.set_visible(False)
    first = [axes[i, 0] for i in range(n_rows) if axes[i, 0].get_visible()]
    return Facets(fig, cells, first)


def _ylabels(f: Facets, label: str, rows: list[str], cols: list[str]) -> None:
    """The y label: the panel's, or with several rows of panels the figure's (at its left), each facet
    row then named in its first panel's label."""
    for ax in f.figure.axes:
        ax.set_ylabel("")
    by_row = {}
    for (r, _), ax in f.cells.items():
        by_row.setdefault(r, ax)
    named = [r for r, ax in by_row.items() if r and ax in f.first_column and not ax.get_title().startswith(r)]
    if named:
        for r in named:
            by_row[r].set_ylabel(r)
        f.figure.supylabel(label, fontsize=style.FONT_PT)
        return
    if len(f.first_column) > 1:  # stacked panels: one label for all, at the figure's left
        f.figure.supylabel(label, fontsize=style.FONT_PT)
    else:
        f.first_column[0].set_ylabel(label)


def _xlabels(f: Facets, label: str) -> None:
    """One x label under the panels (the figure's), shared by every column."""
    for ax in f.axes():
        ax.set_xlabel("")
    f.figure.supxlabel(label, fontsize=style.FONT_PT)


def _preferred(data: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the runs to draw, the joint runs that make the references): the sequential runs and the joint
    ones beside them, or, in a report of joint runs only, those runs themselves and no reference."""
    sequential = data["training"] == SEQUENTIAL_TRAINING
    if sequential.any():
        return data[sequential], data[~sequential]
    return data, data.iloc[:0]


def _task_labels(names: list[str]) -> list[str]:
    """Task names without their common prefix (``digits_01`` -> ``01``) where that leaves them all."""
    prefix = os.path.commonprefix(names)
    cut = prefix.rfind("_") + 1 if "_" in prefix else 0
    return [n[cut:] for n in names] if cut and all(n[cut:] for n in names) else list(names)


def _boundaries(ax, stage_ends: list[int], names: list[str], label: bool) -> None:
    """Dotted lines between the tasks; with ``label``, each stretch named after its task above the panel."""
    for end in stage_ends[:-1]:
        ax.axvline(end, **style.BOUNDARY, zorder=1)
    if label and len(names) == len(stage_ends) > 1:
        edges = [0, *stage_ends]
        top = ax.secondary_xaxis("top")
        top.set_xticks([(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])], _task_labels(names))
        top.tick_params(length=0, pad=1)


def _hue_entries(layout: Layout, hues) -> dict:
    return {h: Line2D([], [], color=layout.palette[h], lw=1.3, marker=layout.markers[h], markersize=3.5)
            for h in layout.hue_order if h in set(hues)}


def _hue_lines(ax, data: pd.DataFrame, layout: Layout, x: str, y: str, bounds=(0.0, 1.0), step: int = 4) -> None:
    """A line per hue with its clipped 95 % t-interval band, a marker on every ``step``-th point offset
    per hue, so that lines that coincide (RTRL and epochwise BPTT compute the same gradient) both show."""
    hues = [h for h in layout.hue_order if h in set(data["hue"])]
    if not len(data):
        return
    sns.lineplot(data=data, x=x, y=y, hue="hue", hue_order=hues, palette=layout.palette, style="hue",
                 style_order=hues, markers={h: layout.markers[h] for h in hues}, dashes=False, markersize=3,
                 markeredgewidth=0, errorbar=style.clipped_t_errorbar(bounds),
                 err_kws={"alpha": style.BAND_ALPHA, "linewidth": 0}, lw=1.1, legend=False, ax=ax)
    offset = {m: i for i, m in enumerate(layout.markers.values())}
    for line in ax.lines:
        if line.get_marker() in offset:
            line.set_markevery((offset[line.get_marker()] % step, step))


# --- figures ---------------------------------------------------------------------------------


def seen_task_accuracy(seen, final, layout: Layout, stage_ends: dict, task_names: dict, path: Path) -> Path:
    """Mean accuracy on the tasks trained so far over training samples seen: one line per hue (mean,
    clipped 95 % t-interval band), the joint runs' final ACC as a marker beyond the curves' right end in
    the same colour, chance dashed, the task stretches labelled. ``seen``: condition, run_id,
    samples_seen, accuracy; ``final``: condition, acc."""
    return style.both_widths(draw_seen_task_accuracy, path, seen, final, layout, stage_ends, task_names)


def draw_seen_task_accuracy(seen, final, layout, stage_ends, task_names, *, width: str):
    lines, _ = _preferred(layout.attach(seen))
    _, joint = _preferred(layout.attach(final))
    with style.theme():
        f = facets(width, layout.row_order, layout.col_order, panel_height=1.45 if width == "page" else 1.35)
        chance = False
        for (r, c), ax in f.cells.items():
            panel = lines[(lines["row"] == r) & (lines["col"] == c)] if len(lines) else lines
            _hue_lines(ax, panel, layout, "samples_seen", "accuracy")
            if len(panel):
                first = panel["condition"].iloc[0]
                right = max(panel["samples_seen"].max(), 1)
                ref = joint[(joint["row"] == r) & (joint["col"] == c)]
                for hue, acc in ref.groupby("hue")["acc"].mean().items():
                    ax.plot([right * 1.04], [acc], marker="<", ms=4, color=layout.palette[hue], clip_on=False, ls="")
                _boundaries(ax, stage_ends[first], task_names[first], label=ax.get_subplotspec().is_first_row())
                chance |= style.chance_line(ax, layout.chance(panel["condition"].unique()))
                ax.set_xlim(0, right * 1.08)
        for ax in f.axes():
            ax.set_ylim(-0.02, 1.02)
            ax.xaxis.set_major_locator(MaxNLocator(4 if width == "page" else 5))
        _xlabels(f, "training samples seen")
        _ylabels(f, "accuracy on tasks seen", layout.row_order, layout.col_order)
        entries = _hue_entries(layout, lines["hue"])
        if len(joint):
            entries["joint training, final ACC"] = Line2D([], [], color="0.3", marker="<", ls="", ms=4)
        if chance:
            entries["chance"] = Line2D([], [], **style.CHANCE)
        entries["task boundary"] = Line2D([], [], **style.BOUNDARY)
        style.legend(f.figure, entries, width, layout.source)
        return f.figure


def task_curves(curves: pd.DataFrame, layout: Layout, stage_ends: dict, task_names: dict, path: Path) -> Path:
    """Test accuracy on every task over samples seen (mean and clipped 95 % t-interval band over seeds),
    a panel per hue and column. ``curves``: condition, run_id, samples_seen, task, accuracy."""
    return style.both_widths(draw_task_curves, path, curves, layout, stage_ends, task_names)


def draw_task_curves(curves, layout, stage_ends, task_names, *, width: str):
    data, _ = _preferred(layout.attach(curves))
    first = data["condition"].iloc[0]
    order = _task_labels(list(task_names[first]))
    data = data.assign(task_name=data["task"].map(dict(enumerate(order))))
    palette = dict(zip(order, sns.color_palette("Dark2" if len(order) <= 8 else "husl", len(order))))
    with style.theme():
        f = facets(width, layout.panel_order, layout.col_order, panel_height=1.15 if width == "page" else 0.95)
        chance = False
        for (p, c), ax in f.cells.items():
            panel = data[(data["panel"] == p) & (data["col"] == c)]
            if len(panel):
                sns.lineplot(data=panel, x="samples_seen", y="accuracy", hue="task_name", hue_order=order,
                             palette=palette, errorbar=style.clipped_t_errorbar((0, 1)),
                             err_kws={"alpha": style.BAND_ALPHA, "linewidth": 0}, lw=1.0, legend=False, ax=ax)
                cond = panel["condition"].iloc[0]
                _boundaries(ax, stage_ends[cond], task_names[cond], label=False)
                chance |= style.chance_line(ax, layout.chance([cond]))
            ax.set_ylim(-0.02, 1.02)
            ax.xaxis.set_major_locator(MaxNLocator(3))
        _xlabels(f, "training samples seen")
        _ylabels(f, "test accuracy", layout.panel_order, layout.col_order)
        entries = {f"task {name}": Line2D([], [], color=palette[name], lw=1.4) for name in order}
        entries["task boundary"] = Line2D([], [], **style.BOUNDARY)
        if chance:
            entries["chance"] = Line2D([], [], **style.CHANCE)
        style.legend(f.figure, entries, width, layout.source, n_cols=min(len(entries), 7 if width == "page" else 4))
        return f.figure


def accuracy_matrices(matrices: dict[str, np.ndarray], layout: Layout, task_names: dict, path: Path) -> Path:
    """Mean accuracy matrix per hue and column (rows: before training, after each stage; columns: tasks),
    with the joint runs' final accuracy per task as an extra row ``joint``. ``matrices``: the mean
    R_with_init of every condition. Drawn with ``imshow`` (seaborn's heatmap redraws the figure for
    every panel); values written in the cells where they fit."""
    return style.both_widths(draw_accuracy_matrices, path, matrices, layout, task_names)


def _matrix_cells(matrices: dict[str, np.ndarray], layout: Layout, task_names: dict) -> dict:
    """(panel, col) -> (R, row labels, task labels): the sequential matrix with the joint final row."""
    cells = {}
    frame = layout.frame.loc[list(matrices)]
    for (panel, col), group in frame.groupby(["panel", "col"], sort=False):
        sequential = group.index[group["training"] == SEQUENTIAL_TRAINING]
        joint = group.index[group["training"] == JOINT_TRAINING]
        main = sequential[0] if len(sequential) else joint[0]
        names = _task_labels(task_names[main])
        R = matrices[main]
        rows = ["init", *(names if R.shape[0] - 1 == R.shape[1] else ["joint"])]
        if len(sequential) and len(joint):
            R, rows = np.vstack([R, matrices[joint[0]][-1]]), [*rows, "joint"]
        cells[(panel, col)] = (R, rows, names)
    return cells


def draw_accuracy_matrices(matrices, layout, task_names, *, width: str):
    cells = _matrix_cells(matrices, layout, task_names)
    cmap = plt.get_cmap("viridis")
    same = len({R.shape for R, _, _ in cells.values()}) == 1
    with style.theme():
        f = facets(width, layout.panel_order, layout.col_order, panel_height=1.6 if width == "page" else 0.95,
                   sharex=same, sharey=same, extra_height=1.0)
        for key, ax in f.cells.items():
            if key not in cells:
                ax.set_visible(False)
                continue
            R, rows, names = cells[key]
            ax.imshow(R, cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
            cell_pt = ax.get_position().width * f.figure.get_figwidth() * 72 / R.shape[1]
            if cell_pt >= 20:  # "0.95" at 7 pt is ~14 pt wide
                for (i, j), value in np.ndenumerate(R):
                    dark = sns.utils.relative_luminance(cmap(value)) < 0.408
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=style.MIN_FONT_PT,
                            color="white" if dark else "black")
            ax.set_xticks(np.arange(R.shape[1]), names)
            ax.set_yticks(np.arange(R.shape[0]), rows)
            ax.grid(False)
            ax.tick_params(length=0)
        for ax in f.axes():  # under each column's bottom panel: the colour bar is below the figure's middle
            ax.set_xlabel("task" if ax.get_subplotspec().is_last_row() else "")
        _ylabels(f, "after training", layout.panel_order, layout.col_order)
        f.figure.colorbar(matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap=cmap),
                          ax=f.axes(), location="bottom", shrink=0.5, aspect=30, label="test accuracy (mean over seeds)")
        style.title(f.figure, layout.source)
        return f.figure


def final_metric_bars(per_run: pd.DataFrame, layout: Layout, path: Path) -> Path:
    """The metrics of BAR_METRICS: bars = mean, whiskers = 95 % t-interval clipped to the metric's range,
    dots = seeds; x = column key (scenario), hue = learner; the joint runs' ACC as dashed outlines, chance
    as a dotted line. A metric undefined for a condition (BWT of a joint run) is left out, not drawn as 0."""
    return style.both_widths(draw_final_metric_bars, path, per_run, layout)


def draw_final_metric_bars(per_run, layout, *, width: str):
    long = per_run.melt(id_vars=["condition", "run_id"], value_vars=list(BAR_METRICS), var_name="metric")
    long = layout.attach(long.dropna(subset=["value"]))
    bars, joint = _preferred(long)
    joint = joint[joint["metric"] == "acc"]
    metrics = [m for m in BAR_METRICS if m in set(bars["metric"])]
    x, order = ("col", layout.col_order) if len(layout.col_order) > 1 else ("hue", layout.hue_order)
    hue = {"hue": "hue", "hue_order": layout.hue_order, "order": order, "x": x, "y": "value"}
    with style.theme():
        f = facets(width, layout.row_order, [style.metric_label(BY_NAME[m]) for m in metrics], sharey=False,
                   panel_height=1.55 if width == "page" else 1.25)
        for (r, title), ax in f.cells.items():
            metric = next(BY_NAME[m] for m in metrics if style.metric_label(BY_NAME[m]) == title)
            panel = bars[(bars["metric"] == metric.name) & (bars["row"] == r)]
            if not len(panel):
                continue
            _bar_panel(ax, panel, joint[joint["row"] == r] if metric.name == "acc" else joint.iloc[:0], hue, layout,
                       metric)
            ax.set_title("")
            ax.set_ylabel(title if not r else f"{r}\n{title}")
            ax.set_xlabel(layout.col_title if x == "col" and ax.get_subplotspec().is_last_row() else "")
            if x == "hue":  # one bar per learner: the legend names the colours
                ax.set_xticks(range(len(order)), [""] * len(order))
        known_chance = layout.frame.loc[bars["condition"].unique(), "chance"].notna().any()
        style.legend(f.figure, _bar_entries(layout, bars, joint, known_chance), width, layout.source)
        return f.figure


def _bar_panel(ax, panel: pd.DataFrame, joint: pd.DataFrame, hue: dict, layout: Layout, metric) -> None:
    """One metric's bars, seeds and (for ACC) the joint outlines and the chance line in ``ax``."""
    sns.barplot(data=panel, **hue, palette=layout.palette, capsize=0.15, alpha=0.85, legend=False, ax=ax,
                errorbar=style.clipped_t_errorbar(metric.bounds), err_kws={"linewidth": 0.8, "color": "0.15"})
    with _seeded_jitter():
        sns.stripplot(data=panel, **hue, palette={h: "0.1" for h in layout.hue_order}, dodge=hue["x"] != "hue",
                      size=1.8, jitter=0.08, legend=False, ax=ax)
    if len(joint):
        sns.barplot(data=joint, **hue, palette=layout.palette, errorbar=None, fill=False, linestyle="--",
                    linewidth=0.8, legend=False, ax=ax)
    if metric.name in ("acc", "learning_acc"):
        _chance_per_x(ax, panel, hue, layout)
    ax.set_ylim(*_bar_limits(panel, hue, metric))
    ax.axhline(0, color="0.3", lw=0.6)


def _bar_limits(panel: pd.DataFrame, hue: dict, metric) -> tuple[float, float]:
    """The y range of a metric's panel: 0, every seed and every (clipped) interval, within the metric's
    range; an accuracy's panel always spans [0, 1]."""
    low, high = metric.bounds
    ends = [0.0, *panel["value"].astype(float)]
    for _, group in panel.groupby([hue["x"], "hue"]):
        ends += [e for e in style.clipped_t_errorbar(metric.bounds)(group["value"].astype(float)) if np.isfinite(e)]
    if metric.bounds == (0.0, 1.0):
        return -0.02, 1.02
    pad = 0.04 * (max(ends) - min(ends) or 1)
    return max(low - 0.02, min(ends) - pad), min(high + 0.02, max(ends) + pad)


def _chance_per_x(ax, panel: pd.DataFrame, hue: dict, layout: Layout) -> None:
    """A dotted chance segment over each x position (each scenario has its own chance)."""
    for i, level in enumerate(hue["order"]):
        conditions = panel.loc[panel[hue["x"]] == level, "condition"].unique()
        chance = layout.chance(conditions)
        if chance is not None:
            ax.plot([i - 0.45, i + 0.45], [chance, chance], **style.CHANCE, zorder=3)


@contextmanager
def _seeded_jitter():
    """seaborn's stripplot jitters with NumPy's global generator: seed it for the plot (and give its
    state back after), so the same runs always give the same figure."""
    state = np.random.get_state()
    np.random.seed(0)
    try:
        yield
    finally:
        np.random.set_state(state)


def _bar_entries(layout: Layout, bars: pd.DataFrame, joint: pd.DataFrame, chance: bool) -> dict:
    entries = {h: Patch(color=layout.palette[h], alpha=0.85) for h in layout.hue_order if h in set(bars["hue"])}
    if len(joint):
        entries["joint training (ACC)"] = Patch(fill=False, ls="--", edgecolor="0.3")
    entries["seed"] = Line2D([], [], ls="", marker="o", markersize=2.5, color="0.1")
    entries["95 % t-interval"] = Line2D([], [], color="0.15", lw=0.8, marker="_", markersize=6)
    if chance:
        entries["chance"] = Line2D([], [], **style.CHANCE)
    return entries


def retention_curves(retention: pd.DataFrame, layout: Layout, path: Path) -> Path:
    """P(still correct n samples later | correct right after its last presentation): one line per hue
    (mean, clipped 95 % t-interval band), sequential training solid and joint training dashed in the
    same panel. ``retention``: condition, run_id, lag, retained (NaN where a bin holds no sample)."""
    return style.both_widths(draw_retention_curves, path, retention, layout)


def draw_retention_curves(retention, layout, *, width: str):
    data = layout.attach(retention.dropna(subset=["retained"]))
    with style.theme():
        f = facets(width, layout.row_order, layout.col_order, panel_height=1.45 if width == "page" else 1.3)
        for (r, c), ax in f.cells.items():
            panel = data[(data["row"] == r) & (data["col"] == c)]
            for training, dashes in ((SEQUENTIAL_TRAINING, "-"), (JOINT_TRAINING, "--")):
                part = panel[panel["training"] == training]
                _hue_lines(ax, part, layout, "lag", "retained")
                for line in ax.lines[-part["hue"].nunique():] if len(part) else []:
                    line.set_linestyle(dashes)
            ax.set_ylim(-0.02, 1.05)
            ax.xaxis.set_major_locator(MaxNLocator(4))
        if not len(data):
            f.axes()[0].text(0.5, 0.5, "no probe sample was correct\nright after its presentation", ha="center",
                             va="center", transform=f.axes()[0].transAxes)
        _xlabels(f, "samples since last presentation")
        _ylabels(f, "P(still correct)", layout.row_order, layout.col_order)
        entries = _hue_entries(layout, data["hue"])
        if (data["training"] == JOINT_TRAINING).any():
            entries["sequential"] = Line2D([], [], color="0.3", lw=1.1)
            entries["joint"] = Line2D([], [], color="0.3", lw=1.1, ls="--")
        style.legend(f.figure, entries, width, layout.source)
        return f.figure


MAX_EVENTS = 4  # the histograms' last bar counts this many flips to wrong or more


def forgetting_event_histograms(events: pd.DataFrame, layout: Layout, path: Path) -> Path:
    """Distribution of flips to wrong per probe sample (all seeds pooled; correct → wrong between
    consecutive evaluations, not Toneva et al.'s forgetting events, which count at presentations): bars
    per hue side by side, a panel per training mode (rows) and column. ``events``: condition,
    flips_to_wrong (the every-evaluation-point count, ``metrics.flips_to_wrong``)."""
    return style.both_widths(draw_flips_to_wrong, path, events, layout)


def draw_flips_to_wrong(events, layout, *, width: str):
    data = layout.attach(events.dropna(subset=["flips_to_wrong"]))
    data = data.assign(events=np.minimum(data["flips_to_wrong"], MAX_EVENTS).astype(int))
    trainings = [t for t in TRAINING_ORDER if t in set(data["training"])]
    ticks = [str(k) for k in range(MAX_EVENTS)] + [f"≥{MAX_EVENTS}"]
    with style.theme():
        f = facets(width, [f"{t} training" for t in trainings], layout.col_order,
                   panel_height=1.3 if width == "page" else 1.1)
        for (t, c), ax in f.cells.items():
            panel = data[(data["training"] + " training" == t) & (data["col"] == c)]
            shares = (panel.groupby("hue")["events"].value_counts(normalize=True).rename("share").reset_index())
            if len(shares):
                sns.barplot(data=shares, x="events", y="share", hue="hue", order=list(range(MAX_EVENTS + 1)),
                            hue_order=[h for h in layout.hue_order if h in set(shares["hue"])],
                            palette=layout.palette, legend=False, ax=ax, width=0.85)
            ax.set_xticks(range(MAX_EVENTS + 1), ticks)
            ax.set_ylim(0, 1)
        _xlabels(f, "flips to wrong per sample")
        _ylabels(f, "fraction of samples", [f"{t} training" for t in trainings], layout.col_order)
        entries = {h: Patch(color=layout.palette[h]) for h in layout.hue_order if h in set(data["hue"])}
        style.legend(f.figure, entries, width, layout.source)
        return f.figure


if __name__ == "__main__":
    from analysis import explain_module

    explain_module(__doc__, __file__)
