"""What a researcher sees on the console: every entry point's --help, the config groups in train.py's
help, run names, the sweep's per-job lines, and the MLflow UI addresses printed."""

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import ROOT

# Every command a user may run: the entry point, each analysis script (the library modules say what they
# are for and which commands use them), each benchmark, and the package's own commands.
ENTRY_POINTS = {
    "train": [str(ROOT / "experiments" / "train.py")],
    **{f"analysis/{p.name}": [str(p)] for p in sorted((ROOT / "analysis").glob("*.py")) if p.name != "__init__.py"},
    **{f"benchmarks/{p.name}": [str(p)] for p in sorted((ROOT / "benchmarks").glob("*.py"))},
    **{f"-m forgetlab.{m}": ["-m", f"forgetlab.{m}"] for m in ("gradcheck", "server", "metric_registry")},
}


def help_of(entry_point: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *ENTRY_POINTS[entry_point], "--help"], capture_output=True, text=True,
                          timeout=180, cwd=cwd)


@pytest.mark.slow  # some 25 processes, each importing MLflow or the package: two CPU minutes
def test_every_entry_point_answers_help_from_any_directory(tmp_path):
    """Run outside the project root: ``analysis`` is installed with the package, so its scripts import."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        answers = dict(zip(ENTRY_POINTS, pool.map(lambda e: help_of(e, tmp_path), ENTRY_POINTS)))
    for entry_point, proc in answers.items():
        assert proc.returncode == 0, (entry_point, proc.stderr[-2000:])
        assert "Traceback" not in proc.stdout + proc.stderr, entry_point
        assert proc.stdout.startswith("usage:") or "== Config groups ==" in proc.stdout, entry_point
        described = proc.stdout.split("\n\n", 1)[-1]  # after the usage line(s): what it does
        assert len(described.split()) > 15, (entry_point, proc.stdout)
    assert len(ENTRY_POINTS) > 20  # every analysis script and benchmark is listed above


def test_the_torch_benchmark_answers_help_without_torch_and_says_how_to_install_it():
    script = str(ROOT / "benchmarks" / "per_sample_backprop.py")
    without_torch = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = [{script!r}, *{args!r}]; "
                     "runpy.run_path({script!r}, run_name='__main__')")
    helped = subprocess.run([sys.executable, "-c", without_torch.format(script=script, args=["--help"])],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert helped.returncode == 0 and "--repeats" in helped.stdout, helped.stderr[-2000:]
    refused = subprocess.run([sys.executable, "-c", without_torch.format(script=script, args=[])],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert refused.returncode == 1 and "pip install -e '.[bench]'" in refused.stderr, refused.stderr[-2000:]


def test_train_help_lists_every_config_group_with_its_options_and_hides_the_schemas():
    text = help_of("train").stdout
    groups_part = text.split("== Config groups ==")[1].split("== Config ==")[0].split("\n", 1)[1]
    groups = sorted(d.name for d in (ROOT / "conf").iterdir() if d.is_dir() and d.name != "hydra")
    listed = [line.split()[0] for line in groups_part.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    assert sorted(listed) == groups
    for group in groups:
        described = groups_part.split(f"\n  {group} ")[1].split("\n  ")[0]  # its description line
        assert len(described.split()) >= 4, group
        for option in (ROOT / "conf" / group).glob("*.yaml"):
            assert option.stem in groups_part, f"{group}={option.stem} missing from conf/hydra/help/forgetlab.yaml"
    assert "schema" not in groups_part
    assert "algorithm:\n  name: backprop" in text  # the composed config follows


def test_run_names_are_short_and_name_algorithm_sequence_scenario_joint_and_seed(compose_cfg):
    from forgetlab.experiment import full_run_name, run_name

    cfg = compose_cfg("learner=rnn_rtrl", "task_sequence.scenario=task", "seed=3")
    assert run_name(cfg) == "rtrl·split_digits·task·s3"
    joint = compose_cfg("task_sequence.joint=true", "seed=1")
    assert run_name(joint) == "backprop·split_digits·class·joint·s1"
    overrides = ["algorithm.lr=0.1", "tracking.uri=sqlite:////somewhere/mlflow.db", "paths.root_dir=/home/x"]
    assert full_run_name(joint, overrides) == (
        "backprop on mlp, split_digits (class scenario, joint), seed 1; overrides: algorithm.lr=0.1"
    )


def test_the_sweep_prints_one_line_per_finished_job_named_after_its_run(tmp_path, capsys):
    from hydra_plugins.forgetlab_sweeper import progress

    with progress.SweepProgress(tmp_path, total=4, skipped=1, label="sweep x") as shown:
        progress.record_job(tmp_path, 0, {"name": "rtrl·split_digits·task·s0", "status": progress.COMPLETED,
                                          "final": {"final/acc": 0.91234, "final/bwt": -0.5}, "seconds": 12.3})
        progress.record_job(tmp_path, 1, {"name": "rtrl·split_digits·task·s1", "status": progress.FAILED,
                                          "error": "TrainingDiverged: at update 7", "seconds": 2})
    out = capsys.readouterr().out.splitlines()
    assert out == ["rtrl·split_digits·task·s0 final/acc=0.9123 final/bwt=-0.5000 (job 0, 12 s)",
                   "rtrl·split_digits·task·s1 FAILED (job 1, 2 s): TrainingDiverged: at update 7"]
    assert (len(shown.seen), shown.failed, shown.skipped) == (2, 1, 1)
    # The same directory swept again starts from nothing.
    with progress.SweepProgress(tmp_path, total=1, skipped=0, label="again") as again:
        pass
    assert again.seen == set() and capsys.readouterr().out == ""


def test_the_bar_ends_on_the_sweepers_counts_also_for_a_job_that_lost_its_worker(tmp_path, capsys):
    from hydra_plugins.forgetlab_sweeper import progress

    with progress.SweepProgress(tmp_path, total=3, skipped=1, label="sweep x") as shown:
        progress.record_job(tmp_path, 0, {"name": "a", "status": progress.COMPLETED, "final": {}, "seconds": 1})
        # job 1's worker process was killed: it never wrote its file, the sweeper counts it failed
        shown.settle(skipped=1, trained=1, failed=1)
    assert (shown.skipped, shown.trained, shown.failed, shown.bar.n) == (1, 1, 1, 3)


def test_the_parent_run_gets_the_keys_that_vary_across_jobs():
    from hydra_plugins.forgetlab_sweeper.forgetlab_sweeper import Job, swept_params

    jobs = [Job([f"learner={learner}", f"seed={seed}", "trainer.epochs_per_task=1", "+dump=x"], OmegaConf.create(), "h")
            for learner in ("mlp_backprop", "rnn_rtrl") for seed in (0, 1, 2)]
    assert swept_params(jobs) == {"learner": "mlp_backprop,rnn_rtrl", "seed": "0,1,2"}


def test_ui_addresses_open_the_training_view():
    from forgetlab.server import ui_url

    assert ui_url("sqlite:////x/mlflow.db", "3", "abc") == \
        "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    assert ui_url("http://127.0.0.1:5001/", "3") == "http://127.0.0.1:5001/#/experiments/3?workflowType=machine_learning"


def test_machine_paths_are_tags_and_the_rest_of_the_config_params(compose_cfg):
    from forgetlab.tracking.mlflow_run import split_params

    params, tags = split_params(compose_cfg())
    assert {"tracking.uri", "tracking.artifact_location", "paths.root_dir"}.isdisjoint(params)
    assert {"forgetlab.tracking.uri", "forgetlab.tracking.artifact_location", "forgetlab.paths.root_dir"} == set(tags)
    assert {"seed", "algorithm.lr", "tracking.experiment", "tracking.resume"} <= set(params)


def test_make_study_installs_the_package_without_the_dev_and_bench_extras():
    plan = subprocess.run(["make", "-n", "study", "VENV=/nonexistent-venv"], capture_output=True, text=True, cwd=ROOT)
    installs = [line for line in plan.stdout.splitlines() if "pip install" in line and "--upgrade pip" not in line]
    assert installs == ["/nonexistent-venv/bin/python -m pip install --quiet -e ."], plan.stdout
    test_plan = subprocess.run(["make", "-n", "test-fast", "VENV=/nonexistent-venv"], capture_output=True, text=True,
                               cwd=ROOT).stdout
    assert '-e ".[dev,bench]"' in test_plan and Path(ROOT / "Makefile").exists()
