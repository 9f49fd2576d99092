"""Every forgetting metric forgetlab reports, one ``Metric`` record each: its name, its label, the pure
function of ``forgetlab.metrics`` that computes it, the ``final/*`` key training logs it under (if
any), which way is better, its natural range and a one-line definition.

Training's final metrics (``forgetlab.contract.final_metrics``), the report's per-run metrics, summary
tables and figures (``analysis/``), the outcomes a study may declare (``analysis/study_report.py``)
and the tables of docs/metrics.md all read these records. Adding a metric is adding its function to
``forgetlab.metrics`` and one record to ``METRICS`` (then ``python -m forgetlab.metric_registry``
rewrites the doc's tables).

A record's function is called with a run's arrays by parameter name: task level ``R`` (T, T), or
(S, T) for a metric of every run, ``r_init`` (T,), ``joint_accuracy`` (T,) and ``chance`` (T,) (``task_arrays``);
sample level the fields of the sample probe, ``correct``, ``samples_seen``, ``updates`` and
``presented_at`` (docs/tracking.md); update level the fields of the update-resolution probe,
``correct``, ``presented_update`` and ``every``.
"""

from __future__ import annotations

import argparse
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forgetlab import metrics

TASK = "task"  # from the accuracy matrix, eval/accuracy_matrix.csv
SAMPLE = "sample"  # from the sample probe, eval/sample_probe.npz
UPDATE = "update"  # from the update-resolution probe, eval/update_probe.npz
LEVELS = (TASK, SAMPLE, UPDATE)

HIGHER, LOWER = "higher", "lower"  # which way is better

# Which runs a task-level metric is defined for (a sample-level one: every run).
EVERY_RUN = "every run"  # joint runs (one stage of all tasks) included
SEQUENTIAL = "sequential"  # one training stage per task: R is (T, T)
SEQUENTIAL_T2 = "sequential, T ≥ 2"  # and a task trained before the last one


@dataclass(frozen=True)
class Metric:
    name: str  # its column in runs.csv and summary.csv (``<name>_mean`` ...) and its name as a study outcome
    label: str  # how tables, figures and docs call it
    level: str  # TASK, SAMPLE or UPDATE
    function: Callable[..., float]  # the pure function of forgetlab.metrics, called with a run's arrays by name
    better: str | None  # HIGHER, LOWER, or None where neither direction is better
    bounds: tuple[float, float]  # the natural range; figures clip intervals to it
    definition: str  # one line: the formula with its source and sign convention (markdown)
    logged: str | None = None  # the final/* key training logs it under; None: computed at report time only
    defined_for: str = EVERY_RUN  # EVERY_RUN, SEQUENTIAL or SEQUENTIAL_T2 (task level)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The arrays the function takes, by name."""
        return _parameters(self.function)

    def defined_on(self, R: np.ndarray) -> bool:
        """Whether a run with the accuracy matrix ``R`` (its training stages x tasks, no init row) has it."""
        if self.defined_for == EVERY_RUN:
            return True
        stages, tasks = np.shape(R)
        return stages == tasks and (tasks >= 2 or self.defined_for == SEQUENTIAL)

    def value(self, arrays: Mapping[str, np.ndarray | None]) -> float:
        """The metric of one run from its arrays (``task_arrays``, or the sample probe); NaN where the run
        does not define it or an input is missing (``joint_accuracy`` without a joint run)."""
        if self.level == TASK and not self.defined_on(arrays["R"]):
            return float("nan")
        inputs = {name: arrays.get(name) for name in self.inputs}
        if any(v is None for v in inputs.values()):
            return float("nan")
        return float(self.function(**inputs))


@functools.cache
def _parameters(function: Callable) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)


def task_arrays(R_with_init: np.ndarray, joint_accuracy: np.ndarray | None = None,
                chance: np.ndarray | None = None) -> dict[str, np.ndarray | None]:
    """The arrays of the task-level functions: R (the accuracy matrix without its init row), r_init
    (the init row), the joint runs' final accuracy per task (``joint_accuracy``) and each task's
    accuracy by guessing (``chance``, which runs record in their sample probe), when known."""
    R_with_init = np.asarray(R_with_init, dtype=float)
    chance = None if chance is None else np.asarray(chance, dtype=float)
    return {"R": R_with_init[1:], "r_init": R_with_init[0], "joint_accuracy": joint_accuracy, "chance": chance}


ACC = Metric(
    "acc", "ACC", TASK, metrics.average_accuracy, HIGHER, (0.0, 1.0),
    "ACC = (1/T) Σ_j R[T−1, j], the final accuracy averaged over tasks (Lopez-Paz & Ranzato 2017)",
    logged="final/acc",
)
BWT = Metric(
    "bwt", "BWT", TASK, metrics.backward_transfer, HIGHER, (-1.0, 1.0),
    "BWT = 1/(T−1) Σ_{j<T−1} (R[T−1, j] − R[j, j]) (Lopez-Paz & Ranzato 2017, the paper's 1/(T−1)); < 0: accuracy lost",
    logged="final/bwt", defined_for=SEQUENTIAL_T2,
)
FWT = Metric(
    "fwt", "FWT", TASK, metrics.forward_transfer, HIGHER, (-1.0, 1.0),
    "FWT = 1/(T−1) Σ_{j≥1} (R[j−1, j] − R_init[j]) (Lopez-Paz & Ranzato 2017); > 0: earlier tasks helped the next one",
    logged="final/fwt", defined_for=SEQUENTIAL_T2,
)
FORGETTING_MAX = Metric(
    "forgetting_max", "Forgetting (max, RWalk)", TASK, metrics.forgetting_max, LOWER, (-1.0, 1.0),
    "F_max = 1/(T−1) Σ_{j<T−1} (max_{l<T−1} R[l, j] − R[T−1, j]) (Chaudhry et al. 2018); > 0: accuracy lost",
    logged="final/forgetting", defined_for=SEQUENTIAL_T2,
)
FORGETTING_AFTER = Metric(
    "forgetting_after", "Forgetting (after training, Avalanche)", TASK, metrics.forgetting_after_training, LOWER,
    (-1.0, 1.0), "F_after = 1/(T−1) Σ_{j<T−1} (R[j, j] − R[T−1, j]) = −BWT exactly (Lomonaco et al. 2021); > 0: accuracy lost",
    defined_for=SEQUENTIAL_T2,
)
BWT_NORMALIZED = Metric(
    "bwt_normalized", "BWT / (learning − chance)", TASK, metrics.normalized_backward_transfer, HIGHER, (-np.inf, np.inf),
    "nBWT = Σ_{j<T−1} (R[T−1, j] − R[j, j]) / Σ_{j<T−1} (R[j, j] − c_j), c_j = 1/(active output units of task j): "
    "the share of what was learned above chance that was lost (−1: back to chance); undefined (not 0) when "
    "nothing was learned above chance, so it cannot reward not learning",
    logged="final/bwt_normalized", defined_for=SEQUENTIAL_T2,
)
LEARNING_ACC = Metric(
    "learning_acc", "Learning accuracy", TASK, metrics.learning_accuracy, HIGHER, (0.0, 1.0),
    "LA = (1/T) Σ_j R[j, j], each task's accuracy right after training it (Riemer et al. 2019)",
    defined_for=SEQUENTIAL,
)
INTRANSIGENCE = Metric(
    "intransigence", "Intransigence (vs joint)", TASK, metrics.intransigence, LOWER, (-1.0, 1.0),
    "I = (1/T) Σ_j (A_joint[j] − R[j, j]), A_joint the final accuracy of the joint runs of the same condition "
    "(mean over seeds) (Chaudhry et al. 2018); > 0: learned less well than joint training",
    defined_for=SEQUENTIAL,
)
FLIPS_TO_WRONG = Metric(
    "flips_to_wrong", "Flips to wrong per sample (between evaluation points)", SAMPLE, metrics.mean_flips_to_wrong,
    LOWER, (0.0, np.inf), "correct → wrong changes of a probe sample between consecutive evaluation points from its "
    "first presentation on, mean over the presented probe samples; not Toneva et al.'s forgetting events, which are "
    "counted at presentations (`toneva_forgetting_events`) and are far fewer",
)
FLIPS_TO_CORRECT = Metric(
    "flips_to_correct", "Flips to correct per sample (between evaluation points)", SAMPLE, metrics.mean_flips_to_correct,
    None, (0.0, np.inf), "wrong → correct changes, counted the same way",
)
UNFORGETTABLE = Metric(
    "unforgettable", "Never-flipped samples (evaluation points)", SAMPLE, metrics.unforgettable_fraction, HIGHER, (0.0, 1.0),
    "fraction of the presented probe samples correct at some evaluation point and never flipped to wrong after their "
    "first presentation (Toneva et al.'s unforgettable, counted at evaluation points: `toneva_unforgettable` counts "
    "at presentations)",
)
NEVER_LEARNED = Metric(
    "never_learned", "Never-learned samples", SAMPLE, metrics.never_learned_fraction, LOWER, (0.0, 1.0),
    "fraction of the presented probe samples never correct after their first presentation",
)
DROP_PER_UPDATE = Metric(
    "drop_per_update", "Accuracy drop per update", SAMPLE, metrics.accuracy_drop_per_update, LOWER, (-1.0, 1.0),
    "D = Σ_e d_e / Σ_e u_e over consecutive evaluation points: d_e the accuracy drop on the probe samples presented "
    "before the interval and not in it, u_e its updates; > 0: accuracy lost",
)

TONEVA_EVENTS = Metric(
    "toneva_forgetting_events", "Forgetting events per sample (Toneva et al., at presentations)", UPDATE,
    metrics.mean_toneva_forgetting_events, LOWER, (0.0, np.inf),
    "presentations at which a probe sample is wrong after one at which it was correct, correctness taken with the "
    "weights before the presenting update (Toneva et al. 2019), mean over the presented probe samples; needs the "
    "update probe at every update (`eval.probe_every=1`)",
)
TONEVA_UNFORGETTABLE = Metric(
    "toneva_unforgettable", "Unforgettable samples (Toneva et al., at presentations)", UPDATE,
    metrics.toneva_unforgettable_fraction, HIGHER, (0.0, 1.0),
    "fraction of the presented probe samples correct at some presentation and with no forgetting event (Toneva et al. "
    "2019); needs `eval.probe_every=1`",
)

# In the order of the report's tables and CSV columns.
METRICS: tuple[Metric, ...] = (
    ACC, BWT, FWT, FORGETTING_MAX, FORGETTING_AFTER, LEARNING_ACC, INTRANSIGENCE,
    FLIPS_TO_WRONG, FLIPS_TO_CORRECT, UNFORGETTABLE, NEVER_LEARNED, DROP_PER_UPDATE, BWT_NORMALIZED,
    TONEVA_EVENTS, TONEVA_UNFORGETTABLE,
)
BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
# Names that recorded CSVs (runs.csv, summary.csv, ...) used before a metric was renamed, and its name now:
# the every-evaluation-point count was called "forgetting_events" though it is not Toneva et al.'s count.
RENAMED: dict[str, str] = {"forgetting_events": "flips_to_wrong", "learning_events": "flips_to_correct"}
SUMMARY_SUFFIXES = ("_mean", "_std", "_sd", "_ci_low", "_ci_high", "_n")


def current_name(column: str) -> str:
    """A CSV column of a metric (``<name>`` or ``<name>_mean``, ...) under the metric's current name."""
    for suffix in ("", *SUMMARY_SUFFIXES):
        base = column.removesuffix(suffix) if suffix else column
        if (not suffix or column.endswith(suffix)) and base in RENAMED:
            return RENAMED[base] + suffix
    return column


def with_current_names(frame):
    """A table read from a CSV written before a rename (a pandas DataFrame), its metric columns renamed."""
    return frame.rename(columns=current_name)


def of_level(level: str) -> list[Metric]:
    return [m for m in METRICS if m.level == level]


# --- docs/metrics.md -------------------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def _bound(x: float) -> str:
    return "∞" if x == np.inf else "−∞" if x == -np.inf else f"{x:g}".replace("-", "−")


def markdown_table(level: str) -> str:
    """The table of ``level``'s metrics in docs/metrics.md."""
    rows = ["| metric | column | function | logged as | defined for | better | range | definition |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m in of_level(level):
        low, high = m.bounds
        cells = [m.label, f"`{m.name}`", f"`{m.function.__name__}`", f"`{m.logged}`" if m.logged else "–",
                 m.defined_for, m.better or "–",
                 f"{'(' if low == -np.inf else '['}{_bound(low)}, {_bound(high)}{')' if high == np.inf else ']'}",
                 m.definition.replace("|", "\\|")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _markers(level: str) -> tuple[str, str]:
    return (f"<!-- metric table: {level} level (python -m forgetlab.metric_registry) -->",
            f"<!-- end of the {level}-level metric table -->")


def generated_tables(doc: str) -> dict[str, str]:
    """The tables between the markers of each level in the text of docs/metrics.md, as they are."""
    out = {}
    for level in LEVELS:
        start, end = _markers(level)
        if start in doc:
            out[level] = doc.split(start, 1)[1].split(end, 1)[0].strip("\n")
    return out


def with_tables(doc: str) -> str:
    """``doc`` with the table between the markers of each level rendered afresh."""
    for level in generated_tables(doc):
        start, end = _markers(level)
        before, rest = doc.split(start, 1)
        doc = f"{before}{start}\n{markdown_table(level)}\n{end}{rest.split(end, 1)[1]}"
    return doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m forgetlab.metric_registry",
        description="Rewrite the metric tables of docs/metrics.md (between their markers) from the Metric records.")
    parser.add_argument("doc", nargs="?", type=Path, default=DOC, help="the file to rewrite (default: docs/metrics.md)")
    path = parser.parse_args(argv).doc
    path.write_text(with_tables(path.read_text()))


if __name__ == "__main__":
    main()
