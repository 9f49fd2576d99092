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
def test_update_resolution_study_sweep_and_report(tmp_path, sqlite_uri):
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
    code = report.main(["--experiment", "update_resolution", "--tracking-uri", sqlite_uri, "--out", str(out),
                        "--cache-dir", str(tmp_path / "cache"), "--no-mlflow"])
    assert code == 0
    text = (out / "report.md").read_text()
    section = text[text.index("## Update resolution"): text.index("## Metric definitions")]
    for heading in ("### Erasure after k updates", "### Time to forget", "### Forgetting events and the evaluation interval",
                    "### Gradient interference"):
        assert heading in section
    for algorithm in ALGORITHMS:  # one row in each of the 5 tables
        assert len(re.findall(rf"\| algorithm={algorithm} [^|]*\| 1 \| [-\d–]", section)) == 5
    for figure in ("erasure_vs_k", "first_order", "interference_matrices", "cosine_traces"):
        assert f"(figures/{figure}.png)" in section and (out / "figures" / f"{figure}.png").stat().st_size > 10_000
    assert len((out / "update_resolution.csv").read_text().splitlines()) == 1 + len(ALGORITHMS)
