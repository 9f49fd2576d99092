"""The house style of every figure of a report (``figures.py``, ``update_figures.py``): a figure a journal
takes as it is.

- Two sizes, each saved as PDF (vector, fonts embedded as TrueType) and PNG: the page width of a
  two-column journal (``PAGE`` = 6.9 in, ``<name>.pdf``) and its column width (``COLUMN`` = 3.3 in,
  ``<name>-column.pdf``). A figure is drawn at the size it is printed, so its font sizes are the
  printed ones: 8 pt labels and titles, 7 pt (``MIN_FONT_PT``) ticks, legends and annotations.
- One colour per learner, the same in every figure and every report (``learner_palette``), keyed by the
  learner's label (the tag ``forgetlab.learner_label``, e.g. "BPTT(4; 1)").
- Metric names from the metric records (``forgetlab.metric_registry``), with an arrow for which way is
  better; intervals are 95 % Student-t intervals of the mean over seeds, clipped to the metric's range
  (``clipped_t_errorbar``); a dashed grey line at chance accuracy where the figure shows accuracy.
- The experiment, the data and the number of seeds in the figure's title (``Source``).
- Laid out by matplotlib's constrained layout, legends above the panels: ``text_overlaps`` measures,
  from the renderer's bounding boxes, that no two texts overlap (tests/test_report_figures.py).
"""

from __future__ import annotations

import itertools
import math
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis.aggregate import t_errorbar  # noqa: E402
from forgetlab.metric_registry import HIGHER, LOWER, Metric  # noqa: E402

PAGE, COLUMN = 6.9, 3.3  # inches
WIDTHS = {"page": PAGE, "column": COLUMN}
SUFFIX = {"page": "", "column": "-column"}  # <name>.png is the page-wide figure, <name>-column.png the other
DPI = 200  # the PNG is for report.md and screens; the PDF beside it is the print version
FORMATS = ("png", "pdf")
FONT_PT, MIN_FONT_PT = 8.0, 7.0
BAND_ALPHA = 0.2
CHANCE = {"color": "0.35", "ls": (0, (4, 2)), "lw": 0.8}
BOUNDARY = {"color": "0.6", "ls": ":", "lw": 0.7}
DIRECTION = {HIGHER: " ↑", LOWER: " ↓", None: ""}
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
# Line styles by position: where two learners' lines coincide (RTRL and epochwise BPTT make the same
# update when the loss is at the last step), the dashes of one let the other show through.
DASHES = ["-", (0, (4, 1.5)), (0, (1.5, 1)), (0, (6, 1.5, 1.5, 1.5)), (0, (2, 2))]

# colorblind palette: 0 blue, 1 orange, 2 green, 3 vermillion, 4 purple, 5 brown, 6 pink, 7 grey, 8 olive, 9 cyan
_COLORBLIND = sns.color_palette("colorblind", 10)
# The learners forgetlab ships, each its own colour everywhere; other labels get one of the rest by a
# hash of the label, so that a learner's colour never depends on which others a report holds.
LEARNER_COLORS = {  # in the order figures list them: by how far back credit reaches, RTRL last
    "backprop (MLP)": 0, "backprop (MLP), batch 4": 9, "epochwise BPTT": 1, "BPTT(1; 1)": 3, "BPTT(3; 1)": 8,
    "BPTT(4; 2)": 3,
    "BPTT(4; 1)": 4, "BPTT(12; 1)": 5, "BPTT(4; 1) stream": 6, "RTRL": 2,
}
_SPARE = [i for i in range(10) if i != 7]


def learner_color(label: str) -> tuple:
    index = LEARNER_COLORS.get(label)
    if index is None:
        index = _SPARE[zlib.crc32(label.encode()) % len(_SPARE)]
    return _COLORBLIND[index]


def learner_palette(labels) -> dict[str, tuple]:
    return {label: learner_color(label) for label in labels}


def metric_label(metric: Metric) -> str:
    """A metric's name in a figure: its label and, by an arrow, which way is better."""
    return metric.label + DIRECTION[metric.better]


def clipped_t_errorbar(bounds: tuple[float, float]):
    """``t_errorbar`` (95 % t-interval of the mean) clipped to ``bounds``, as seaborn's ``errorbar=``
    callable: an accuracy's interval ends at 1, where the t-interval of a few seeds near it need not."""
    def errorbar(values) -> tuple[float, float]:
        return tuple(float(np.clip(end, *bounds)) for end in t_errorbar(values))

    return errorbar


@dataclass(frozen=True)
class Source:
    """What a figure shows, for its title: ``quickstart · split_digits · 3 seeds``."""

    experiment: str
    data: str  # the task sequence(s)
    seeds: str  # seeds per condition, e.g. "3" or "2–3"

    def title(self) -> str:
        return f"{self.experiment} · {self.data} · {self.seeds} seed{'s' * (self.seeds != '1')}"


def seeds_text(counts) -> str:
    counts = [int(c) for c in counts]
    if not counts:
        return "0"
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}–{high}"


@contextmanager
def theme():
    """seaborn's whitegrid at the printed font sizes; PDF fonts embedded as TrueType (editable)."""
    rc = {
        "font.size": FONT_PT, "axes.titlesize": FONT_PT, "axes.labelsize": FONT_PT, "figure.titlesize": FONT_PT,
        "xtick.labelsize": MIN_FONT_PT, "ytick.labelsize": MIN_FONT_PT, "legend.fontsize": MIN_FONT_PT,
        "legend.title_fontsize": MIN_FONT_PT, "grid.linewidth": 0.4, "axes.linewidth": 0.6, "lines.linewidth": 1.2,
        "xtick.major.size": 2.5, "ytick.major.size": 2.5, "xtick.major.pad": 2, "ytick.major.pad": 2,
        "axes.titlepad": 3, "axes.labelpad": 2, "legend.handlelength": 1.6, "legend.columnspacing": 1.0,
        "pdf.fonttype": 42, "ps.fonttype": 42, "figure.constrained_layout.h_pad": 0.03,
        "figure.constrained_layout.w_pad": 0.03,
    }
    with sns.axes_style("whitegrid"), plt.rc_context(rc):
        yield


def grid(width: str, n_rows: int, n_cols: int, *, panel_height: float, extra_height: float = 0.7,
         sharex: bool = True, sharey: bool = True):
    """A figure ``WIDTHS[width]`` wide of ``n_rows`` x ``n_cols`` panels, each ``panel_height`` tall
    (plus ``extra_height`` for title and legend), constrained layout. Returns (figure, 2-d axes)."""
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(WIDTHS[width], n_rows * panel_height + extra_height), squeeze=False,
        sharex=sharex, sharey=sharey, layout="constrained",
    )
    return fig, axes


def arrangement(width: str, n_rows: int, n_cols: int, most_cols: int = 3) -> tuple[int, int, bool]:
    """How ``n_rows`` x ``n_cols`` facets sit on a figure of ``width``: (rows, cols, transposed). At
    column width a single row of facets becomes a single column (panels as wide as the figure)."""
    if width == "column" and n_rows == 1 and n_cols > 1:
        return n_cols, 1, True
    cols = min(n_cols, most_cols if width == "page" else 3)
    return n_rows * math.ceil(n_cols / cols), cols, False


def label_grid(axes, row_labels: list[str], col_labels: list[str], transposed: bool = False) -> None:
    """Facet titles: the column facet over the top panels and the row facet at the left of each row
    (a facet grid's margin titles); with ``transposed`` facets (one column) each panel's title names both."""
    rows, cols = axes.shape
    for i, j in itertools.product(range(rows), range(cols)):
        ax = axes[i, j]
        if transposed:
            ax.set_title(" · ".join(filter(None, [row_labels[0] if row_labels else "", col_labels[i]])))
        elif i == 0 and col_labels:
            ax.set_title(col_labels[j])
        if not transposed and j == 0 and row_labels:
            ax.annotate(row_labels[i], xy=(0, 0.5), xycoords="axes fraction", xytext=(-30, 0),
                        textcoords="offset points", ha="right", va="center", rotation=90, fontsize=FONT_PT)


def chance_line(ax, level: float | None) -> bool:
    """The dotted chance line at accuracy ``level`` (none when unknown); whether it was drawn."""
    if level is None or not np.isfinite(level):
        return False
    ax.axhline(level, **CHANCE, zorder=1)
    return True


def legend(fig, entries: dict, width: str, source: Source | None = None, n_cols: int | None = None) -> None:
    """The figure's legend above its panels (the x label is below them), in as many columns as fit,
    titled with what the figure shows (``Source``: constrained layout does not stack a suptitle and a
    legend outside the panels, so the title is the legend's)."""
    if not entries:
        title(fig, source)
        return
    n_cols = n_cols or (min(len(entries), 4 if width == "page" else 2))
    renderer = fig.canvas.get_renderer()
    for cols in range(n_cols, 0, -1):  # as many columns as the figure's width holds
        legend = fig.legend(list(entries.values()), list(entries.keys()), loc="outside upper center", ncols=cols,
                            frameon=False, title=source.title() if source else None)
        if legend.get_window_extent(renderer).width <= fig.bbox.width * 0.98 or cols == 1:
            return
        legend.remove()


def title(fig, source: Source | None) -> None:
    """The figure's title, for a figure without a legend (``legend`` titles the legend instead)."""
    if source is not None:
        fig.suptitle(source.title())


def save(fig, path: Path, width: str) -> Path:
    """``<path stem><suffix of width>.png`` and ``.pdf`` at the figure's size (no tight bounding box:
    the size is the printed size); without timestamps, so the same runs give the same bytes."""
    stem = path.with_suffix("")
    png = stem.with_name(stem.name + SUFFIX[width]).with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=DPI, metadata={"Software": None})
    fig.savefig(png.with_suffix(".pdf"), metadata={"CreationDate": None})
    plt.close(fig)
    return png


def both_widths(draw, path: Path, *args, **kwargs) -> Path:
    """``draw(*args, width=..., **kwargs)`` (returning its figure) at page and at column width, each
    saved (``save``); returns the page-wide PNG."""
    pngs = [save(draw(*args, width=width, **kwargs), path, width) for width in ("page", "column")]
    return pngs[0]


# --- checks ----------------------------------------------------------------------------------


def texts(fig) -> list:
    """Every text of ``fig`` that is drawn: titles, axis labels, the tick labels of ticks in view,
    legends, annotations and the figure's own texts (not empty, not hidden)."""
    found = [*fig.texts, *(t for legend in fig.legends for t in [legend.get_title(), *legend.get_texts()])]
    for text in (fig._suptitle, fig._supxlabel, fig._supylabel):
        if text is not None:
            found.append(text)
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        found += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        if ax.get_legend() is not None:
            found += ax.get_legend().get_texts()
        axes = [ax.xaxis, ax.yaxis] + [child.xaxis if child._orientation == "x" else child.yaxis
                                       for child in ax.child_axes if hasattr(child, "_orientation")]
        for axis in axes:
            for tick in axis._update_ticks():
                found += [label for label, on in ((tick.label1, tick.label1.get_visible()),
                                                  (tick.label2, tick.label2.get_visible())) if on]
    unique = {id(t): t for t in found}
    return [t for t in unique.values() if t.get_visible() and t.get_text().strip()]


def text_overlaps(fig, tolerance_px: float = 0.5) -> list[tuple[str, str]]:
    """Pairs of texts of ``fig`` whose drawn bounding boxes overlap (by more than ``tolerance_px``)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts(fig)]
    overlapping = []
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        width = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        height = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        if width > tolerance_px and height > tolerance_px:
            overlapping.append((a, b))
    return overlapping


def texts_outside(fig) -> list[str]:
    """Texts that reach beyond the figure's edges (cut off when printed)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    w, h = fig.bbox.width, fig.bbox.height
    return [t.get_text() for t in texts(fig)
            if (box := t.get_window_extent(renderer)).x0 < -1 or box.y0 < -1 or box.x1 > w + 1 or box.y1 > h + 1]


def smallest_font(fig) -> float:
    return min((t.get_fontsize() for t in texts(fig)), default=FONT_PT)


if __name__ == "__main__":
    from analysis import explain_module

    explain_module(__doc__, __file__)
