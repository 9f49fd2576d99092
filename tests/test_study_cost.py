"""benchmarks/study_cost.py counts a study run's work as the trainer does it."""

import pytest

from benchmarks import study_cost
from forgetlab import api
from forgetlab import trainer as trainer_module


def test_points_per_run_counts_the_initial_point_the_scheduled_ones_and_each_stage_end():
    assert study_cost.points_per_run([6400] * 5, 640) == 51  # 9 inside each stage + its end, + the initial point
    assert study_cost.points_per_run([32000], 640) == 51  # joint: 49 inside + the end + the initial point
    assert study_cost.points_per_run([100, 100], 0) == 3
    assert study_cost.points_per_run([100, 150], 100) == 4  # 100 is the first stage's end, 200 lies inside the second


@pytest.mark.parametrize("stages", [[6, 6], [7, 5, 9]])
def test_points_per_run_matches_the_trainers_evaluations(stages):
    """The count equals the evaluations a run makes (every sample a batch of its own)."""
    for every in (0, 2, 3, 6, 50):
        evaluated = [0]
        samples_seen, last_point, end = 0, 0, 0
        for n in stages:
            end += n
            for _ in range(n):
                samples_seen += 1
                if trainer_module.scheduled_point_due(every, samples_seen, last_point, end):
                    evaluated[0] += 1
                    last_point = samples_seen
            evaluated[0] += 1  # the stage's boundary point
            last_point = end
        assert study_cost.points_per_run(stages, every) == evaluated[0] + 1, every


def test_a_study_run_is_extrapolated_from_the_full_configs_counts():
    result = study_cost.main(["--members", "2", "--learners", "credit_assignment/mlp_backprop", "--train-per-task", "10"])
    (row,) = result["rows"]
    cfg = api.compose("experiment=credit_assignment", "learner=credit_assignment/mlp_backprop", "task_sequence.scenario=domain")
    full = api.build(api.compose("experiment=credit_assignment", "learner=credit_assignment/mlp_backprop",
                                 "task_sequence.scenario=domain", "tracking.enabled=false"))
    assert row["sequences"] == sum(len(s.x) for s in full.stages) * cfg.trainer.epochs_per_task
    assert row["points"] == 51
    assert row["cpu_s_per_run"] == pytest.approx(row["sequences"] * row["train_s_per_sequence"]
                                                 + row["points"] * row["eval_s_per_point"])
    assert result["runs_per_learner"] == 4 * 3 * 2 * 20  # rates x scenarios x trainings x seeds of the declaration
    assert result["cpu_hours"] == pytest.approx(row["cpu_s_per_run"] * result["runs_per_learner"] / 3600)


def test_the_study_is_measured_at_the_size_its_sweeper_launches():
    from analysis.study_runs import PRESETS

    assert study_cost.max_ensemble_size(PRESETS / "credit_assignment.yaml") == 8  # conf/hydra/default.yaml's
