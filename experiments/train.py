"""Train one configuration, or a sweep with -m.

    python experiments/train.py                                  # defaults from conf/config.yaml
    python experiments/train.py algorithm.lr=0.1 task_sequence=permuted_digits
    python experiments/train.py -m seed=0,1,2 task_sequence.scenario=class,task,domain
    python experiments/train.py -m experiment=quickstart
    python experiments/train.py --help                           # the config groups and their options

A single run logs to the console and to ``outputs/<date>/<time>/train.log`` and ends with its MLflow
run id and UI address. In a multirun each job logs to its ``multirun/<date>/<time>/<job num>/train.log``
(the members of an ensemble too, each to its own job's folder) and the console shows the sweep's
progress (a bar on a terminal, plain lines in a file) and one line per finished job.
"""

from __future__ import annotations

import gc

# Start-up (imports, Hydra's composition, the data, the store) makes ~1M long-lived objects and
# little garbage: the cyclic collector, scanning them again and again, took ~20 % of a job's CPU.
# It is off until training starts, where forgetlab.experiment freezes what start-up made and turns
# it on again (experiment.collect_from_training_on).
gc.disable()

import atexit  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterator, NoReturn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("FORGETLAB_ROOT", str(ROOT))

import hydra  # noqa: E402
from hydra._internal.utils import get_args_parser  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from forgetlab import contract, stopping  # noqa: E402
from forgetlab.config import ConfigError, check_command_line, register_configs  # noqa: E402
from forgetlab.divergence import TrainingDiverged  # noqa: E402
from forgetlab.experiment import (  # noqa: E402
    MEMBER_ATTRIBUTE, EnsembleReturn, JobSkipped, JobStopped, MemberFailed, RunContext, RunningElsewhere, run_ensemble,
    run_experiment, run_name,
)
from forgetlab.tracking.liveness import process_identity  # noqa: E402
from forgetlab.tracking.mlflow_run import new_sweep_id, open_experiment  # noqa: E402
from forgetlab.tracking.run_figures import add_sweep_figures  # noqa: E402
from forgetlab.tracking.storage import check_directory  # noqa: E402
from forgetlab.tracking.store import StoreError  # noqa: E402
from hydra_plugins.forgetlab_sweeper import progress  # noqa: E402
from hydra_plugins.forgetlab_sweeper.ensembles import ENSEMBLE_ENV, read_ensemble  # noqa: E402
from hydra_plugins.forgetlab_sweeper.forgetlab_sweeper import STOP_FILE, read_sweep  # noqa: E402

register_configs(ROOT / "conf")
SOURCE = Path(__file__).resolve().relative_to(ROOT).as_posix()


@hydra.main(version_base="1.3", config_path=str(ROOT / "conf"), config_name="config")
def main(cfg: DictConfig) -> float | JobSkipped | JobStopped | RunningElsewhere | None:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    sweep = read_sweep(hc.sweep.dir) if multirun else None
    context = RunContext(
        overrides=list(hc.overrides.task),
        learner=hc.runtime.choices.get("learner"),
        sweep_id=sweep.sweep_id if sweep else None,
        parent_run_id=sweep.parent_run_id if sweep else None,
        quiet=multirun,
        source=SOURCE,
    )
    if not multirun:
        context = replace(context, sweep_id=new_sweep_id())  # a single run is a sweep of its own
        try:
            with stopping.job(None):
                final = run_experiment(cfg, context)
                if final and cfg.tracking.enabled:  # the run has ended: its figures, off its training path
                    add_sweep_figures(*open_experiment(cfg), context.sweep_id)
        except ConfigError as error:
            print(f"Invalid config: {error}", file=sys.stderr)
            sys.exit(2)
        except StoreError as error:
            print(f"{error.label}: {error}", file=sys.stderr)
            sys.exit(2)
        except TrainingDiverged as error:  # its run ended FAILED with the reason (and the traceback)
            print(error, file=sys.stderr)
            sys.exit(1)
        return final.get(contract.FINAL_ACC) if final else JobSkipped()

    console_warnings_only()
    if sweep is not None and sweep.process not in ("", process_identity()) \
            and process_identity(os.getppid()) == sweep.process:
        stopping.exit_with_parent()  # a process the sweeper started dies with it (joblib's: from its start)
    if os.environ.get(ENSEMBLE_ENV):  # the sweeper grouped jobs into this one (hydra_plugins/…/ensembles.py)
        return ensemble_job(hc.sweep.dir, os.environ[ENSEMBLE_ENV], sweep, context)
    started, outcome = time.monotonic(), {"name": run_name(cfg)}
    try:
        # The sweeper validated every job: a ConfigError here is the job's failure.
        with stopping.job(Path(hc.sweep.dir) / STOP_FILE):
            final = run_experiment(cfg, context)
    except stopping.Stopped as stopped:
        outcome.update(status=progress.FAILED, error=f"stopped: {stopped}"[:500])
        if sweep is not None and sweep.process != process_identity():
            # A worker process: its run ended KILLED; the sweeper ends the sweep (forgetlab.stopping).
            return JobStopped(str(stopped))
        raise
    except BaseException as error:
        outcome.update(status=progress.FAILED, error=f"{type(error).__name__}: {error}"[:500])
        raise
    else:
        if isinstance(final, RunningElsewhere):
            outcome.update(status=progress.RUNNING_ELSEWHERE, error=final.reason)
            return final
        outcome.update(status=progress.COMPLETED if final else progress.SKIPPED, final=final)
        return final.get(contract.FINAL_ACC) if final else JobSkipped()
    finally:
        progress.record_job(hc.sweep.dir, job_number(hc), {**outcome, "seconds": time.monotonic() - started})


def job_number(hc) -> int:
    """This job's number among the sweep's jobs: the folder the sweeper gave it (``hydra.sweep.subdir``,
    hydra_plugins/forgetlab_sweeper/ensembles.py), else Hydra's own count."""
    subdir = str(hc.sweep.subdir)
    return int(subdir) if subdir.isdigit() else hc.job.num


def ensemble_job(sweep_dir: str, ensemble_file: str, sweep, context: RunContext) -> EnsembleReturn | JobStopped:
    """A sweep job that trains several of the sweep's jobs as one ensemble: each member reports its
    own outcome, as its own job would have."""
    members = read_ensemble(sweep_dir, ensemble_file)
    cfgs = [member.cfg for member in members]
    contexts = [replace(context, overrides=member.overrides, learner=member.learner) for member in members]
    started, outcomes = time.monotonic(), [{"name": run_name(cfg)} for cfg in cfgs]

    def all_failed(error: str) -> None:
        for outcome in outcomes:
            outcome.update(status=progress.FAILED, error=error[:500])

    try:
        with stopping.job(Path(sweep_dir) / STOP_FILE), member_logs(sweep_dir, members):
            results = run_ensemble(cfgs, contexts)
    except stopping.Stopped as stopped:
        all_failed(f"stopped: {stopped}")
        if sweep is not None and sweep.process != process_identity():
            return JobStopped(str(stopped))
        raise
    except BaseException as error:
        all_failed(f"{type(error).__name__}: {error}")
        raise
    else:
        returned = []
        for outcome, result in zip(outcomes, results):
            if isinstance(result, BaseException):
                outcome.update(status=progress.FAILED, error=f"{type(result).__name__}: {result}"[:500])
                returned.append(MemberFailed(outcome["error"]))
            elif isinstance(result, RunningElsewhere):
                outcome.update(status=progress.RUNNING_ELSEWHERE, error=result.reason)
                returned.append(result)
            else:
                outcome.update(status=progress.COMPLETED if result else progress.SKIPPED, final=result)
                returned.append(result.get(contract.FINAL_ACC) if result else JobSkipped())
        return EnsembleReturn(tuple(returned))
    finally:
        seconds = time.monotonic() - started
        for member, outcome in zip(members, outcomes):
            progress.record_job(sweep_dir, member.num, {**outcome, "seconds": seconds})


class MemberLines(logging.Filter):
    """Passes the lines about ensemble member ``index`` and the lines about none (the shared set-up)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, MEMBER_ATTRIBUTE, self.index) == self.index


@contextmanager
def member_logs(sweep_dir: str, members) -> Iterator[None]:
    """Each member of an ensemble job logs to its own job's ``<sweep dir>/<job num>/train.log``, as it
    would have alone: its own lines and the ensemble's shared ones (each log's first line names the
    other members). Replaces Hydra's file handler, which would write every member's lines into the
    launch's folder (the first member's)."""
    root = logging.getLogger()
    hydra_files = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
    file_format = hydra_files[0].formatter if hydra_files else logging.Formatter(
        "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    for handler in hydra_files:
        root.removeHandler(handler)
        handler.close()
    handlers = []
    for index, member in enumerate(members):
        folder = Path(sweep_dir) / str(member.num)
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(folder / "train.log")
        handler.setFormatter(file_format)
        handler.addFilter(MemberLines(index))
        root.addHandler(handler)
        handlers.append(handler)
    others = ", ".join(str(m.num) for m in members)
    for index, member in enumerate(members):
        logging.getLogger(__name__).info("job %d (%s) trains in an ensemble with jobs %s", member.num,
                                         " ".join(member.overrides) or "defaults", others,
                                         extra={MEMBER_ATTRIBUTE: index})
    try:
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


def console_warnings_only() -> None:
    """A sweep job logs to its train.log; on the console, where the sweep's progress bar is, only
    its warnings and errors appear."""
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setLevel(max(handler.level, logging.WARNING))


def check_arguments() -> None:
    """Exit 2 with forgetlab's message when the command line does not compose (see check_command_line)
    or its run directory (``hydra.run.dir``, a sweep's ``hydra.sweep.dir``) cannot be written, before
    Hydra creates it."""
    args = get_args_parser().parse_args()
    if args.help or args.hydra_help or args.shell_completion or args.info:
        return
    try:
        cfg = check_command_line(str(ROOT / "conf"), args.config_name or "config", args.overrides, args.multirun)
        key = "hydra.sweep.dir" if args.multirun else "hydra.run.dir"
        check_directory(Path(OmegaConf.select(cfg, key)), f"run directory ({key})")
    except ConfigError as error:
        print(f"Invalid config: {error}", file=sys.stderr)
        sys.exit(2)
    except StoreError as error:
        print(f"{error.label}: {error}", file=sys.stderr)
        sys.exit(2)


def exit_now(code: int | str | None) -> NoReturn:
    """Exit with ``code`` as ``sys.exit`` would, without the interpreter's teardown: freeing every
    object the imports made (and collecting the cycles among them) took ~1 s of CPU. What teardown
    would do first still runs, in its order (CPython's own functions): ending thread pools and
    joining the other non-daemon threads, then the ``atexit`` handlers (logging's flush and close,
    joblib's shutdown of its workers, MLflow's); then the console is flushed. Only the process that
    started as this script does this, never a launcher's worker."""
    threading._shutdown()
    if isinstance(code, str):  # sys.exit("message"): printed, exit code 1
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    # Redirected to a file (a cluster's job output, `make study > log`), each line is written when printed.
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    stopping.handle_stop_signals()
    check_arguments()
    try:
        main()
        exit_code: int | str | None = 0
    except stopping.Stopped as stopped:  # the run (and the sweep's parent) ended KILLED with the reason
        print(f"Stopped: {stopped}", file=sys.stderr)
        exit_code = stopped.exit_code
    except SystemExit as exiting:  # Hydra's and ours: a bad config, failed jobs, --help
        exit_code = exiting.code
    exit_now(exit_code)
