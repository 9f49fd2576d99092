"""The report's intervals, condition order, figures and LaTeX tables on synthetic runs of crossed
conditions (algorithm x scenario x joint), without MLflow, so they run in the fast subset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from analysis import aggregate, figures, report, style
from analysis.load import RunArtifacts
from tests.visual import checked

ALGORITHMS = ["rtrl", "bptt_truncated"]  # not in name order, which puts bptt_truncated first
SCENARIOS = ["class", "task"]  # not in the declared order either: task, domain, class
SAMPLES = np.array([0, 50, 100, 150, 200])
TASKS = np.array(["digits_01", "digits_23"])
PRESENTED = np.array([[10], [30], [60], [110], [130], [160]])  # 3 probe samples per task


def _artifacts(rng: np.random.Generator, joint: bool) -> RunArtifacts:
    """Two tasks, evaluations every 50 samples; a joint run has one stage."""
    stage = np.array([-1, 0, 0, 0, 0] if joint else [-1, 0, 0, 1, 1])
    boundary = np.isin(SAMPLES, [0, 200] if joint else [0, 100, 200])
    accuracy = rng.uniform(0.2, 1.0, size=(len(SAMPLES), len(TASKS)))
    curve = pd.DataFrame({
        "samples_seen": np.repeat(SAMPLES, len(TASKS)), "updates": np.repeat(SAMPLES, len(TASKS)),
        "task": np.tile(np.arange(len(TASKS)), len(SAMPLES)), "accuracy": accuracy.ravel(), "loss": 0.1,
        "stage": np.repeat(stage, len(TASKS)), "boundary": np.repeat(boundary, len(TASKS)),
    })
    R = accuracy[boundary]
    matrix = pd.DataFrame({"after": ["init", *map(str, range(len(R) - 1))], "task_0": R[:, 0], "task_1": R[:, 1]})
    probe = {"correct": rng.random((len(SAMPLES), len(PRESENTED))) < 0.7, "samples_seen": SAMPLES, "updates": SAMPLES,
             "presented_at": PRESENTED, "task_names": TASKS}
    return RunArtifacts(matrix=matrix, curve=curve, probe=probe)


@pytest.fixture(scope="module")
def study():
    """2 algorithms x 2 scenarios x (sequential, joint) x 2 seeds, as MLflow's search would return them."""
    rng = np.random.default_rng(0)
    rows, artifacts = [], {}
    for algorithm in ALGORITHMS:
        for scenario in SCENARIOS:
            for joint in ("False", "True"):
                for seed in ("0", "1"):
                    run_id = f"{algorithm}-{scenario}-{joint}-{seed}"
                    rows.append({
                        "run_id": run_id, "status": "FINISHED", "tags.mlflow.runName": run_id,
                        "params.algorithm.name": algorithm, "params.network.name": "rnn",
                        "params.algorithm.h": "4" if algorithm == "bptt_truncated" else None,
                        "params.task_sequence.scenario": scenario, "params.task_sequence.joint": joint,
                        "params.seed": seed, "params.tracking.uri": f"sqlite:///{run_id}.db",
                    })
                    artifacts[run_id] = _artifacts(rng, joint == "True")
    return pd.DataFrame(rows), artifacts


def _analyse(runs: pd.DataFrame, artifacts: dict) -> dict:
    """The steps of report.build_report between reading the runs and drawing."""
    keys = aggregate.condition_keys(runs)
    runs = aggregate.add_conditions(runs, keys)
    edges = aggregate.retention_bin_edges(artifacts, n_bins=4)
    per_run, retention = {}, {}
    for run_id in runs["run_id"]:
        per_run[run_id], retention[run_id] = aggregate.run_metrics(artifacts[run_id], edges)
    analysed = runs.join(pd.DataFrame.from_dict(per_run, orient="index"), on="run_id")
    analysed = aggregate.add_reference_metrics(analysed, artifacts, keys)
    order = aggregate.condition_order(analysed, keys)
    analysed = report._sorted_by_condition(analysed, order)
    conditions = aggregate.condition_table(analysed, keys, order)
    summary = report.with_condition_columns(aggregate.summarize(analysed, order), conditions)
    return {"keys": keys, "analysed": analysed, "retention": retention, "edges": edges, "order": order,
            "conditions": conditions, "summary": summary, "layout": figures.build_layout(conditions, keys)}


def _shuffled(runs: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return runs.iloc[rng.permutation(len(runs)), rng.permutation(runs.shape[1])].reset_index(drop=True)


def test_t_interval_is_mean_plus_minus_t_quantile_times_standard_error():
    seeds = np.array([0.2, 0.5, 0.9])
    low, high = aggregate.t_interval(seeds)
    half = stats.t.ppf(0.975, 2) * np.std(seeds, ddof=1) / np.sqrt(3)
    assert (low, high) == pytest.approx((seeds.mean() - half, seeds.mean() + half), abs=1e-12)
    # with 3 seeds it reaches beyond them: a percentile bootstrap never leaves [min, max]
    assert low < seeds.min() and high > seeds.max()
    # per column, NaN seeds ignored; fewer than 2 finite values give no interval
    low, high = aggregate.t_interval(np.array([[1.0, np.nan], [2.0, np.nan], [4.0, 5.0]]))
    half = stats.t.ppf(0.975, 2) * np.std([1, 2, 4], ddof=1) / np.sqrt(3)
    assert low[0] == pytest.approx(7 / 3 - half) and high[0] == pytest.approx(7 / 3 + half)
    assert np.isnan(low[1]) and np.isnan(high[1])
    assert aggregate.t_errorbar([1.0, 2.0, 4.0]) == pytest.approx((7 / 3 - half, 7 / 3 + half))


def test_summary_gives_each_metric_its_number_of_seeds_and_the_t_interval(study):
    result = _analyse(*study)
    summary = result["summary"].set_index("condition")
    analysed = result["analysed"]
    sequential = "algorithm=rtrl scenario=task joint=False"
    values = analysed.loc[analysed["condition"] == sequential, "acc"].to_numpy()
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    assert summary.loc[sequential, ["acc_ci_low", "acc_ci_high"]].tolist() == pytest.approx(
        [values.mean() - half, values.mean() + half])
    assert summary.loc[sequential, "acc_n"] == 2 and summary.loc[sequential, "bwt_n"] == 2
    joint = "algorithm=rtrl scenario=task joint=True"
    assert summary.loc[joint, "acc_n"] == 2 and summary.loc[joint, "bwt_n"] == 0  # BWT is undefined for joint runs
    # the params that vary, one column each, instead of one long label
    assert list(result["summary"].columns[:4]) == ["condition", "algorithm", "scenario", "joint"]


def test_conditions_order_and_layout_do_not_depend_on_the_order_runs_come_back_in(study):
    runs, artifacts = study
    first, second = _analyse(runs, artifacts), _analyse(_shuffled(runs), artifacts)
    assert first["keys"] == second["keys"]
    assert first["order"] == second["order"]
    pd.testing.assert_frame_equal(first["conditions"], second["conditions"])
    pd.testing.assert_frame_equal(first["summary"], second["summary"])
    pd.testing.assert_frame_equal(first["layout"].frame, second["layout"].frame)
    layout = first["layout"]
    # algorithms by name, scenarios in their declared order: not the order of the runs
    assert layout.hue_order == ["bptt_truncated", "rtrl"] and layout.col_order == ["task", "class"]
    assert first["order"][:2] == ["algorithm=bptt_truncated scenario=task joint=False",
                                  "algorithm=bptt_truncated scenario=task joint=True"]
    # one colour per learner (here its algorithm's name: these runs have no label), the same in every report
    assert layout.palette == style.learner_palette(["rtrl", "bptt_truncated"])
    assert layout.palette["bptt_truncated"] != layout.palette["rtrl"]


def test_a_swept_param_other_than_algorithm_and_scenario_becomes_the_hue():
    table = pd.DataFrame(
        {"params.algorithm.lr": ["0.5", "0.05", "0.5", "0.05"],
         "params.task_sequence.scenario": ["class", "class", "task", "task"],
         "algorithm": "backprop", "training": "sequential", "runs": 3},
        index=["lr=0.5 scenario=class", "lr=0.05 scenario=class", "lr=0.5 scenario=task", "lr=0.05 scenario=task"],
    )
    layout = figures.build_layout(table, ["params.algorithm.lr", "params.task_sequence.scenario"])
    assert layout.hue_title == "lr" and layout.hue_order == ["0.05", "0.5"]  # numerically
    assert layout.col_order == ["task", "class"] and layout.row_order == []


def test_seen_task_accuracy_averages_the_tasks_trained_so_far_and_ends_at_acc(study):
    _, artifacts = study
    sequential = artifacts["rtrl-class-False-0"]
    seen = aggregate.seen_task_accuracy(sequential.curve, joint=False).set_index("samples_seen")["accuracy"]
    curve = sequential.curve.set_index(["samples_seen", "task"])["accuracy"]
    assert list(seen.index) == [50, 100, 150, 200]  # from the first point after training began
    assert seen[100] == pytest.approx(curve[(100, 0)])  # the point ending stage 0 belongs to it
    assert seen[150] == pytest.approx((curve[(150, 0)] + curve[(150, 1)]) / 2)
    assert seen.iloc[-1] == pytest.approx(aggregate.run_metrics(sequential, np.linspace(0, 200, 3))[0]["acc"])
    joint = artifacts["rtrl-class-True-0"]
    seen = aggregate.seen_task_accuracy(joint.curve, joint=True).set_index("samples_seen")["accuracy"]
    assert seen[50] == pytest.approx(joint.curve.loc[joint.curve["samples_seen"] == 50, "accuracy"].mean())


def _draw(runs: pd.DataFrame, artifacts: dict, out) -> dict:
    result = _analyse(runs, artifacts)
    out.mkdir()
    return report.make_figures(
        result["analysed"], artifacts, result["retention"], result["edges"], result["layout"], out
    )


@pytest.mark.slow
def test_every_figure_is_a_png_and_a_pdf_at_page_and_column_width(study, tmp_path):
    written = _draw(*study, tmp_path / "figures")
    assert set(written) == set(report.CAPTIONS)
    for png in written.values():
        for suffix, inches in (("", style.PAGE), ("-column", style.COLUMN)):
            path = png.with_name(png.stem + suffix + ".png")
            assert path.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
            with Image.open(path) as image:
                assert image.info["dpi"][0] == pytest.approx(style.DPI, abs=1)
                assert image.size[0] == pytest.approx(inches * style.DPI, abs=1)
            assert path.stat().st_size < 1_000_000


QUICKSTART_LEARNERS = {"backprop": "backprop (MLP)", "bptt_epochwise": "epochwise BPTT", "bptt_truncated": "BPTT(4; 2)",
                       "rtrl": "RTRL"}
QUICKSTART_SCENARIOS = {"class": 0.1, "task": 0.5, "domain": 0.5}


def _quickstart_run(rng: np.random.Generator, joint: bool, n_tasks: int = 5, per_task: int = 675) -> RunArtifacts:
    """A run shaped like the quickstart's: 5 tasks of 675 samples, evaluated every 100 samples and at
    each task's end, a probe of 100 samples; accuracies that fall after each task, as they do."""
    ends = [per_task * n_tasks] if joint else [per_task * (k + 1) for k in range(n_tasks)]
    samples = np.unique(np.concatenate([[0], np.arange(100, ends[-1], 100), ends]))
    stage = np.array([-1] + [int(np.searchsorted(ends, s)) for s in samples[1:]])
    accuracy = np.clip(rng.normal(0.5, 0.05, (len(samples), n_tasks)), 0, 1)
    for i, s in enumerate(samples[1:], 1):
        for t in range(n_tasks):
            if joint or t == stage[i]:
                accuracy[i, t] = np.clip(rng.normal(0.97, 0.02), 0, 1)
            elif t < stage[i]:
                accuracy[i, t] = np.clip(rng.normal(0.2, 0.15), 0, 1)
    boundary = np.isin(samples, [0, *ends])
    names = np.array([f"digits_{2 * t}{2 * t + 1}" for t in range(n_tasks)])
    curve = pd.DataFrame({
        "samples_seen": np.repeat(samples, n_tasks), "updates": np.repeat(samples, n_tasks),
        "task": np.tile(np.arange(n_tasks), len(samples)), "accuracy": accuracy.ravel(), "loss": 0.1,
        "stage": np.repeat(stage, n_tasks), "boundary": np.repeat(boundary, n_tasks),
    })
    R = accuracy[boundary]
    matrix = pd.DataFrame({"after": ["init", *map(str, range(len(R) - 1))],
                           **{f"task_{t}": R[:, t] for t in range(n_tasks)}})
    presented = (np.arange(100) * ends[-1] // 100 + 50)[:, None]
    probe = {"correct": rng.random((len(samples), 100)) < 0.6, "samples_seen": samples, "updates": samples,
             "presented_at": presented, "task_names": names}
    return RunArtifacts(matrix=matrix, curve=curve, probe=probe)


@pytest.fixture(scope="module")
def quickstart():
    """The quickstart's conditions (4 learners x 3 scenarios x sequential and joint, 3 seeds), with the
    learner labels and chance accuracies its runs record."""
    rng = np.random.default_rng(2)
    rows, artifacts = [], {}
    for algorithm, label in QUICKSTART_LEARNERS.items():
        for scenario, chance in QUICKSTART_SCENARIOS.items():
            for joint in ("False", "True"):
                for seed in ("0", "1", "2"):
                    run_id = f"{algorithm}-{scenario}-{joint}-{seed}"
                    rows.append({"run_id": run_id, "status": "FINISHED", "tags.mlflow.runName": run_id,
                                 "params.algorithm.name": algorithm, "params.task_sequence.name": "split_digits",
                                 "params.network.name": "mlp" if algorithm == "backprop" else "rnn",
                                 "params.task_sequence.scenario": scenario, "params.task_sequence.joint": joint,
                                 "params.seed": seed, "tags.forgetlab.learner_label": label,
                                 "tags.forgetlab.chance_accuracy": str(chance)})
                    artifacts[run_id] = _quickstart_run(rng, joint == "True")
    return pd.DataFrame(rows), artifacts


@pytest.mark.slow
def test_every_figure_of_a_quickstart_shaped_report_passes_the_visual_checks(quickstart, tmp_path, monkeypatch):
    """Printed size, fonts of at least 7 pt, no overlapping and no cut-off text, at page and column width."""
    runs, artifacts = quickstart
    result = _analyse(runs, artifacts)
    layout = figures.build_layout(result["conditions"], result["keys"], style.Source("quickstart", "split_digits", "3"))
    assert layout.hue_order == list(QUICKSTART_LEARNERS.values())  # labels, in one order, in one colour each
    assert layout.palette == style.learner_palette(QUICKSTART_LEARNERS.values())
    assert layout.chance(["algorithm=rtrl scenario=class joint=False"]) == pytest.approx(0.1)
    seen = checked(monkeypatch)
    (tmp_path / "figures").mkdir()
    report.make_figures(result["analysed"], artifacts, result["retention"], result["edges"], layout,
                        tmp_path / "figures")
    assert len(seen) == 2 * len(report.CAPTIONS)
    problems = {c.name: c.problems() for c in seen if c.problems()}
    assert problems == {}


def test_figure_checks_find_overlapping_and_tiny_text(monkeypatch, tmp_path):
    import matplotlib.pyplot as plt

    seen = checked(monkeypatch)
    fig = plt.figure(figsize=(style.COLUMN, 2))
    fig.text(0.1, 0.5, "one label", fontsize=8)
    fig.text(0.12, 0.5, "another label", fontsize=5)
    fig.text(0.9, 0.9, "cut off at the edge", fontsize=8)
    style.save(fig, tmp_path / "bad", "column")
    (bad,) = seen
    assert "a 5.0 pt font" in bad.problems()
    assert "texts overlap: 'one label' and 'another label'" in bad.problems()
    assert "text cut off: 'cut off at the edge'" in bad.problems()


@pytest.mark.slow
def test_figures_are_byte_identical_whatever_the_run_order(study, tmp_path):
    runs, artifacts = study
    first, second = _draw(runs, artifacts, tmp_path / "first"), _draw(_shuffled(runs), artifacts, tmp_path / "second")
    for key, png in first.items():
        for suffix in (".png", ".pdf"):
            assert png.with_suffix(suffix).read_bytes() == second[key].with_suffix(suffix).read_bytes(), (key, suffix)


def test_summary_tables_as_latex_for_a_paper(study):
    summary = _analyse(*study)["summary"]
    latex = report.summary_latex(summary, report.condition_columns(summary), report.TASK_LEVEL, "tab:x-task-level")
    assert "\\toprule" in latex and "\\bottomrule" in latex
    assert "\\centering" in latex and "\\label{tab:x-task-level}" in latex and "\\caption{" in latex
    assert "\\resizebox{\\linewidth}{!}{%\n\\begin{tabular}" in latex and "\\end{tabular}%\n}" in latex
    assert "bptt\\_truncated" in latex and "bptt_truncated" not in latex.replace("bptt\\_truncated", "")
    header = next(line for line in latex.splitlines() if line.startswith("learner"))
    assert header.split(" & ")[:4] == ["learner", "scenario", "training", "n"]  # no raw True/False
    assert "True" not in latex and "False" not in latex
    joint_row = next(line for line in latex.splitlines() if line.startswith("rtrl & task & joint"))
    shown = len(report.TASK_LEVEL) - len(report.LATEX_LEFT_OUT)  # F_after = -BWT is left out
    assert header.count(" & ") == 3 + shown
    assert joint_row.count("--") == shown - 1  # only ACC is defined for joint training


def test_a_narrower_selection_gets_its_own_report_directory():
    full = report.default_out("quickstart")
    assert full == report.REPORTS / "quickstart"
    filtered = report.default_out("quickstart", filter_string="params.`task_sequence.scenario` = 'class'")
    other = report.default_out("quickstart", filter_string="params.`task_sequence.scenario` = 'task'")
    assert filtered.parent == full and filtered.name.startswith("filtered-") and filtered != other
    assert filtered == report.default_out("quickstart", filter_string="params.`task_sequence.scenario` = 'class'")
    assert report.default_out("quickstart", sweep_id="20261126-051925-ab12cd").name == "sweep-20261126-051925-ab12cd"


def test_intervals_are_clipped_to_the_metrics_range():
    from forgetlab.metric_registry import BY_NAME

    seeds = [0.9, 0.99, 1.0]  # the t-interval of three accuracies near 1 reaches above it
    low, high = aggregate.t_errorbar(seeds)
    assert high > 1
    assert style.clipped_t_errorbar(BY_NAME["acc"].bounds)(seeds) == (pytest.approx(low), 1.0)
    assert style.metric_label(BY_NAME["bwt"]) == "BWT ↑" and style.metric_label(BY_NAME["forgetting_max"]).endswith(" ↓")
