"""The credit-assignment study's configuration: one RNN with the same initial weights and sample order
for every learner of a seed, the noise-floor perturbation, learning rates read from the selection
table, and presets whose every job is valid."""

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest
import dataclasses

from forgetlab.config import ConfigError, validate
from forgetlab.data import build_task_sequence
from forgetlab.data.tasks import subsampled
from forgetlab.assembly import build_trainer
from forgetlab.tracking.mlflow_run import config_hash, flatten
from tests.conftest import ROOT

PRESETS = ROOT / "conf" / "experiment"
LEARNERS = ROOT / "conf" / "learner" / "credit_assignment"
RNN_LEARNERS = sorted(p.stem for p in LEARNERS.glob("*.yaml") if not p.stem.startswith("mlp"))
TABLE = "conf/learner/credit_assignment/lr.csv"
SMALL = ["task_sequence.max_train_per_task=12", "eval.every_samples=0", "tracking.enabled=false"]


def write_table(root: Path, rows: list[dict]) -> None:
    path = root / TABLE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def every_learner_table(root: Path, lr: float = 0.1, sweep: str = "20261127-000000-abcdef") -> None:
    """A row for every network, algorithm, data set and scenario of the study."""
    rows = [
        {"task_sequence.name": seq, "task_sequence.scenario": scenario, "network.name": net, "algorithm.name": alg,
         "lr": lr, "selected_by": sweep}
        for seq, scenario in itertools.product(["split_mnist", "delayed_recall"], ["task", "domain", "class"])
        for net, alg in [("rnn", "bptt_truncated"), ("rnn", "rtrl"), ("rnn", "bptt_epochwise"), ("mlp", "backprop")]
    ]
    write_table(root, rows)


def study_cfg(compose_cfg, root: Path, learner: str, *overrides: str):
    return compose_cfg("experiment=credit_assignment", f"learner=credit_assignment/{learner}",
                       f"paths.root_dir={root}", *overrides)


@pytest.mark.parametrize("sequence", ["split_mnist", "delayed_recall"])
def test_every_recurrent_learner_starts_from_the_same_weights_and_sees_the_same_samples(compose_cfg, tmp_path, sequence):
    every_learner_table(tmp_path)
    trainers = {}
    for learner in RNN_LEARNERS:
        cfg = study_cfg(compose_cfg, tmp_path, learner, f"task_sequence={sequence}", "seed=3", *SMALL)
        validate(cfg)
        trainers[learner] = build_trainer(cfg)
    first = trainers[RNN_LEARNERS[0]]
    orders = {name: t.rngs[0].permutation(100) for name, t in trainers.items()}  # the draw of the first epoch's order
    for name, trainer in trainers.items():
        assert trainer.network.n_hidden == first.network.n_hidden and trainer.network.loss_at == "all"
        for key, value in first.network.params.items():
            np.testing.assert_array_equal(trainer.network.params[key], value, err_msg=f"{name}: {key}")
        np.testing.assert_array_equal(orders[name], orders[RNN_LEARNERS[0]])
    # and another seed starts elsewhere
    other = build_trainer(study_cfg(compose_cfg, tmp_path, "rtrl", f"task_sequence={sequence}", "seed=4", *SMALL))
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


def test_rtrl_and_epochwise_bptt_rows_differ(compose_cfg, tmp_path):
    """With the loss at every step RTRL updates at every step and epochwise BPTT once per sequence:
    from the same weights, samples and learning rate they end up apart."""
    every_learner_table(tmp_path, lr=0.3)
    results = {}
    for learner in ("rtrl", "bptt_epochwise"):
        cfg = study_cfg(compose_cfg, tmp_path, learner, "task_sequence=delayed_recall", "task_sequence.scenario=task",
                        "seed=0", *SMALL)
        trainer = build_trainer(cfg)
        (result,) = trainer.run()
        results[learner] = (result.accuracy_matrix, result.points[-1].updates, trainer.network.params["W_hh"].copy())
        samples = result.points[-1].samples_seen
    (R_rtrl, updates_rtrl, W_rtrl), (R_bptt, updates_bptt, W_bptt) = results["rtrl"], results["bptt_epochwise"]
    assert samples == 5 * 9  # 12 per task, a fifth held out for validation
    assert updates_bptt == samples and updates_rtrl == samples * 12  # delay 10: 12 steps, each with loss
    assert np.max(np.abs(W_rtrl - W_bptt)) > 1e-3
    assert not np.array_equal(R_rtrl, R_bptt)


def test_the_study_reads_its_learning_rates_and_their_selection_sweep_from_the_table(compose_cfg, tmp_path):
    write_table(tmp_path, [
        {"task_sequence.name": "split_mnist", "task_sequence.scenario": "domain", "network.name": "rnn",
         "algorithm.name": "bptt_truncated", "algorithm.h": h, "lr": lr, "selected_by": "sweep-a"}
        for h, lr in (("1", "0.3"), ("4", "0.03"), ("12", "0.01"))
    ] + [{"task_sequence.name": "split_mnist", "task_sequence.scenario": "domain", "network.name": "rnn",
          "algorithm.name": "rtrl", "algorithm.h": "", "lr": "1.0", "selected_by": "sweep-b"}])
    for learner, lr, sweep in (("bptt_4_1", 0.03, "sweep-a"), ("bptt_1_1", 0.3, "sweep-a"), ("rtrl", 1.0, "sweep-b")):
        cfg = study_cfg(compose_cfg, tmp_path, learner, "task_sequence=split_mnist", "task_sequence.scenario=domain")
        validate(cfg)
        assert cfg.algorithm.lr == lr and cfg.algorithm.lr_selected_by == sweep
        params = flatten(cfg)  # what the run records
        assert params["algorithm.lr"] == str(lr) and params["algorithm.lr_selected_by"] == sweep
    with pytest.raises(ConfigError, match=r"'algorithm.lr(_selected_by)?'.*no row for .*task_sequence.scenario='task'"):
        study_cfg(compose_cfg, tmp_path, "rtrl", "task_sequence=split_mnist", "task_sequence.scenario=task")
    # the command line still wins over the table
    by_hand = study_cfg(compose_cfg, tmp_path, "rtrl", "task_sequence.scenario=task", "algorithm.lr=0.2",
                        "algorithm.lr_selected_by=by-hand")
    assert by_hand.algorithm.lr == 0.2 and validate(by_hand).algorithm.lr_selected_by == "by-hand"


def test_a_table_that_matches_twice_or_is_missing_stops_the_run(compose_cfg, tmp_path):
    row = {"task_sequence.name": "split_mnist", "network.name": "rnn", "lr": "0.1", "selected_by": "s"}
    write_table(tmp_path, [row, {**row, "lr": "0.2"}])
    with pytest.raises(ConfigError, match="2 rows"):
        validate(study_cfg(compose_cfg, tmp_path, "rtrl", "task_sequence=split_mnist"))
    with pytest.raises(ConfigError, match="does not exist"):
        validate(study_cfg(compose_cfg, tmp_path / "elsewhere", "rtrl"))


@pytest.mark.parametrize("preset", ["credit_assignment", "credit_assignment_samples", "credit_assignment_lr",
                                    "credit_assignment_samples_lr", "credit_assignment_recall",
                                    "credit_assignment_recall_lr"])
def test_every_learner_and_data_set_of_the_presets_is_valid(compose_cfg, tmp_path, preset):
    """Every learner on every data set of the sweep (the other axes change no rule; the sweeper
    validates every job before launching): selection jobs score validation sets and read no table,
    study jobs score test sets and record the selection sweep."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from forgetlab.config import compose

    every_learner_table(tmp_path)
    params = compose([f"experiment={preset}"], return_hydra_config=True, multirun=True).hydra.sweeper.params
    parsed = {o.key_or_group: o for o in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])}
    values = {key: list(o.sweep_string_iterator()) if o.is_sweep_override() else [str(o.value())]
              for key, o in parsed.items()}
    selection = preset.endswith("_lr")
    loss_design = [f"{key}={values[key][0]}" for key in ("network.loss_at", "network.loss_last_steps") if key in values]
    for learner, sequence in itertools.product(values["learner"], values["task_sequence"]):
        cfg = compose_cfg(f"experiment={preset}", f"paths.root_dir={tmp_path}", f"learner={learner}",
                          f"task_sequence={sequence}", *loss_design)
        validate(cfg)
        assert cfg.eval.split == ("val" if selection else "test")
        assert cfg.task_sequence.val_size > 0
        assert cfg.algorithm.lr_selected_by == ("" if selection else "20261127-000000-abcdef")
        if cfg.network.name == "rnn":
            assert cfg.network.hidden_size == 32
            # The memory task with the loss on its last steps only: with loss at every step it needs no
            # credit through time (conf/experiment/credit_assignment_recall.yaml).
            recall = sequence == "delayed_recall"
            assert (cfg.network.loss_at, cfg.network.loss_last_steps) == (("last", 2) if recall else ("all", 1))
    factor_1 = "samples" not in preset
    assert len(values["learner"]) == (5 if factor_1 else 6)
    assert values["task_sequence"] == (["delayed_recall"] if "recall" in preset else ["split_mnist"])
    assert values["task_sequence.scenario"] == ["task", "domain", "class"]
    if selection:
        assert values["seed"] == ["1000", "1001", "1002"] and len(values["algorithm.lr"]) == 5
        assert values["task_sequence.joint"] == ["False"] and values["network.init_perturbation"] == ["0.0"]
    else:
        assert len(values["seed"]) == 20 and "algorithm.lr" not in values
        assert values["task_sequence.joint"] == ["False", "True"]
        assert values["network.init_perturbation"] == ["0.0", "1e-12"]
