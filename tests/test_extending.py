"""Extension in one place: a learner, a continual-learning strategy and a task sequence declared in this file alone, and nothing else
edited, train through experiments/train.py with tracking, sweep as an ensemble, get their invalid values
refused, show in --help and in the report (docs/extending.md walks through the same).

Processes find this file's parts through ``FORGETLAB_EXTENSIONS=tests.test_extending``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest

from forgetlab.algorithms import AlgorithmConfig, LearningAlgorithm
from forgetlab.constraints import AT_LEAST_0, constrain
from forgetlab.data import TaskSequence, task_sequence
from forgetlab.strategies import Strategy
from forgetlab.trainer import Callback
from forgetlab.strategies.penalty import STRENGTH, PenaltyConfig
from forgetlab.data.tasks import Task
from tests.conftest import ROOT, run_train

# --- the new parts: a learner and a task sequence ------------------------------------------------


@dataclass
class SignSGDConfig(AlgorithmConfig):
    name: str = "sign_sgd"
    lr: float = 0.01
    dead_zone: float = field(default=0.0, metadata=constrain(AT_LEAST_0))  # |g| at most this: no step


class SignSGD(LearningAlgorithm):
    """sign-SGD (Bernstein et al. 2018): theta -= lr * sign(dE/dtheta), 0 where |dE/dtheta| <= dead_zone."""

    name = "sign_sgd"
    Config = SignSGDConfig
    trains = ("mlp",)

    def __init__(self, network, lr, l2=0.0, dead_zone: float = 0.0) -> None:
        super().__init__(network, lr, l2)
        self.dead_zone = dead_zone

    @classmethod
    def label(cls, run) -> str:
        return "sign-SGD"

    def gradient(self, x, y, mask):
        loss, grads = self.network.data_gradient(x, y, mask)
        for name in self.network.weight_names:
            grads[name] += self.l2_of[name] * self.network.params[name]
        return loss, grads

    def learn(self, x, y, mask):
        loss, grads = self.gradient(x, y, mask)
        xp = self.network.xp
        self.apply({n: xp.sign(g) * (xp.abs(g) > self.dead_zone) for n, g in grads.items()})
        return loss


@dataclass
class AnchorConfig(PenaltyConfig):
    name: str = "anchor"
    strength: float = field(default=0.01, metadata=STRENGTH)


class Anchor(Strategy):
    """grad += strength * (theta - theta_end_of_last_task): docs/extending.md's example strategy."""

    name = "anchor"
    Config = AnchorConfig

    @classmethod
    def label(cls, run):
        return "anchor"

    def __init__(self, network, rngs, strength=0.01):
        super().__init__(network, rngs)
        self.strength, self.strength_of = self.per_member(strength, "strategy.strength")
        self.anchor = None

    def on_stage_end(self, trainer, stage):
        self.anchor = {n: p.copy() for n, p in self.network.params.items()}

    def adjust(self, grads):
        if self.anchor is not None:
            for n, g in grads.items():
                g += self.strength_of[n] * (self.network.params[n] - self.anchor[n])

    def stop_member(self, s):
        if self.anchor is not None:
            for a in self.anchor.values():
                a[s] = 0.0


@task_sequence("two_blobs", sequence_shape=(2, 2), max_tasks=3)
def two_blobs(test_size: float = 0.25, data_seed: int = 0, n_tasks: int = 2) -> TaskSequence:
    """Task k: two Gaussian blobs in 4 dimensions, classes 2k and 2k + 1, apart along axis k."""
    rng = np.random.default_rng([data_seed, 7])
    tasks = []
    for k in range(n_tasks):
        y = np.repeat([2 * k, 2 * k + 1], 40)
        x = rng.normal(size=(80, 4))
        x[:, k] += np.where(y == 2 * k, -2.0, 2.0)
        n_test = int(round(test_size * 80))
        order = rng.permutation(80)
        test, train = order[:n_test], order[n_test:]
        tasks.append(Task(f"blobs{k}", x[train], y[train], x[test], y[test], np.array([2 * k, 2 * k + 1])))
    return TaskSequence("two_blobs", tasks, n_classes=2 * n_tasks)


# --- the tests -------------------------------------------------------------------------------------

EXTENSION = {"FORGETLAB_EXTENSIONS": "tests.test_extending", "PYTHONPATH": str(ROOT)}
SMALL = ("algorithm=sign_sgd", "task_sequence.n_tasks=2", "trainer.epochs_per_task=1", "eval.every_samples=200")


def runs_of(uri: str, experiment: str):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], filter_string="tags.`forgetlab.kind` = 'train'")


def test_the_new_task_sequence_trains_a_network_in_process(compose_cfg):
    from forgetlab.assembly import build_trainer
    from forgetlab.config import register_configs, validate

    register_configs()  # the ConfigStore gains the options this module declares (no YAML of theirs)
    cfg = validate(compose_cfg("task_sequence=two_blobs", "task_sequence.n_tasks=2", "task_sequence.scenario=task",
                               "tracking.enabled=false",
                               "trainer.epochs_per_task=3", "eval.every_samples=0", "network.hidden_sizes=[8]"))
    (result,) = build_trainer(cfg).run()
    assert result.task_names == ["blobs0", "blobs1"]
    assert result.accuracy_matrix[-1].min() >= 0.85  # separable blobs: learned


@pytest.mark.parametrize("learner", ["mlp_backprop", "rnn_rtrl"])
def test_the_new_strategy_trains_every_algorithm_in_an_ensemble_of_strengths(compose_cfg, learner):
    """docs/extending.md's strategy, from this file alone: validated, labelled, a member key, and it
    pulls each member toward its last task's end as hard as its own strength says."""
    from forgetlab.assembly import build_ensemble_trainer, learner_label, member_keys
    from forgetlab.config import ConfigError, register_configs, validate

    register_configs()
    small = ("tracking.enabled=false", f"learner={learner}", "task_sequence.n_tasks=2", "trainer.epochs_per_task=1",
             "task_sequence.max_train_per_task=30", "eval.every_samples=0", "strategy=anchor")
    with pytest.raises(ConfigError, match="'strategy.strength' parameter must be a number in the range"):
        validate(compose_cfg(*small, "strategy.strength=-1"))
    cfgs = [validate(compose_cfg(*small, f"strategy.strength={s}", "seed=3")) for s in (0.0, 1.0)]
    assert "strategy.strength" in member_keys(cfgs[0]) and learner_label(cfgs[1]).endswith(" + anchor")
    trainer = build_ensemble_trainer(cfgs)
    first_end = {}

    class FirstEnd(Callback):
        def on_stage_end(self, trainer, stage):
            if stage == 0:
                first_end.update({n: a.copy() for n, a in trainer.callbacks[0].anchor.items()})

    trainer.callbacks.append(FirstEnd())
    trainer.run()
    params = trainer.network.params
    # the same seed: both members learn the first task alike; the pulled one moves less in the second
    for n in params:
        np.testing.assert_array_equal(first_end[n][0], first_end[n][1])
    moved = [sum(float(np.sum((params[n][m] - first_end[n][m]) ** 2)) for n in params) for m in (0, 1)]
    assert moved[1] < 0.9 * moved[0]


def test_the_new_task_sequence_declares_its_limits(compose_cfg):
    from forgetlab.config import ConfigError, register_configs, validate

    register_configs()
    with pytest.raises(ConfigError, match=r"'task_sequence.n_tasks' parameter must be an int in \[1, 3\] for two_blobs"):
        validate(compose_cfg("task_sequence=two_blobs", "task_sequence.n_tasks=4"))


@pytest.mark.slow
def test_a_learner_from_this_file_alone_runs_sweeps_and_is_reported(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    where = (f"tracking.uri={uri}", "tracking.experiment=extension", f"hydra.sweep.dir={tmp_path}/multirun",
             f"hydra.run.dir={tmp_path}/run")

    refused = run_train(*SMALL, "algorithm.dead_zone=-1", *where, env=EXTENSION)
    assert refused.returncode == 2
    assert ("The 'algorithm.dead_zone' parameter must be a number in the range [0, inf). Got -1.0 instead."
            in refused.stderr)

    alone = run_train(*SMALL, *where, env=EXTENSION)
    assert alone.returncode == 0, alone.stderr[-3000:]
    sweep = run_train("-m", *SMALL, "seed=1,2", "algorithm.dead_zone=0,1e-4", *where, env=EXTENSION)
    assert sweep.returncode == 0, sweep.stderr[-3000:]

    runs = runs_of(uri, "extension")
    assert len(runs) == 1 + 4 and all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.params["algorithm.name"] for r in runs} == {"sign_sgd"}
    assert {r.data.tags["forgetlab.learner_label"] for r in runs} == {"sign-SGD"}
    assert {r.data.params["algorithm.dead_zone"] for r in runs} == {"0.0", "0.0001"}
    # seeds share an ensemble; dead_zone is not a member key, so each value is an ensemble of its own
    ensembles = sorted((tmp_path / "multirun" / "forgetlab_ensembles").glob("*.json"))
    assert [len(json.loads(p.read_text())["members"]) for p in ensembles] == [2, 2]

    out = tmp_path / "report"
    report = subprocess.run([sys.executable, str(ROOT / "analysis" / "report.py"), "--experiment", "extension",
                             "--tracking-uri", uri, "--out", str(out), "--no-mlflow"],
                            capture_output=True, text=True, cwd=ROOT, timeout=600, env={**os.environ, **EXTENSION})
    assert report.returncode == 0, report.stderr[-3000:]
    summary = (out / "summary.csv").read_text()
    assert "0.0001" in summary  # the conditions: dead_zone 0 and 1e-4
    assert "sign_sgd" in (out / "report.md").read_text()


@pytest.mark.slow
def test_help_lists_the_new_parts():
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), "--help"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env={**os.environ, **EXTENSION})
    groups = proc.stdout.split("== Config groups ==")[1].split("== Config ==")[0]
    assert "sign_sgd" in groups.split("\n  algorithm ")[1].split("\n  learner ")[0]
    assert "two_blobs" in groups.split("\n  task_sequence ")[1].split("\n  trainer ")[0]
