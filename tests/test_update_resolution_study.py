"""`experiment=update_resolution` end to end, made tiny: the sweep over the four learners writes
eval/update_probe.npz, and the report shows erasure against k and the interference of each."""

from __future__ import annotations

import re

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from analysis import report
from forgetlab.contract import UPDATE_PROBE_FILE
from tests.conftest import run_train
from tests.visual import checked

ALGORITHMS = {"backprop", "bptt_epochwise", "bptt_truncated", "rtrl"}


def test_the_preset_runs_every_learner_with_the_probe_and_interference(compose_cfg):
    from omegaconf import OmegaConf

    from forgetlab.config import validate
    from tests.conftest import ROOT

    learners = OmegaConf.load(ROOT / "conf" / "experiment" / "update_resolution.yaml").hydra.sweeper.params.learner
    assert sorted(learners.split(",")) == ["mlp_backprop", "rnn_bptt_epochwise", "rnn_bptt_truncated", "rnn_rtrl"]
    for learner in learners.split(","):
        cfg = compose_cfg("experiment=update_resolution", f"learner={learner}")
        validate(cfg)
        assert (cfg.eval.probe_every, cfg.eval.update_probe_per_task, cfg.eval.interference) == (1, 20, True)


@pytest.mark.slow
def test_update_resolution_study_sweep_and_report(tmp_path, sqlite_uri, monkeypatch):
    proc = run_train(
        "-m", "experiment=update_resolution", "seed=0", "task_sequence.n_tasks=2", "task_sequence.test_size=0.9",
        "eval.update_probe_per_task=4", f"tracking.uri={sqlite_uri}", f"tracking.artifact_location={tmp_path}/art",
        f"hydra.sweep.dir={tmp_path}/sweep",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(sqlite_uri)
    runs = [r for r in client.search_runs([client.get_experiment_by_name("update_resolution").experiment_id])
            if r.data.tags.get("forgetlab.kind") == "train"]
    assert {r.data.params["algorithm.name"] for r in runs} == ALGORITHMS
    for run in runs:
        path = client.download_artifacts(run.info.run_id, f"eval/{UPDATE_PROBE_FILE}", str(tmp_path / run.info.run_id))
        with np.load(path, allow_pickle=False) as npz:
            u = {k: npz[k] for k in npz.files}
        U = int(run.data.metrics["updates"])
        assert int(u["every"]) == 1 and bool(u["interference"])
        np.testing.assert_array_equal(u["updates"], np.arange(U + 1))
        assert u["correct"].shape == u["loss"].shape == (U + 1, 8) and u["correct"].dtype == bool
        assert u["presented_update"].shape == (8, 1) and np.all((u["presented_update"] >= 1) & (u["presented_update"] <= U))
        assert u["predicted"].shape == u["measured"].shape == (U, 8)
        assert u["task_cosine"].shape == (U, 2) and u["consecutive_cosine"].shape == (U,)
        assert u["interference_matrix"].shape == (3, 2, 2)  # init and the end of each task
        assert u["update_stage"].shape == (U,) and list(u["stage_task"]) == [0, 1]
        assert [str(n) for n in u["task_names"]] == ["digits_01234", "digits_56789"]

    out = tmp_path / "report"
    figures = checked(monkeypatch)
    code = report.main(["--experiment", "update_resolution", "--tracking-uri", sqlite_uri, "--out", str(out),
                        "--cache-dir", str(tmp_path / "cache"), "--no-mlflow"])
    assert code == 0
    # every figure, the update-resolution section's included, at both widths, passes the visual checks
    assert {c.name for c in figures} >= {f"{n}{w}.png" for n in ("erasure_vs_k", "first_order", "interference_matrices",
                                                                 "cosine_traces") for w in ("", "-column")}
    assert {c.name: c.problems() for c in figures if c.problems()} == {}
    text = (out / "report.md").read_text()
    section = text[text.index("## Update resolution"): text.index("## Metric definitions")]
    headings = ["### Time to forget (the headline)", "### Forgetting events at presentations (Toneva et al.)",
                "### Erasure after k updates", "### Flips to wrong and the evaluation interval", "### Gradient interference"]
    assert [line for line in section.splitlines() if line in headings] == headings  # the survival curve first
    for algorithm in ALGORITHMS:  # one row in each of the 6 tables
        assert len(re.findall(rf"\| algorithm={algorithm} [^|]*\| 1 \| [-\d–]", section)) == 6
    for figure in ("erasure_vs_k", "first_order", "interference_matrices", "cosine_traces"):
        assert f"(figures/{figure}.png)" in section and (out / "figures" / f"{figure}.png").stat().st_size > 10_000
    assert len((out / "update_resolution.csv").read_text().splitlines()) == 1 + len(ALGORITHMS)


def _history(every: int) -> dict:
    """A hand-made probe history of 2 samples and 8 updates, read every ``every`` updates: sample 0
    presented at updates 2 and 6 and wrong from update 4 to 5, sample 1 presented at update 4 and
    wrong from update 6 on; one step of every update in task 1 (stage 1 from update 5)."""
    correct = np.ones((9, 2), dtype=bool)
    correct[4:6, 0] = False
    correct[6:, 1] = False
    rows = np.arange(0, 9, every)
    return {
        "every": np.int64(every), "updates": rows, "correct": correct[rows], "loss": (~correct[rows]).astype(np.float32),
        "presented_update": np.array([[2, 6], [4, -1]]), "update_stage": np.array([0, 0, 0, 0, 1, 1, 1, 1]),
        "stage_task": np.array([0, 1]), "interference": np.bool_(False),
    }


def test_update_metrics_of_a_hand_made_history_read_every_update_and_every_second():
    from analysis.update_resolution import earlier_task_cosines, erasure_curve, in_rows, run_update_metrics

    one = run_update_metrics(_history(1))
    # anchors: (0, u=2, horizon 3), (0, u=6, horizon 2), (1, u=4, horizon 4); all correct when presented
    assert one["erasure_1_pairs"] == 3 and one["erasure_1"] == 0.0
    assert one["erasure_10_pairs"] == 0 and np.isnan(one["erasure_10"])
    assert one["flips_1"] == 1.0 and one["flips_1_samples"] == 2  # one flip to wrong each
    # at presentations (the row before each): sample 0 right at 2, wrong at 6; sample 1 right at 4
    assert one["toneva_events"] == 0.5 and one["toneva_unforgettable"] == 0.5
    two = run_update_metrics(_history(2))
    assert np.isnan(two["erasure_1"]) and two["erasure_1_pairs"] == 0  # a lag of 1 is not a multiple of 2
    assert np.isnan(two["flips_1"]) and two["flips_1_samples"] == 0
    assert np.isnan(two["toneva_events"])  # no row before every presentation
    # lag 2: wrong at update 4 after the presentation at 2, correct at 8 after 6, wrong at 6 after 4
    np.testing.assert_allclose(erasure_curve(_history(1), [1, 2, 4]), [0.0, 2 / 3, 1.0])
    np.testing.assert_allclose(erasure_curve(_history(2), [1, 2, 4]), [np.nan, 2 / 3, 1.0])
    # every 6: sample 0's presentations at updates 2 and 6 both become row 1: one anchor
    assert in_rows(_history(6))[3].tolist() == [[1, -1], [1, -1]]
    history = {**_history(1), "task_cosine": np.full((8, 2), 0.5)}
    earlier = earlier_task_cosines(history)
    assert np.isnan(earlier[:4]).all() and (earlier[4:, 0] == 0.5).all() and np.isnan(earlier[4:, 1]).all()
