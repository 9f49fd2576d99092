"""What a researcher sees on the console: every entry point's --help, the config groups in train.py's
help, run names, the sweep's per-job lines, and the MLflow UI addresses printed."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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


# Every entry point's --help in one process, each as Python runs it (``__main__``, its directory first on
# sys.path, its own argv), its output captured: a process of its own each cost ~25 imports of MLflow or
# the package, two CPU minutes. The state a script may leave (sys.path, sys.argv, Hydra's global
# instance) is put back before the next one, and ``os._exit`` ends only the script.
HELP_ALL = r"""
import contextlib, io, json, os, runpy, sys, traceback
import analysis  # installed with the package: the project root is not on sys.path here

def exit_now(code=0):  # train.py ends its process without the interpreter's teardown: here, only its script
    raise SystemExit(code)

os._exit = exit_now
answers = {}
for name, argv in json.loads(sys.argv[1]).items():
    # streams that scripts may reconfigure (train.py line-buffers its output), as sys.stdout
    out, err, code = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8"), io.TextIOWrapper(io.BytesIO(), encoding="utf-8"), 0)
    saved_path, saved_argv = list(sys.path), list(sys.argv)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if argv[0] == "-m":
                sys.argv = [argv[1], "--help"]
                runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
            else:
                sys.argv = [argv[0], "--help"]
                sys.path.insert(0, os.path.dirname(argv[0]))
                runpy.run_path(argv[0], run_name="__main__")
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:
            code = 1
            err.write(traceback.format_exc())
    sys.path[:], sys.argv[:] = saved_path, saved_argv
    if "hydra" in sys.modules:
        from hydra.core.global_hydra import GlobalHydra
        GlobalHydra.instance().clear()
    out.flush(), err.flush()
    answers[name] = {"returncode": code, "stdout": out.buffer.getvalue().decode(), "stderr": err.buffer.getvalue().decode()}
print(json.dumps(answers))
"""


@pytest.mark.slow  # some 25 scripts importing MLflow or the package: one process, ~20 CPU seconds
def test_every_entry_point_answers_help_from_any_directory(tmp_path):
    """Run outside the project root: ``analysis`` is installed with the package, so its scripts import."""
    proc = subprocess.run([sys.executable, "-c", HELP_ALL, json.dumps(ENTRY_POINTS)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(answers) == list(ENTRY_POINTS)
    for entry_point, answer in answers.items():
        assert answer["returncode"] == 0, (entry_point, answer["stderr"][-2000:])
        assert "Traceback" not in answer["stdout"] + answer["stderr"], entry_point
        assert answer["stdout"].startswith("usage:") or "== Config groups ==" in answer["stdout"], entry_point
        described = answer["stdout"].split("\n\n", 1)[-1]  # after the usage line(s): what it does
        assert len(described.split()) > 15, (entry_point, answer["stdout"])
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


@pytest.mark.slow
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


def test_run_names_are_short_and_put_what_differs_in_a_sweep_first(compose_cfg):
    from forgetlab.experiment import full_run_name, run_name

    cfg = compose_cfg("learner=rnn_rtrl", "task_sequence.scenario=task", "seed=3")
    assert run_name(cfg) == "rtrl·task·s3·split_digits"
    joint = compose_cfg("task_sequence.joint=true", "seed=1")
    assert run_name(joint) == "backprop·class·joint·s1·split_digits"
    overrides = ["algorithm.lr=0.1", "tracking.uri=sqlite:////somewhere/mlflow.db", "paths.root_dir=/home/x"]
    assert full_run_name(joint, overrides) == (
        "backprop on mlp, split_digits (class scenario, joint), seed 1; overrides: algorithm.lr=0.1"
    )


def test_the_sweep_prints_one_line_per_finished_job_with_its_progress_when_not_at_a_terminal(tmp_path, capsys):
    from hydra_plugins.forgetlab_sweeper import progress

    with progress.SweepProgress(tmp_path, total=4, skipped=1, label="sweep x") as shown:
        progress.record_job(tmp_path, 0, {"name": "rtrl·task·s0·split_digits", "status": progress.COMPLETED,
                                          "final": {"final/acc": 0.91234, "final/bwt": -0.5}, "seconds": 12.3})
        progress.record_job(tmp_path, 1, {"name": "rtrl·task·s1·split_digits", "status": progress.FAILED,
                                          "error": "TrainingDiverged: at update 7", "seconds": 2})
    out = capsys.readouterr().out.splitlines()  # captured: not a terminal, so no bar and plain lines
    assert len(out) == 2 and all(line.startswith("[sweep] ") for line in out)
    assert out[0].startswith("[sweep] 2/4 (skipped 1, trained 1, failed 0; ETA ")
    assert out[0].endswith(": rtrl·task·s0·split_digits final/acc=0.9123 final/bwt=-0.5000 (job 0, 12 s)")
    assert out[1].startswith("[sweep] 3/4 (skipped 1, trained 1, failed 1; ETA ")
    assert out[1].endswith(": rtrl·task·s1·split_digits FAILED (job 1, 2 s): TrainingDiverged: at update 7")
    assert (len(shown.seen), shown.failed, shown.skipped) == (2, 1, 1)
    assert shown.finals == {0: {"final/acc": 0.91234, "final/bwt": -0.5}}
    # The same directory swept again starts from nothing.
    with progress.SweepProgress(tmp_path, total=1, skipped=0, label="again") as again:
        pass
    assert again.seen == set() and capsys.readouterr().out == ""


def test_a_rerun_says_skip_once_and_the_sweep_says_where_each_jobs_log_is(tmp_path):
    from hydra_plugins.forgetlab_sweeper.forgetlab_sweeper import Job, resume_lines, start_line

    jobs = [Job([f"seed={s}"], OmegaConf.create(), "h", label=f"seed={s}", num=s) for s in range(72)]
    for job in jobs[:70]:
        job.skip_reason = f"FINISHED as run r{job.num} (sweep x)"
    jobs[70].skip_reason = "still RUNNING as run r70 (host 1 2 3)"
    assert resume_lines(jobs, "same config and code") == [
        "[sweep] skip 70 of 72 jobs: FINISHED before (same config and code; tracking.resume=false trains them again)",
        "[sweep] skip seed=70: still RUNNING as run r70 (host 1 2 3)",
    ]
    line = start_line("s1", jobs, jobs[71:], 1, 2, tmp_path)
    assert line == f"[sweep] s1: 72 jobs, 1 to train, 2 at a time; each job's log: {tmp_path}/<job num>/train.log"


def test_the_results_table_gives_each_condition_mean_and_t_interval_over_seeds():
    from scipy import stats

    from hydra_plugins.forgetlab_sweeper.forgetlab_sweeper import Job
    from hydra_plugins.forgetlab_sweeper.results import format_table, results_table

    jobs = [Job([f"learner={learner}", f"task_sequence.scenario={scenario}", f"seed={seed}"], OmegaConf.create(), "h",
                num=num)
            for num, (learner, scenario, seed) in enumerate(
                (l, sc, s) for l in ("mlp_backprop", "rnn_rtrl") for sc in ("class", "task") for s in (0, 1, 2))]
    accs = [0.2, 0.3, 0.4, 0.9, 0.95, 1.0, 0.1, 0.2, 0.3, 0.8, 0.8, 0.8]
    finals = {job.num: {"final/acc": acc, "final/bwt": -acc} for job, acc in zip(jobs, accs)}
    del finals[11]  # a failed job: its condition's row counts two seeds
    table = results_table(jobs, finals)
    assert list(table.columns) == ["learner", "scenario", "n", "acc", "bwt"]
    assert table[["learner", "scenario"]].values.tolist() == [
        ["mlp_backprop", "class"], ["mlp_backprop", "task"], ["rnn_rtrl", "class"], ["rnn_rtrl", "task"]]
    half = stats.t.ppf(0.975, 2) * 0.1 / 3 ** 0.5
    assert table.loc[0, "acc"] == f"0.300 ± {half:.3f}" and table.loc[0, "bwt"] == f"-0.300 ± {half:.3f}"
    assert table.loc[3, "n"] == 2 and table.loc[3, "acc"] == "0.800 ± 0.000"
    assert "95 % t-interval" in format_table(table)


def test_the_results_tables_interval_is_scipy_stats_own_without_importing_it():
    """A sweep's parent imported scipy.stats (~1.5 s) for one t quantile."""
    code = ("import sys, numpy as np\n"
            "from hydra_plugins.forgetlab_sweeper.results import mean_and_half_width\n"
            "rng = np.random.default_rng(0)\n"
            "print([mean_and_half_width(list(rng.normal(size=n))) for n in (2, 3, 5, 20, 200)])\n"
            "print('scipy.stats' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    shown, imported = proc.stdout.splitlines()
    assert imported == "False", proc.stderr[-2000:]
    from scipy import stats

    rng = np.random.default_rng(0)
    expected = []
    for n in (2, 3, 5, 20, 200):
        x = rng.normal(size=n)
        expected.append((float(x.mean()), float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / n ** 0.5)))
    assert shown == str(expected)  # bit for bit


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
    assert swept_params(jobs) == {"learner": "mlp_backprop, rnn_rtrl", "seed": "0, 1, 2"}


def test_ui_addresses_open_the_training_view_on_the_port_the_ui_serves(tmp_path, monkeypatch):
    from forgetlab.server import ui_state_file, ui_url

    monkeypatch.setenv("FORGETLAB_ROOT", str(tmp_path))
    assert ui_url("sqlite:////x/mlflow.db", "3", "abc") == \
        "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    # an experiment's page opens the run table's view for comparing, which the experiment carries as a tag
    assert ui_url("http://127.0.0.1:5001/", "3") == \
        "http://127.0.0.1:5001/#/experiments/3/runs?workflowType=machine_learning&viewStateShareKey=forgetlab"
    from forgetlab import contract
    from forgetlab.server import COMPARE_VIEW_QUERY

    assert COMPARE_VIEW_QUERY == f"viewStateShareKey={contract.COMPARE_VIEW}"
    assert "metrics.`final/acc`" in json.loads(contract.compare_view())["selectedColumns"]
    ui_state_file().parent.mkdir(parents=True)
    ui_state_file().write_text('{"port": 5050, "store": "sqlite:////x/mlflow.db"}')  # as `make ui UI_PORT=5050` left it
    assert ui_url("sqlite:////x/mlflow.db", "3").startswith("http://127.0.0.1:5050/#/experiments/3/runs?")


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


@pytest.mark.slow
def test_output_redirected_to_a_file_is_plain_lines_without_bar_frames(tmp_path):
    """What a cluster's log or `make study > log` holds: a single run's task lines and final metrics each on
    a line of their own, a sweep's first line with its job count and where the logs are, then a line per job."""
    from tests.conftest import run_train

    small = ["trainer.epochs_per_task=1", "task_sequence.n_tasks=2", "network.hidden_sizes=[16]", "tracking.enabled=false"]
    single = run_train(*small, f"hydra.run.dir={tmp_path}/run")
    assert single.returncode == 0, single.stderr[-2000:]
    out = single.stdout + single.stderr
    assert "\r" not in out and "sample/s" not in out and "it/s" not in out  # no progress-bar frames
    lines = out.splitlines()
    assert any(line.startswith("[backprop·class·s0·split_digits] final/acc=") for line in lines)
    assert sum(line.startswith("[backprop·class·s0·split_digits] after digits_") for line in lines) == 2
    sweep = run_train("-m", "seed=0,1", *small, f"hydra.sweep.dir={tmp_path}/sweep")
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    assert "\r" not in sweep.stdout + sweep.stderr
    first, *rest = sweep.stdout.splitlines()
    assert first.startswith("[sweep] ") and ": 2 jobs, 2 to train" in first
    assert first.endswith(f"each job's log: {tmp_path}/sweep/<job num>/train.log")
    assert sum(line.startswith("[sweep] 1/2 (") or line.startswith("[sweep] 2/2 (") for line in rest) == 2
    for num in (0, 1):
        assert "] after digits_" in (tmp_path / "sweep" / str(num) / "train.log").read_text()
