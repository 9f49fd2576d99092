"""The metric records (forgetlab.metric_registry): what training logs, what the report computes and
what docs/metrics.md shows all come from them, so they must agree with each other and with the
names that recorded runs and reports already use."""

import numpy as np
import pandas as pd
import pytest

from forgetlab import contract, metric_registry as registry
from forgetlab import metrics as M
from tests.conftest import ROOT

# R_with_init: row 0 before training, then after each of 3 stages (the matrix of tests/test_metrics.py)
R3_WITH_INIT = np.array([
    [0.10, 0.20, 0.30],
    [0.90, 0.85, 0.00],
    [0.95, 0.80, 0.20],
    [0.30, 0.60, 0.70],
])


def test_the_logged_metrics_are_the_records_with_a_logged_key_and_equal_them():
    chance = np.array([0.5, 0.5, 0.5])
    final = contract.final_metrics(R3_WITH_INIT, chance)
    logged = [m for m in registry.METRICS if m.logged]
    assert list(final) == [m.logged for m in logged]
    arrays = registry.task_arrays(R3_WITH_INIT, chance=chance)
    for m in logged:
        assert final[m.logged] == m.value(arrays)
    # and by hand
    assert final == pytest.approx({
        "final/acc": (0.3 + 0.6 + 0.7) / 3,
        "final/bwt": ((0.3 - 0.9) + (0.6 - 0.8)) / 2,
        "final/fwt": ((0.85 - 0.2) + (0.2 - 0.3)) / 2,
        "final/forgetting": ((0.95 - 0.3) + (0.85 - 0.6)) / 2,
        "final/bwt_normalized": ((0.3 - 0.9) + (0.6 - 0.8)) / ((0.9 - 0.5) + (0.8 - 0.5)),
    })
    assert np.isnan(contract.final_metrics(R3_WITH_INIT)["final/bwt_normalized"])  # no chance recorded: undefined


def test_names_that_recorded_runs_and_reports_use_do_not_change_unless_renamed_with_care():
    assert (contract.FINAL_ACC, contract.FINAL_BWT, contract.FINAL_FWT, contract.FINAL_FORGETTING) == (
        "final/acc", "final/bwt", "final/fwt", "final/forgetting")
    recorded = ["acc", "bwt", "fwt", "forgetting_max", "forgetting_after", "learning_acc", "intransigence",
                "forgetting_events", "learning_events", "unforgettable", "never_learned", "drop_per_update"]
    now = [registry.current_name(name) for name in recorded]
    assert [m.name for m in registry.METRICS][: len(recorded)] == now  # a new metric's column comes after them
    # a renamed metric's old name names no record, so an old CSV's column is never read as another quantity
    assert not set(registry.RENAMED) & set(registry.BY_NAME) and set(registry.RENAMED.values()) <= set(registry.BY_NAME)


def test_old_csv_columns_are_read_under_the_current_names():
    old = pd.DataFrame({"condition": ["c"], "forgetting_events": [16.6], "forgetting_events_mean": [16.6],
                        "learning_events_ci_low": [1.0], "acc_mean": [0.9]})
    new = registry.with_current_names(old)
    assert list(new.columns) == ["condition", "flips_to_wrong", "flips_to_wrong_mean", "flips_to_correct_ci_low", "acc_mean"]


def test_names_labels_and_logged_keys_are_unique_and_every_field_is_valid():
    for field in ("name", "label", "logged"):
        values = [getattr(m, field) for m in registry.METRICS if getattr(m, field)]
        assert len(values) == len(set(values)), field
    for m in registry.METRICS:
        assert m.level in registry.LEVELS and m.better in (registry.HIGHER, registry.LOWER, None)
        assert m.bounds[0] < m.bounds[1] and m.definition and "\n" not in m.definition
        assert m.logged is None or m.logged.startswith("final/")
        assert m.function is getattr(M, m.function.__name__), "a pure function of forgetlab.metrics"
        assert m.function.__doc__, "with its formula in the docstring"
        known = {registry.TASK: {"R", "r_init", "joint_accuracy", "chance"},
                 registry.SAMPLE: {"correct", "samples_seen", "updates", "presented_at"},
                 registry.UPDATE: {"correct", "presented_update", "every"}}[m.level]
        assert set(m.inputs) <= known, m.name


def test_each_task_metric_is_its_function_on_the_matrix_and_undefined_where_the_run_does_not_define_it():
    joint_accuracy = np.array([0.95, 0.9, 0.8])
    chance = np.array([0.5, 0.5, 0.2])
    arrays = registry.task_arrays(R3_WITH_INIT, joint_accuracy, chance)
    R, r_init = R3_WITH_INIT[1:], R3_WITH_INIT[0]
    expected = {"acc": M.average_accuracy(R), "bwt": M.backward_transfer(R), "fwt": M.forward_transfer(R, r_init),
                "forgetting_max": M.forgetting_max(R), "forgetting_after": M.forgetting_after_training(R),
                "learning_acc": M.learning_accuracy(R), "intransigence": M.intransigence(R, joint_accuracy),
                "bwt_normalized": M.normalized_backward_transfer(R, chance)}
    assert {m.name: m.value(arrays) for m in registry.of_level(registry.TASK)} == expected
    # without the joint runs' accuracy there is no intransigence
    assert np.isnan(registry.INTRANSIGENCE.value(registry.task_arrays(R3_WITH_INIT)))
    # a joint run (one stage of every task) has ACC only; one task has no earlier task
    joint = registry.task_arrays(np.array([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]]))
    one_task = registry.task_arrays(np.array([[0.1], [0.8]]))
    defined = {m.name for m in registry.of_level(registry.TASK) if np.isfinite(m.value(joint))}
    assert defined == {"acc"}
    defined = {m.name for m in registry.of_level(registry.TASK)
               if np.isfinite(m.value({**one_task, "joint_accuracy": np.array([0.9]), "chance": np.array([0.5])}))}
    assert defined == {"acc", "learning_acc", "intransigence"}
    assert list(contract.final_metrics(np.array([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]]))) == ["final/acc"]


def test_sample_metrics_reduce_the_per_sample_functions_of_the_probe():
    rng = np.random.default_rng(3)
    samples_seen = np.arange(0, 100, 10)
    probe = {"correct": rng.random((10, 6)) < 0.6, "samples_seen": samples_seen, "updates": samples_seen // 2,
             "presented_at": np.array([[5, 55], [15, -1], [25, -1], [45, 85], [65, -1], [-1, -1]])}
    args = (probe["correct"], samples_seen, probe["presented_at"])
    forgot, learned = M.transition_counts(*args)
    assert np.isnan(forgot[-1])  # never presented: left out
    values = {m.name: m.value(probe) for m in registry.of_level(registry.SAMPLE)}
    assert values == pytest.approx({
        "flips_to_wrong": np.nanmean(forgot), "flips_to_correct": np.nanmean(learned),
        **M.sample_fractions(*args),
        "drop_per_update": M.accuracy_drop_per_update(probe["correct"], samples_seen, probe["updates"], probe["presented_at"]),
    })


def test_values_lie_in_each_metrics_range():
    rng = np.random.default_rng(0)
    for T in (2, 3, 5):
        R_with_init = rng.uniform(size=(T + 1, T))
        arrays = registry.task_arrays(R_with_init, rng.uniform(size=T), np.zeros(T))  # all learned above chance
        for m in registry.of_level(registry.TASK):
            assert m.bounds[0] <= m.value(arrays) <= m.bounds[1], m.name
    extreme = registry.task_arrays(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), np.array([1.0, 1.0]))
    assert registry.BWT.value(extreme) == -1.0 and registry.FORGETTING_MAX.value(extreme) == 1.0


def test_the_tables_of_docs_metrics_md_are_the_rendering_of_the_records():
    """After adding or changing a record: python -m forgetlab.metric_registry"""
    doc = (ROOT / "docs" / "metrics.md").read_text()
    tables = registry.generated_tables(doc)
    with_records = [level for level in registry.LEVELS if registry.of_level(level)]
    assert sorted(tables) == sorted(with_records), "a table (between its markers) for each level that has records"
    for level in with_records:
        assert tables[level] == registry.markdown_table(level), f"docs/metrics.md: the {level}-level table is stale"
    assert registry.with_tables(doc) == doc


def test_a_stale_table_is_rewritten():
    start, end = registry._markers(registry.TASK)
    stale = f"# Metrics\n\n{start}\n| metric |\n| --- |\n| old |\n{end}\n\nafter\n"
    fresh = registry.with_tables(stale)
    assert registry.generated_tables(fresh)[registry.TASK] == registry.markdown_table(registry.TASK)
    assert fresh.startswith("# Metrics\n\n") and fresh.endswith(f"{end}\n\nafter\n")
    assert "| Forgetting (max, RWalk) | `forgetting_max` | `forgetting_max` | `final/forgetting` |" in fresh
