"""A Hydra multirun as one MLflow parent run with every job nested under it.

The parent run, the experiment and the store's schema are created once, in the launching process,
before any job starts: parallel jobs on the sqlite store then never race on set-up. Jobs find the
parent through ``<sweep dir>/forgetlab_sweep.json``, which also works for jobs on other nodes that
share the sweep directory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from forgetlab.tracking.mlflow_run import get_or_create_experiment, new_sweep_id

SWEEP_FILE = "forgetlab_sweep.json"


@dataclass(frozen=True)
class Sweep:
    sweep_id: str
    parent_run_id: str | None
    experiment_id: str | None


def read_sweep(sweep_dir: str | Path) -> Sweep | None:
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.exists():
        return None
    return Sweep(**json.loads(path.read_text()))


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        sweep_id = new_sweep_id()
        parent_run_id = experiment_id = None
        if config.tracking.enabled:
            client = MlflowClient(config.tracking.uri)
            experiment_id = get_or_create_experiment(
                client, config.tracking.experiment, config.tracking.artifact_location
            )
            overrides = " ".join(config.hydra.overrides.task)
            parent = client.create_run(
                experiment_id,
                run_name=f"sweep {sweep_id}",
                tags={"forgetlab.sweep_id": sweep_id, "forgetlab.kind": "sweep", "forgetlab.overrides": overrides},
            )
            parent_run_id = parent.info.run_id
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(asdict(Sweep(sweep_id, parent_run_id, experiment_id))))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = read_sweep(config.hydra.sweep.dir)
        if sweep is None or sweep.parent_run_id is None:
            return
        client = MlflowClient(config.tracking.uri)
        children = client.search_runs(
            [sweep.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{sweep.parent_run_id}'"
        )
        failed = [r for r in children if r.info.status != "FINISHED"]
        client.set_terminated(sweep.parent_run_id, "FAILED" if failed else "FINISHED")
