"""The sweeper composes a job's config once per choice of config groups and applies the value
overrides to a copy (``SweepComposer``): every job's config must equal Hydra's own composition."""

import itertools

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from forgetlab.config import register_configs
from forgetlab.tracking.mlflow_run import config_hash
from hydra_plugins.forgetlab_sweeper.forgetlab_sweeper import SweepComposer, compose_jobs
from tests.conftest import ROOT


@pytest.fixture
def hydra_loader():
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        master = compose("config", overrides=["hydra/launcher=joblib"], return_hydra_config=True)
        yield GlobalHydra.instance().config_loader(), master
    GlobalHydra.instance().clear()


def without_hydra(cfg):
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    choices = cfg.hydra.runtime.choices
    with open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=False), OmegaConf.to_container(choices)


def study_jobs():
    learners = ["credit_assignment/bptt_1_1", "credit_assignment/rtrl_every_step", "credit_assignment/mlp_backprop"]
    for learner, sequence, scenario, joint, lr, seed in itertools.product(
            learners, ["split_mnist", "split_digits"], ["task", "class"], ["false", "true"], ["0.001", "0.005"], [0, 1]):
        yield ["experiment=credit_assignment_pilot", f"learner={learner}", f"task_sequence={sequence}",
               f"task_sequence.scenario={scenario}", f"task_sequence.joint={joint}", f"algorithm.lr={lr}", f"seed={seed}"]


ODD_JOBS = [
    [],  # the defaults alone
    ["seed=3", "algorithm.lr=0.5"],  # a value over an interpolation's default
    ["network=rnn", "algorithm=bptt_truncated", "algorithm.h=4", "network.hidden_size=8"],
    ["algorithm.h=4", "algorithm=bptt_truncated", "network=rnn"],  # a value before its group's choice
    ["+tracking.note=x", "seed=1"],  # an added key keys the template
    ["hydra.job.chdir=false", "seed=2"],  # a hydra override keys the template
    ["experiment=credit_assignment_pilot", "learner=credit_assignment/bptt_14_1_every_step", "seed=4"],
    ["task_sequence=permuted_digits", "task_sequence.n_tasks=3", "eval.every_samples=50"],
]


# The fast subset composes the odd jobs and a few of the study's; `make test` every fifth of the study's.
SAMPLED_STUDY_JOBS = [o if i % 4 == 0 else pytest.param(o, marks=pytest.mark.slow)
                      for i, o in enumerate(list(study_jobs())[::5])]


@pytest.mark.parametrize("overrides", [*ODD_JOBS, *SAMPLED_STUDY_JOBS],
                         ids=lambda o: " ".join(getattr(o, "values", [o])[0]) or "defaults")
def test_a_job_composes_as_hydra_composes_it(hydra_loader, overrides):
    loader, master = hydra_loader
    composer = SweepComposer(loader, master)
    for _ in range(2):  # the first builds the template, the second copies it
        mine = composer.compose(list(overrides))
        assert without_hydra(mine) == without_hydra(loader.load_sweep_config(master, list(overrides)))


@pytest.mark.slow
def test_a_study_shares_templates_and_hashes_as_before(hydra_loader):
    loader, _ = hydra_loader
    master = compose("config", overrides=["experiment=credit_assignment_pilot"], return_hydra_config=True)
    jobs = list(study_jobs())
    composer = SweepComposer(loader, master)
    for overrides in jobs:
        composer.compose(overrides)
    assert len(composer.templates) == 3 * 2  # learner x task sequence: the rest are values
    composed = compose_jobs(loader, master, jobs)
    for job in composed[::7]:
        hydra_cfg = loader.load_sweep_config(master, list(job.overrides))
        with open_dict(hydra_cfg):
            del hydra_cfg["hydra"]
        # the typed config hashes as the composed one always did
        assert job.config_hash == config_hash(OmegaConf.to_container(hydra_cfg, resolve=True))


def test_a_value_for_a_key_no_config_has_fails_as_in_hydra(hydra_loader):
    loader, master = hydra_loader
    with pytest.raises(Exception) as hydra_error:
        loader.load_sweep_config(master, ["seed=1", "trainer.no_such_key=1"])
    with pytest.raises(type(hydra_error.value)) as mine:
        SweepComposer(loader, master).compose(["seed=1", "trainer.no_such_key=1"])
    assert str(mine.value) == str(hydra_error.value)
