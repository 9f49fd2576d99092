"""The report's figures: seaborn facet grids, each saved as PDF (vector, for a paper) and PNG.

Conditions are decomposed into the params that vary (``Layout``): the algorithm is the hue (one
colour per algorithm, the same in every report), the scenario (else the task sequence) the column,
any other swept param the row, and joint training (all tasks shuffled together) is drawn as the
dashed ceiling of the sequential runs beside it. Every level follows ``aggregate.value_rank``, so a
figure does not depend on the order MLflow returns runs in. Bands and error bars are 95 %
t-intervals of the mean over seeds (``aggregate.t_interval``); dots are seeds.
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

from analysis.aggregate import (  # noqa: E402
    ALGORITHM,
    JOINT,
    JOINT_TRAINING,
    SCENARIO,
    SEQUENTIAL_TRAINING,
    TASK_SEQUENCE,
    short_names,
    t_errorbar,
    value_rank,
)
from forgetlab.metric_registry import BY_NAME, HIGHER, LOWER, Metric  # noqa: E402

DPI = 150  # the PNG is for report.md and screens; the PDF beside it is the print version
FORMATS = ("png", "pdf")
COLUMN_KEYS = (SCENARIO, TASK_SEQUENCE)  # the first that varies becomes the figure columns
TRAINING_ORDER = [SEQUENTIAL_TRAINING, JOINT_TRAINING]
BAR_METRICS = ("acc", "bwt", "forgetting_max", "learning_acc")  # the metric records drawn as bars
DIRECTION = {HIGHER: " ↑", LOWER: " ↓", None: ""}  # after a metric's label: which way is better
BAND = {"alpha": 0.18, "linewidth": 0}
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
# colorblind-palette entries, the orange and vermillion pair apart: blue, orange, green, pink, ...
ALGORITHM_COLOR_INDEX = [0, 1, 2, 4, 5, 9, 6, 8, 3, 7]


def algorithm_colors(algorithms) -> dict[str, tuple]:
    """A colour per algorithm in name order, so the same algorithms get the same colours in every report."""
    palette = sns.color_palette("colorblind", 10)
    return {name: palette[ALGORITHM_COLOR_INDEX[i % len(palette)]] for i, name in enumerate(sorted(set(algorithms)))}


@dataclass
class Layout:
    """Where each condition goes. ``frame``: one row per condition (index) with the labels ``hue``,
    ``col`` and ``row`` ("" when unused), ``training`` (sequential | joint) and ``panel`` (hue and
    row together: the grid rows of figures that give every hue its own panel)."""

    frame: pd.DataFrame
    hue_title: str
    col_title: str | None
    hue_order: list[str]
    col_order: list[str]  # [] when no column key varies
    row_order: list[str]  # [] when no row key varies
    panel_order: list[str]
    palette: dict[str, tuple]

    @property
    def markers(self) -> dict[str, str]:
        return {h: MARKERS[i % len(MARKERS)] for i, h in enumerate(self.hue_order)}

    def attach(self, data: pd.DataFrame) -> pd.DataFrame:
        """``data`` (a ``condition`` column) with the condition's layout columns."""
        return data.join(self.frame, on="condition")


def build_layout(table: pd.DataFrame, keys: list[str]) -> Layout:
    """``table``: ``aggregate.condition_table`` (label keys as columns); ``keys``: the condition keys."""
    keys = [k for k in keys if k in table]
    names = short_names(keys)
    col_keys = [k for k in COLUMN_KEYS if k in keys][:1]
    others = [k for k in keys if k not in (ALGORITHM, JOINT, *col_keys)]
    if ALGORITHM in keys or not others:
        # a key that follows from the algorithm (the input form of its network) adds no grouping
        others = [k for k in others if not (table.groupby("algorithm")[k].nunique() <= 1).all()]
        table = table.assign(**{ALGORITHM: table["algorithm"]})
        hue_keys, row_keys = [ALGORITHM], others
    else:
        hue_keys, row_keys = others, []
    frame = pd.DataFrame(index=table.index)
    frame["training"] = table["training"]
    frame["hue"], hue_order = _levels(table, hue_keys, names)
    frame["col"], col_order = _levels(table, col_keys, names)
    frame["row"], row_order = _levels(table, row_keys, names, named=True)
    # a panel title names its param, unless it is the algorithm (``rtrl`` needs no ``algorithm=``)
    named = {h: h if hue_keys == [ALGORITHM] or len(hue_keys) > 1 else f"{names[hue_keys[0]]}={h}" for h in hue_order}
    frame["panel"] = frame["hue"].map(named) + np.where(frame["row"] != "", " · " + frame["row"], "")
    panels = set(frame["panel"])
    panel_order = [
        p for h in hue_order for r in row_order or [""] if (p := named[h] + (f" · {r}" if r else "")) in panels
    ]
    if hue_keys == [ALGORITHM]:
        colors = algorithm_colors(hue_order)
        palette = {h: colors[h] for h in hue_order}
    else:
        cycle = sns.color_palette("colorblind", 10)
        palette = {h: cycle[ALGORITHM_COLOR_INDEX[i % 10]] for i, h in enumerate(hue_order)}
    return Layout(
        frame=frame,
        hue_title=names.get(hue_keys[0], "algorithm") if len(hue_keys) == 1 else "condition",
        col_title=names[col_keys[0]] if col_keys else None,
        hue_order=hue_order, col_order=col_order, row_order=row_order, panel_order=panel_order, palette=palette,
    )


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


# --- grids -----------------------------------------------------------------------------------


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


@contextmanager
def _style():
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"), plt.rc_context({"grid.linewidth": 0.5}):
        yield


def _grid(data: pd.DataFrame, layout: Layout, row: str | None, row_order: list[str], *, height: float,
          aspect: float, **kw) -> sns.FacetGrid:
    """A FacetGrid of ``row`` × the layout's columns, titles at the margins. Without a column key the
    rows wrap into at most 3 columns. ``g.panel_vars`` holds the (row, col) variables it facets on."""
    col = "col" if len(layout.col_order) > 1 else None
    if row is not None and len(row_order) < 2:
        row = None
    size = {"height": height, "aspect": aspect, "despine": False, **kw}
    if col is None and row is not None:
        g = sns.FacetGrid(data, col=row, col_order=row_order, col_wrap=min(3, len(row_order)), **size)
        g.set_titles(col_template="{col_name}")
        g.panel_vars = (None, row)
    else:
        g = sns.FacetGrid(
            data, row=row, col=col, row_order=row_order if row else None,
            col_order=layout.col_order if col else None, margin_titles=True, **size,
        )
        g.set_titles(row_template="{row_name}", col_template=f"{layout.col_title}: {{col_name}}")
        g.panel_vars = (row, col)
    return g


def _panels(g: sns.FacetGrid, *frames: pd.DataFrame):
    """(axes, the rows of each frame that belong to it) for every panel of ``g``."""
    row, col = g.panel_vars
    if row is None and col is None:
        yield (g.ax, *frames)
        return
    for key, ax in g.axes_dict.items():
        values = dict(zip([v for v in (row, col) if v], key if (row and col) else [key]))
        yield (ax, *[f[np.logical_and.reduce([f[v] == x for v, x in values.items()])] for f in frames])


def _is_top(ax) -> bool:
    return ax.get_subplotspec().is_first_row()


def _save(g: sns.FacetGrid, path: Path) -> Path:
    """``path`` (PNG) and the same figure as PDF beside it; without timestamps, so a figure of the same
    runs is byte-identical."""
    g.figure.savefig(path.with_suffix(".png"), dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    g.figure.savefig(path.with_suffix(".pdf"), bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(g.figure)
    return path.with_suffix(".png")


def _preferred(data: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the runs to draw, the joint runs that make the ceilings): the sequential runs and the joint
    ones beside them, or, in a report of joint runs only, those runs themselves and no ceiling."""
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
    """Dotted lines between the tasks; over the top panels, each stretch named after its task."""
    for end in stage_ends[:-1]:
        ax.axvline(end, color="0.45", ls=":", lw=0.8, zorder=1)
    if label and len(names) == len(stage_ends) > 1:
        edges = [0, *stage_ends]
        top = ax.secondary_xaxis("top")
        top.set_xticks([(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])], _task_labels(names), fontsize=6)
        top.tick_params(length=0, pad=1)
        top.grid(False)


def _legend(g: sns.FacetGrid, entries: dict, title: str | None) -> None:
    """A legend right of the grid. Not ``FacetGrid.add_legend``: it narrows the grid to make room,
    which fails for a grid narrower than its legend; the saved figure's tight bounding box takes
    the legend in as it is."""
    right = max(ax.get_position().x1 for ax in g.axes.flat)
    margin = 0.06 if g.panel_vars[0] else 0.02  # row titles in the right margin
    g.figure.legend(entries.values(), entries.keys(), title=title, loc="center left", frameon=False,
                    bbox_to_anchor=(right + margin, 0.5), bbox_transform=g.figure.transFigure)


def _hue_entries(layout: Layout, hues) -> dict:
    return {h: Line2D([], [], color=layout.palette[h], lw=1.4, marker=layout.markers[h], markersize=3.5)
            for h in layout.hue_order if h in set(hues)}


def _hue_lines(g: sns.FacetGrid, layout: Layout, x: str, y: str, step: int = 4) -> None:
    """A line per hue with its 95 % t-interval band and a marker on every ``step``-th point, offset per
    hue, so that lines that coincide (RTRL and epochwise BPTT compute the same gradient) both show."""
    g.map_dataframe(
        sns.lineplot, x=x, y=y, hue="hue", hue_order=layout.hue_order, palette=layout.palette, style="hue",
        style_order=layout.hue_order, markers=layout.markers, dashes=False, markersize=3.5, markeredgewidth=0,
        errorbar=t_errorbar, err_kws=BAND, lw=1.3, legend=False,
    )
    offset = {m: i for i, m in enumerate(layout.markers.values())}
    for ax in g.axes.flat:
        for line in ax.lines:
            if line.get_marker() in offset:
                line.set_markevery((offset[line.get_marker()] % step, step))


# --- figures ---------------------------------------------------------------------------------


def seen_task_accuracy(seen: pd.DataFrame, final: pd.DataFrame, layout: Layout, stage_ends: dict, task_names: dict,
                       path: Path) -> Path:
    """Mean accuracy on the tasks trained so far over training samples seen: one line per hue (mean,
    95 % t-interval band), the joint runs' final ACC as a dashed ceiling in the same colour, the task
    stretches labelled. ``seen``: condition, run_id, samples_seen, accuracy; ``final``: condition, acc."""
    lines, _ = _preferred(layout.attach(seen))
    _, ceilings = _preferred(layout.attach(final))
    with _style():
        g = _grid(lines, layout, "row", layout.row_order, height=2.3, aspect=1.3, sharex=True, sharey=True)
        _hue_lines(g, layout, "samples_seen", "accuracy")
        for ax, panel, joint in _panels(g, lines, ceilings):
            for hue, acc in joint.groupby("hue")["acc"].mean().items():
                ax.axhline(acc, color=layout.palette[hue], ls=(0, (4, 2)), lw=1.1)
            if len(panel):
                first = panel["condition"].iloc[0]
                _boundaries(ax, stage_ends[first], task_names[first], label=_is_top(ax))
        g.set(ylim=(-0.02, 1.02), xlim=(0, None))
        g.set_axis_labels("training samples seen", "accuracy on tasks seen so far")
        entries = _hue_entries(layout, lines["hue"])
        if len(ceilings):
            entries["joint training (final ACC)"] = Line2D([], [], color="0.3", ls=(0, (4, 2)), lw=1.1)
        entries["task boundary"] = Line2D([], [], color="0.45", ls=":", lw=0.8)
        _legend(g, entries, layout.hue_title)
        return _save(g, path)


def task_curves(curves: pd.DataFrame, layout: Layout, stage_ends: dict, task_names: dict, path: Path) -> Path:
    """Test accuracy on every task over samples seen (mean over seeds; a band per task would hide the
    lines), a panel per hue and column. ``curves``: condition, run_id, samples_seen, task, accuracy."""
    data, _ = _preferred(layout.attach(curves))
    first = data["condition"].iloc[0]
    data = data.assign(task_name=data["task"].map(dict(enumerate(task_names[first]))))
    order = list(task_names[first])
    palette = dict(zip(order, sns.color_palette("Dark2" if len(order) <= 8 else "husl", len(order))))
    with _style():
        g = _grid(data, layout, "panel", layout.panel_order, height=2.0, aspect=1.4, sharex=True, sharey=True)
        g.map_dataframe(
            sns.lineplot, x="samples_seen", y="accuracy", hue="task_name", hue_order=order, palette=palette,
            errorbar=None, lw=1.1, legend=False,
        )
        for ax, panel in _panels(g, data):
            if len(panel):
                c = panel["condition"].iloc[0]
                _boundaries(ax, stage_ends[c], task_names[c], label=False)
        g.set(ylim=(-0.02, 1.02), xlim=(0, None))
        g.set_axis_labels("training samples seen", "test accuracy")
        entries = {name: Line2D([], [], color=palette[name], lw=1.6) for name in order}
        entries["task boundary"] = Line2D([], [], color="0.45", ls=":", lw=0.8)
        _legend(g, entries, "task")
        return _save(g, path)


def accuracy_matrices(matrices: dict[str, np.ndarray], layout: Layout, task_names: dict, path: Path) -> Path:
    """Mean accuracy matrix per hue and column (rows: before training, after each stage; columns: tasks),
    with the joint runs' final accuracy per task as an extra row ``joint``. ``matrices``: the mean
    R_with_init of every condition. Drawn with ``imshow``: seaborn's heatmap redraws the figure for
    every panel to check its tick labels, which is quadratic in the number of panels."""
    cells = []
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
        cells.append({"panel": panel, "col": col, "R": R, "rows": rows, "names": names})
    cells = pd.DataFrame(cells)
    same_shape = cells["R"].map(np.shape).nunique() == 1
    cmap = plt.get_cmap("viridis")

    def draw(data, **_):
        ax, cell = plt.gca(), data.iloc[0]
        R = cell["R"]
        ax.imshow(R, cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        if R.shape[1] <= 10:
            for (i, j), value in np.ndenumerate(R):
                dark = sns.utils.relative_luminance(cmap(value)) < 0.408
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=5.5,
                        color="white" if dark else "black")
        ax.set_xticks(np.arange(R.shape[1]), cell["names"], fontsize=6.5)
        ax.set_yticks(np.arange(R.shape[0]), cell["rows"], fontsize=6.5)
        ax.grid(False)
        ax.tick_params(length=0)

    with _style():
        g = _grid(cells, layout, "panel", layout.panel_order, height=2.0, aspect=1.05, sharex=same_shape,
                  sharey=same_shape)
        g.map_dataframe(draw)
        g.set_axis_labels("test accuracy on task", "after training on")
        # beside the grid, right of the row titles (``colorbar(ax=...)`` would take their place)
        right = max(a.get_position().x1 for a in g.axes.flat)
        cax = g.figure.add_axes([right + 0.06, 0.3, 0.015, 0.4])
        g.figure.colorbar(matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap=cmap),
                          cax=cax, label="test accuracy")
        return _save(g, path)


def bar_title(metric: Metric) -> str:
    """A metric's panel title: its label and, by an arrow, which way is better."""
    return metric.label + DIRECTION[metric.better]


def clipped_t_errorbar(bounds: tuple[float, float]):
    """``t_errorbar`` clipped to ``bounds``: an accuracy's interval ends at 1, where the t-interval of
    a few seeds close to it need not."""
    def errorbar(values) -> tuple[float, float]:
        return tuple(float(np.clip(end, *bounds)) for end in t_errorbar(values))

    return errorbar


def final_metric_bars(per_run: pd.DataFrame, layout: Layout, path: Path) -> Path:
    """The metrics of BAR_METRICS: bars = mean, whiskers = 95 % t-interval clipped to the metric's range,
    dots = seeds; x = column key (scenario), hue = algorithm; the joint runs' ACC as dashed outlines. A
    metric that is undefined for a condition (BWT of a joint run) is left out, not drawn as zero."""
    shown = {bar_title(BY_NAME[name]): BY_NAME[name] for name in BAR_METRICS}
    titles = {metric.name: title for title, metric in shown.items()}
    long = per_run.melt(id_vars=["condition", "run_id"], value_vars=list(BAR_METRICS), var_name="metric")
    long = layout.attach(long.dropna(subset=["value"]).assign(metric=lambda d: d["metric"].map(titles)))
    bars, joint = _preferred(long)
    joint = joint[joint["metric"] == titles["acc"]]
    metrics = [m for m in shown if m in set(bars["metric"])]
    x, order = ("col", layout.col_order) if len(layout.col_order) > 1 else ("hue", layout.hue_order)
    hue = {"hue": "hue", "hue_order": layout.hue_order, "order": order, "x": x, "y": "value"}
    with _style():
        row = "row" if len(layout.row_order) > 1 else None
        g = sns.FacetGrid(bars, col="metric", col_order=metrics, row=row, row_order=layout.row_order or None,
                          sharey=False, height=2.4, aspect=0.95 if x == "col" else min(1.2, 0.35 + 0.2 * len(order)),
                          margin_titles=True,
                          despine=False)
        g.panel_vars = (row, "metric")
        for ax, panel in _panels(g, bars):
            if len(panel):
                sns.barplot(data=panel, **hue, palette=layout.palette, capsize=0.2, alpha=0.85, legend=False, ax=ax,
                            errorbar=clipped_t_errorbar(shown[panel["metric"].iloc[0]].bounds),
                            err_kws={"linewidth": 0.9, "color": "0.15"})
        with _seeded_jitter():
            g.map_dataframe(sns.stripplot, **hue, palette={h: "0.1" for h in layout.hue_order}, dodge=x != "hue",
                            size=2.2, jitter=0.06, legend=False)
        for ax, panel in _panels(g, joint):
            if len(panel):
                sns.barplot(data=panel, **hue, palette=layout.palette, errorbar=None, fill=False, linestyle="--",
                            linewidth=1.0, legend=False, ax=ax)
        for ax in g.axes.flat:
            ax.axhline(0, color="0.3", lw=0.7)
            if x == "hue":
                plt.setp(ax.get_xticklabels(), rotation=40, ha="right", rotation_mode="anchor")
        g.set_titles(row_template="{row_name}", col_template="{col_name}")
        g.set_axis_labels(layout.col_title if x == "col" else "", "")
        _legend(g, _bar_entries(layout, bars, joint), layout.hue_title)
        return _save(g, path)


def _bar_entries(layout: Layout, bars: pd.DataFrame, joint: pd.DataFrame) -> dict:
    entries = {h: Patch(color=layout.palette[h], alpha=0.85) for h in layout.hue_order if h in set(bars["hue"])}
    if len(joint):
        entries["joint training (ACC)"] = Patch(fill=False, ls="--", edgecolor="0.3")
    entries["seed"] = Line2D([], [], ls="", marker="o", markersize=3, color="0.1")
    entries["95 % t-interval"] = Line2D([], [], color="0.15", lw=0.9, marker="_", markersize=6)
    return entries


def retention_curves(retention: pd.DataFrame, layout: Layout, path: Path) -> Path:
    """P(still correct n samples later | correct right after its last presentation): one line per hue
    (mean, 95 % t-interval band), a row per training mode (sequential, joint) and row key.
    ``retention``: condition, run_id, lag, retained (NaN where a bin holds no sample)."""
    data = layout.attach(retention.dropna(subset=["retained"]))
    data["training_row"] = data["training"] + np.where(data["row"] != "", " · " + data["row"], "")
    rows = [t + (f" · {r}" if r else "") for t in TRAINING_ORDER for r in (layout.row_order or [""])]
    rows = [r for r in rows if r in set(data["training_row"])]
    with _style():
        g = _grid(data, layout, "training_row", rows, height=2.1, aspect=1.35, sharex=True, sharey=True)
        if len(data):
            _hue_lines(g, layout, "lag", "retained")
        else:
            g.ax.text(0.5, 0.5, "no probe sample was correct right after its presentation", ha="center",
                      transform=g.ax.transAxes)
        g.set(ylim=(-0.02, 1.02), xlim=(0, None))
        g.set_axis_labels("samples since last presentation", "P(still correct)")
        _legend(g, _hue_entries(layout, data["hue"]), layout.hue_title)
        return _save(g, path)


def forgetting_event_histograms(events: pd.DataFrame, layout: Layout, path: Path) -> Path:
    """Distribution of forgetting events per probe sample (all seeds pooled), a panel per hue and
    column; sequential and joint training side by side. ``events``: condition, flips_to_wrong (the
    every-evaluation-point count, ``metrics.flips_to_wrong``)."""
    data = layout.attach(events.dropna(subset=["flips_to_wrong"]))
    trainings = [t for t in TRAINING_ORDER if t in set(data["training"])]

    def draw(data, **_):
        color = np.array(layout.palette[data["hue"].iloc[0]])
        sns.histplot(
            data=data, x="flips_to_wrong", hue="training", hue_order=trainings, discrete=True, stat="probability",
            common_norm=False, multiple="dodge", shrink=0.85, alpha=0.9, edgecolor="white", linewidth=0.3,
            palette={SEQUENTIAL_TRAINING: tuple(color), JOINT_TRAINING: tuple(color + (1 - color) * 0.55)},
            legend=False,
        )
        means = data.groupby("training")["flips_to_wrong"].mean()
        plt.gca().text(0.97, 0.95, "\n".join(f"mean {t}: {means[t]:.2f}" for t in trainings if t in means),
                       transform=plt.gca().transAxes, ha="right", va="top", fontsize=6)

    with _style():
        g = _grid(data, layout, "panel", layout.panel_order, height=1.8, aspect=1.35, sharex=True, sharey=True)
        if len(data):
            g.map_dataframe(draw)
        for ax in g.axes.flat:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        g.set_axis_labels("flips to wrong", "fraction of samples")
        shades = {SEQUENTIAL_TRAINING: "0.3", JOINT_TRAINING: "0.7"}
        _legend(g, {t: Patch(color=shades[t]) for t in trainings}, "training")
        return _save(g, path)
