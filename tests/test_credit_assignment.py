"""The credit-assignment study's configuration: one RNN with the same initial weights and sample order
for every learner of a seed, RTRL with one loss step equal to epochwise BPTT, the selection table's sweep
recorded by every study run, and presets whose every job is valid and is the declared design."""

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest
import dataclasses

from forgetlab.config import ConfigError, validate
from forgetlab.data import build_task_sequence
from forgetlab.data.tasks import subsampled
from forgetlab.assembly import build_trainer, learner_label
from analysis.study_runs import read_declaration
from forgetlab.tracking.mlflow_run import config_hash, flatten
from tests.conftest import ROOT

PRESETS = ROOT / "conf" / "experiment"
LEARNERS = ROOT / "conf" / "learner" / "credit_assignment"
RNN_LEARNERS = sorted(p.stem for p in LEARNERS.glob("*.yaml") if not p.stem.startswith("mlp"))
TABLE = "conf/learner/credit_assignment/lr.csv"
SMALL = ["task_sequence.max_train_per_task=12", "eval.every_samples=0", "tracking.enabled=false"]
SAME_RNN = ("hidden_size", "recurrent_init", "recurrent_scale", "activation", "output", "loss")


def write_table(root: Path, rows: list[dict]) -> None:
    path = root / TABLE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# What tells the study's learners apart in a selection table (its key columns are dotted config keys).
LEARNER_KEYS = [("rnn", "bptt_epochwise", ""), ("rnn", "rtrl", ""), ("mlp", "backprop", "")] + [
    ("rnn", "bptt_truncated", str(h)) for h in (1, 4, 14)]


def every_learner_table(root: Path, lr: float = 0.1, sweep: str = "20261127-000000-abcdef") -> None:
    """A row for every learner, loss placement, data set and scenario of the study."""
    rows = [
        {"task_sequence.name": seq, "task_sequence.scenario": scenario, "network.name": net, "algorithm.name": alg,
         "algorithm.h": h, "network.loss_at": loss_at if net == "rnn" else "", "lr": lr, "selected_by": sweep}
        for seq, scenario in itertools.product(["split_mnist", "delayed_recall"], ["task", "domain", "class"])
        for (net, alg, h), loss_at in itertools.product(LEARNER_KEYS, ["last", "all"])
        if net == "rnn" or loss_at == "last"
    ]
    write_table(root, rows)


def study_cfg(compose_cfg, root: Path, learner: str, *overrides: str):
    return compose_cfg("experiment=credit_assignment", f"learner=credit_assignment/{learner}",
                       f"paths.root_dir={root}", *overrides)


@pytest.mark.slow
def test_every_recurrent_learner_starts_from_the_same_weights_and_sees_the_same_samples(compose_cfg, tmp_path):
    every_learner_table(tmp_path)
    trainers = {}
    for learner in RNN_LEARNERS:
        cfg = study_cfg(compose_cfg, tmp_path, learner, "seed=3", *SMALL)
        validate(cfg)
        trainers[learner] = build_trainer(cfg)
    first = trainers[RNN_LEARNERS[0]]
    orders = {name: t.rngs[0].permutation(100) for name, t in trainers.items()}  # the draw of the first epoch's order
    for name, trainer in trainers.items():
        assert trainer.network.n_hidden == 64
        for key, value in first.network.params.items():
            np.testing.assert_array_equal(trainer.network.params[key], value, err_msg=f"{name}: {key}")
        np.testing.assert_array_equal(orders[name], orders[RNN_LEARNERS[0]])
    W = first.network.W_hh[0]
    np.testing.assert_allclose(W.T @ W, np.eye(64), atol=1e-12)  # orthogonal, as declared
    # and another seed starts elsewhere
    other = build_trainer(study_cfg(compose_cfg, tmp_path, "rtrl", "seed=4", *SMALL))
    assert not np.array_equal(other.network.params["W_hh"], first.network.params["W_hh"])


def test_the_perturbation_moves_every_weight_by_about_its_size_and_nothing_else(compose_cfg, tmp_path):
    every_learner_table(tmp_path)
    plain = build_trainer(study_cfg(compose_cfg, tmp_path, "rtrl", "seed=2", *SMALL))
    perturbed = build_trainer(study_cfg(compose_cfg, tmp_path, "rtrl", "seed=2", "network.init_perturbation=1e-12", *SMALL))
    for key, value in plain.network.params.items():
        moved = perturbed.network.params[key] - value
        assert np.all(moved != 0) and np.max(np.abs(moved)) < 1e-11, key
    np.testing.assert_array_equal(plain.rngs[0].permutation(50), perturbed.rngs[0].permutation(50))  # same sample order


def test_new_keys_at_their_neutral_values_keep_the_config_hash(compose_cfg):
    cfg = compose_cfg()
    stripped = dataclasses.asdict(cfg)
    for dotted in ("network.init_perturbation", "algorithm.lr_selected_by", "task_sequence.max_train_per_task"):
        group, key = dotted.split(".")
        del stripped[group][key]
    assert config_hash(cfg) == config_hash(stripped)
    assert config_hash(compose_cfg("network.init_perturbation=1e-12")) != config_hash(cfg)


def test_the_subsample_is_stratified_ordered_and_the_same_for_every_seed(compose_cfg):
    full = build_task_sequence(compose_cfg("task_sequence=split_mnist").task_sequence)
    cut = subsampled(full, 100, data_seed=0)
    for before, after in zip(full.tasks, cut.tasks):
        assert after.n_train == 100 and before.n_train > 100
        rows = [np.flatnonzero((before.x_train == x).all(axis=1))[0] for x in after.x_train]
        assert np.all(np.diff(rows) > 0)  # a subset, in the original order
        counts = np.bincount(after.y_train - after.classes[0])
        assert abs(counts[0] - counts[1]) <= 2
        np.testing.assert_array_equal(after.x_test, before.x_test)
    again = subsampled(full, 100, data_seed=0)
    np.testing.assert_array_equal(again.tasks[3].x_train, cut.tasks[3].x_train)
    assert subsampled(full, 0, data_seed=0) is full and subsampled(full, 10_000, data_seed=0) is full


def trained(compose_cfg, root: Path, learner: str, *overrides: str):
    trainer = build_trainer(study_cfg(compose_cfg, root, learner, "task_sequence.scenario=domain", "seed=0",
                                      "algorithm.lr=0.05", "trainer.epochs_per_task=1", *SMALL, *overrides))
    (result,) = trainer.run()
    return result, trainer


def test_rtrl_with_the_loss_at_the_last_step_is_epochwise_bptt(compose_cfg, tmp_path):
    """With one loss step RTRL injects its one error at the end of the sequence and updates once, with
    the exact gradient: epochwise BPTT's update, to rounding. So the study runs RTRL only with the loss
    at every step."""
    every_learner_table(tmp_path)
    (rtrl, rtrl_trainer), (bptt, bptt_trainer) = (trained(compose_cfg, tmp_path, name) for name in ("rtrl", "bptt_epochwise"))
    assert rtrl.points[-1].updates == bptt.points[-1].updates == rtrl.points[-1].samples_seen
    for key, value in bptt_trainer.network.params.items():
        np.testing.assert_allclose(rtrl_trainer.network.params[key], value, rtol=0, atol=1e-10, err_msg=key)
    np.testing.assert_array_equal(rtrl.accuracy_matrix, bptt.accuracy_matrix)


def test_with_the_loss_at_every_step_rtrl_updates_at_every_step_and_ends_elsewhere(compose_cfg, tmp_path):
    every_learner_table(tmp_path)
    (rtrl, rtrl_trainer), (bptt, bptt_trainer) = (
        trained(compose_cfg, tmp_path, name) for name in ("rtrl_every_step", "bptt_epochwise_every_step"))
    samples = bptt.points[-1].samples_seen
    assert bptt.points[-1].updates == samples and rtrl.points[-1].updates == samples * 28  # 28 rows, each with loss
    assert np.max(np.abs(rtrl_trainer.network.params["W_hh"] - bptt_trainer.network.params["W_hh"])) > 1e-4


@pytest.mark.slow
def test_the_study_sweeps_its_rates_and_records_their_selection_sweep_from_the_table(compose_cfg, tmp_path):
    write_table(tmp_path, [
        {"task_sequence.name": "split_mnist", "task_sequence.scenario": "domain", "algorithm.name": alg, "algorithm.h": h,
         "network.loss_at": loss_at, "lr": lr, "selected_by": sweep}
        for alg, h, loss_at, lr, sweep in (("bptt_truncated", "1", "last", "0.005", "sweep-a"),
                                           ("bptt_truncated", "4", "last", "0.002", "sweep-a"),
                                           ("rtrl", "", "all", "0.001", "sweep-b"))
    ])
    for learner, lr, sweep in (("bptt_4_1", 0.002, "sweep-a"), ("bptt_1_1", 0.005, "sweep-a"), ("rtrl_every_step", 0.001, "sweep-b")):
        cfg = study_cfg(compose_cfg, tmp_path, learner, "task_sequence.scenario=domain")
        validate(cfg)
        assert cfg.algorithm.lr == lr and cfg.algorithm.lr_selected_by == sweep
        params = flatten(cfg)  # what the run records
        assert params["algorithm.lr"] == str(lr) and params["algorithm.lr_selected_by"] == sweep
        # the study sweeps the rate: every run records the sweep that selected its learner's headline rate
        swept = validate(study_cfg(compose_cfg, tmp_path, learner, "task_sequence.scenario=domain", "algorithm.lr=0.001"))
        assert swept.algorithm.lr == 0.001 and swept.algorithm.lr_selected_by == sweep
    with pytest.raises(ConfigError, match=r"'algorithm.lr(_selected_by)?'.*no row for .*task_sequence.scenario='task'"):
        study_cfg(compose_cfg, tmp_path, "rtrl_every_step", "task_sequence.scenario=task")
    by_hand = study_cfg(compose_cfg, tmp_path, "rtrl_every_step", "task_sequence.scenario=task", "algorithm.lr=0.2",
                        "algorithm.lr_selected_by=by-hand")
    assert by_hand.algorithm.lr == 0.2 and validate(by_hand).algorithm.lr_selected_by == "by-hand"


def test_a_table_that_matches_twice_or_is_missing_stops_the_run(compose_cfg, tmp_path):
    row = {"task_sequence.name": "split_mnist", "network.name": "rnn", "lr": "0.1", "selected_by": "s"}
    write_table(tmp_path, [row, {**row, "lr": "0.2"}])
    with pytest.raises(ConfigError, match="2 rows"):
        validate(study_cfg(compose_cfg, tmp_path, "rtrl_every_step"))
    with pytest.raises(ConfigError, match="does not exist"):
        validate(study_cfg(compose_cfg, tmp_path / "elsewhere", "rtrl_every_step"))


def sweep_values(preset: str) -> dict[str, list[str]]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from forgetlab.config import compose

    params = compose([f"experiment={preset}"], return_hydra_config=True, multirun=True).hydra.sweeper.params
    parsed = {o.key_or_group: o for o in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])}
    return {key: list(o.sweep_string_iterator()) if o.is_sweep_override() else [str(o.value())] for key, o in parsed.items()}


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["credit_assignment", "credit_assignment_pilot"])
def test_every_learner_of_the_presets_is_valid_and_the_design_is_the_declared_one(compose_cfg, tmp_path, preset):
    """Every learner of the sweep (the other axes change no rule; the sweeper validates every job before
    launching): the pilot scores validation sets and reads no table, the study scores test sets and
    records the selection sweep; one RNN for every recurrent learner, the loss placement as named."""
    every_learner_table(tmp_path)
    values = sweep_values(preset)
    pilot = preset.endswith("_pilot")
    networks, names = set(), set()
    for learner in values["learner"]:
        cfg = validate(compose_cfg(f"experiment={preset}", f"paths.root_dir={tmp_path}", f"learner={learner}",
                                   "algorithm.lr=0.001"))
        loss = {"last": "loss at the last step", "all": "loss at every step"}.get(cfg.network.loss_at) if cfg.network.name == "rnn" else None
        names.add(", ".join(filter(None, [learner_label(cfg), loss])))
        assert cfg.eval.split == ("val" if pilot else "test")
        assert cfg.task_sequence.val_size == 0.2 and cfg.task_sequence.max_train_per_task == 0
        assert cfg.trainer.epochs_per_task == 10 and cfg.trainer.batch_size == 1
        assert cfg.algorithm.lr_selected_by == ("" if pilot else "20261127-000000-abcdef")
        assert (cfg.network.activation, cfg.network.output, cfg.network.loss) == ("tanh", "softmax", "cross_entropy")
        assert cfg.strategy.name == ("replay" if learner.endswith("_replay") else "fine_tuning")  # the positive control
        if cfg.network.name == "rnn":
            networks.add(tuple(getattr(cfg.network, key) for key in SAME_RNN))
            assert cfg.network.loss_at == ("all" if learner.endswith("_every_step") else "last")
        else:
            assert cfg.network.hidden_sizes == [64] and cfg.task_sequence.input == "vector"
    assert networks == {(64, "orthogonal", 1.0, "tanh", "softmax", "cross_entropy")}
    assert len(values["learner"]) == 11
    declared = read_declaration(PRESETS / "credit_assignment.yaml")
    named = {name for pair in declared.family + declared.positive_controls for name in (pair.treatment, pair.reference)}
    assert named <= names, f"the declaration names learners no preset trains: {named - names}"
    assert "credit_assignment/rtrl" not in values["learner"]  # RTRL with the loss at the last step is epochwise BPTT
    assert values["task_sequence.scenario"] == ["task", "domain", "class"]
    assert values["algorithm.lr"] == ["0.001", "0.002", "0.005", "0.01"]
    assert values["task_sequence.joint"] == ["False", "True"]
    assert "network.init_perturbation" not in values
    assert values["seed"] == (["1000", "1001"] if pilot else [str(s) for s in range(20)])
