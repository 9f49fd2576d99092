"""Continual-learning strategies (src/forgetlab/strategies/): every strategy with every learning
algorithm, their new gradient terms against finite differences (float64) and torch's autograd, the
no-op settings bit-identical to fine-tuning, ensembles whose members differ in a penalty's strength,
the episodic memory, replay's bookkeeping, the config hash, validation and the cost guard."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import pytest

from forgetlab import contract
from forgetlab.algorithms import ALGORITHMS
from forgetlab.assembly import build_ensemble_trainer, build_trainer, learner_label
from forgetlab.config import ConfigError, compose, as_config, validate
from forgetlab.gradcheck import finite_difference, relative_error
from forgetlab.networks import build_network
from forgetlab.strategies import RECORD, STRATEGIES, build_strategy
from forgetlab.strategies.memory import class_balanced, reservoir
from forgetlab.trainer import Callback
from forgetlab.tracking.mlflow_run import config_hash
from tests.test_ensemble import assert_same_run, learner

# forgetlab's own algorithms: not those a test module registers (tests/test_extending.py's sign-SGD, present
# or not depending on which modules a test worker collected), so that the parameters do not vary by worker.
BUILT_IN = [a for a in ALGORITHMS.names() if ALGORITHMS[a].__module__.startswith("forgetlab.")]

SMALL = ["tracking.enabled=false", "task_sequence.n_tasks=3", "task_sequence.max_train_per_task=30",
         "trainer.epochs_per_task=1", "eval.every_samples=0", "task_sequence.scenario=class"]
# Each strategy in a setting where it acts (a memory of 6 samples per task, a penalty that pulls).
ACTIVE = {
    "fine_tuning": [],
    "replay": ["strategy=replay", "strategy.memory_size=6"],
    "ewc": ["strategy=ewc", "strategy.strength=5"],
    "si": ["strategy=si", "strategy.strength=0.05"],
    "agem": ["strategy=agem", "strategy.memory_size=6", "strategy.sample_size=4"],
}
# ... and where it must do nothing at all.
NO_OP = {
    "replay": ["strategy=replay", "strategy.memory_size=0"],
    "ewc": ["strategy=ewc", "strategy.strength=0"],
    "si": ["strategy=si", "strategy.strength=0"],
    "agem": ["strategy=agem", "strategy.memory_size=0"],
}


def weights(trainer, m: int = 0) -> dict[str, np.ndarray]:
    return {n: p[m].copy() for n, p in trainer.network.params.items()}


def cfg_of(*overrides):
    return validate(as_config(compose(overrides)))


class LearnCounter(Callback):
    """Counts the algorithm's ``learn`` calls (stream and replayed batches)."""

    def __init__(self, trainer) -> None:
        self.calls, learn = 0, trainer.algorithm.learn

        def counted(x, y, mask):
            self.calls += 1
            return learn(x, y, mask)

        trainer.algorithm.learn = counted


@lru_cache(maxsize=None)
def fine_tuning_run(algorithm: str):
    trainer = build_trainer(cfg_of(*SMALL, *learner(algorithm)))
    counter = LearnCounter(trainer)
    (result,) = trainer.run()
    return trainer, result, counter.calls


# --- every strategy with every algorithm -----------------------------------------------------------


def check_fine_tuning(trainer, result, baseline, counter, cfg) -> None:
    assert learner_label(cfg) == ALGORITHMS[cfg.algorithm.name].label(cfg) and RECORD not in result.records
    assert_same_run(baseline[1], result, weights(baseline[0]), weights(trainer))


def check_memory(trainer, result, cfg) -> None:
    """The record names memory_size samples of each task, and the memory holds exactly those samples."""
    record, memory = result.records[RECORD], trainer.callbacks[0].memory
    k, n_tasks = cfg.strategy.memory_size, len(trainer.stages)
    np.testing.assert_array_equal(record["task"], np.repeat(np.arange(n_tasks), k))
    np.testing.assert_array_equal(record["stage"], np.repeat(np.arange(n_tasks), k))
    tasks = trainer.sequence.tasks
    expected = np.stack([tasks[t].x_train[i] for t, i in zip(record["task"], record["index"])])
    np.testing.assert_array_equal(memory.x[0], expected)


def check_replay(trainer, result, baseline, counter, cfg) -> None:
    check_memory(trainer, result, cfg)
    b = trainer.batch_size
    replayed = sum(stage.n // b for stage in trainer.stages[1:])  # ratio 1: a batch after each full batch
    assert counter.calls - baseline[2] == replayed > 0
    assert trainer.algorithm.updates > baseline[0].algorithm.updates
    # not samples seen, not presentations: the same points of the same stream
    assert [p.samples_seen for p in result.points] == [p.samples_seen for p in baseline[1].points]
    np.testing.assert_array_equal(result.presented_at, baseline[1].presented_at)


def check_penalty(trainer, result, baseline, counter, cfg) -> None:
    strategy = trainer.callbacks[0]
    assert all(np.all(w >= 0) for w in strategy.w.values()) and any(np.any(w > 0) for w in strategy.w.values())
    assert counter.calls == baseline[2]
    assert not np.array_equal(trainer.network.flatten(trainer.network.params), baseline[0].network.flatten(
        baseline[0].network.params))


def check_agem(trainer, result, baseline, counter, cfg) -> None:
    check_memory(trainer, result, cfg)
    record = result.records[RECORD]
    assert 0 < record["projected_updates"] <= record["updates"] == trainer.algorithm.updates
    assert trainer.algorithm.updates == baseline[0].algorithm.updates  # A-GEM changes updates, not their number


CHECKS = {"fine_tuning": check_fine_tuning, "replay": check_replay, "ewc": check_penalty, "si": check_penalty,
          "agem": check_agem}


@pytest.mark.parametrize("algorithm", BUILT_IN)
@pytest.mark.parametrize("strategy", list(ACTIVE))  # forgetlab's own (tests/test_extending.py declares another)
def test_every_strategy_trains_with_every_algorithm(algorithm, strategy):
    cfg = cfg_of(*SMALL, *learner(algorithm), *ACTIVE[strategy])
    trainer = build_trainer(cfg)
    counter = LearnCounter(trainer)
    (result,) = trainer.run()
    assert result.error is None
    assert 0.0 < result.accuracy_matrix[-1].mean() <= 1.0
    CHECKS[strategy](trainer, result, fine_tuning_run(algorithm), counter, cfg)


@pytest.mark.parametrize("algorithm", BUILT_IN)
def test_strategies_set_to_do_nothing_are_fine_tuning_bit_for_bit(algorithm):
    """ewc and si at strength 0, replay and agem with an empty memory: every evaluation point, the
    presentation times and the final weights are those of fine-tuning."""
    baseline, result, _ = fine_tuning_run(algorithm)
    for name, overrides in NO_OP.items():
        trainer = build_trainer(cfg_of(*SMALL, *learner(algorithm), *overrides))
        (same,) = trainer.run()
        assert_same_run(result, same, weights(baseline), weights(trainer))
        assert trainer.algorithm.updates == baseline.algorithm.updates, name


# --- gradients ---------------------------------------------------------------------------------------


LEARNER_OF = {"mlp": "learner=mlp_backprop", "rnn": "learner=rnn_bptt_epochwise"}


def small_network(cfg, seed: int = 0, members: int = 2):
    recurrent = cfg.network.name == "rnn"
    shape = (5, 3) if recurrent else (7,)
    net = build_network(cfg.network, shape, 4, [np.random.default_rng(seed + s) for s in range(members)],
                        init_scale=[1.0] * members)
    return net, shape


def random_like(net, rng, low=0.0, high=1.0) -> dict[str, np.ndarray]:
    return {n: rng.uniform(low, high, size=p.shape) for n, p in net.params.items()}


def penalised(strategy_name: str, network: str, *overrides: str, strengths=(3.0, 0.7)):
    """A strategy over a small network of 2 members (their own strengths), after three consolidations at
    random weights: random Fishers (EWC) or path integrals (SI)."""
    cfg = cfg_of(LEARNER_OF[network], f"strategy={strategy_name}", *overrides)
    net, _ = small_network(cfg)
    members = [dataclasses.replace(cfg.strategy, strength=s) for s in strengths]
    strategy = build_strategy(members, net, [np.random.default_rng(s) for s in range(2)])
    rng = np.random.default_rng(9)
    if strategy_name == "si":
        strategy.on_train_start(type("T", (), {"algorithm": type("A", (), {"hooks": []})()})())
    for _ in range(3):
        for n, p in net.params.items():
            p[...] = rng.normal(size=p.shape)
        if strategy_name == "ewc":
            strategy.consolidate(random_like(net, rng))
        else:
            for n, p in net.params.items():
                strategy.omega[n][...] = rng.normal(size=p.shape)  # importance is rectified at 0
            strategy.consolidate()
    for n, p in net.params.items():
        p[...] = rng.normal(size=p.shape)
    return strategy, net


@pytest.mark.parametrize("network", ["mlp", "rnn"])
@pytest.mark.parametrize("strategy_name,overrides", [
    ("ewc", []), ("ewc", ["strategy.mode=online", "strategy.gamma=0.6"]), ("si", [])])
def test_the_penalty_gradient_matches_finite_differences(strategy_name, overrides, network):
    strategy, net = penalised(strategy_name, network, *overrides)
    added = {n: np.zeros_like(p) for n, p in net.params.items()}
    strategy.adjust(added)
    numeric = finite_difference(strategy.penalty, net.params)
    for n, g in added.items():
        assert np.any(g != 0), n
        for m in range(2):
            assert relative_error(g[m], numeric[n][m]) < 1e-6, (n, m)  # the tolerance of python -m forgetlab.gradcheck


@pytest.mark.parametrize("algorithm", BUILT_IN)
def test_an_update_with_the_penalty_is_the_gradient_of_objective_plus_penalty(algorithm):
    """What ``apply`` receives after the hook: the algorithm's gradient plus the penalty's, checked
    against central differences of the algorithm's (frozen) objective plus the penalty, on the MLP
    and the RNN, two members with their own strengths and samples."""
    cfg = cfg_of(*SMALL, *learner(algorithm), "strategy=ewc",
                 "network.hidden_size=4" if ALGORITHMS[algorithm].trains[0] == "rnn" else "network.hidden_sizes=[5]")
    from forgetlab.algorithms import build_algorithm

    net, shape = small_network(cfg)
    algo = build_algorithm([dataclasses.replace(cfg.algorithm, lr=0.1)] * 2, net)
    strategy = build_strategy([dataclasses.replace(cfg.strategy, strength=s) for s in (2.0, 0.5)], net,
                              [np.random.default_rng(s) for s in range(2)])
    rng = np.random.default_rng(3)
    strategy.consolidate(random_like(net, rng))
    for p in net.params.values():
        p += rng.normal(scale=0.3, size=p.shape)
    batch = 1 if ALGORITHMS[algorithm].one_sample_at_a_time else 3
    x = rng.uniform(size=(2, batch, *shape))
    y = np.zeros((2, batch, 4))
    y[..., 1] = 1.0
    mask = np.ones((2, batch, 4))
    _, grads = algo.gradient(x, y, mask)
    strategy.adjust(grads)
    objective = algo.frozen_objective(x, y, mask)
    numeric = finite_difference(lambda: objective() + strategy.penalty(), net.params)
    for n, g in grads.items():
        for m in range(2):
            assert relative_error(g[m], numeric[n][m]) < 1e-6, (n, m)


@pytest.mark.parametrize("network", ["mlp", "rnn"])
def test_the_agem_reference_gradient_matches_finite_differences(network):
    """A-GEM's new gradient: the mean data-loss gradient of each member's own memory batch."""
    cfg = cfg_of(LEARNER_OF[network])
    net, shape = small_network(cfg)
    rng = np.random.default_rng(5)
    x = rng.uniform(size=(2, 6, *shape))
    y = np.eye(4)[rng.integers(0, 4, size=(2, 6))]
    mask = np.ones((2, 6, 4))
    _, analytic = net.data_gradient(x, y, mask)
    numeric = finite_difference(lambda: net.data_loss(x, y, mask), net.params)
    for n, g in analytic.items():
        assert relative_error(g, numeric[n]) < 1e-7, n


def test_the_penalty_gradient_equals_torch_autograd():
    """(lambda/2) sum_k F_k (theta - theta*_k)^2 (EWC, three tasks), its online form, and SI's
    c sum Omega (theta - theta~)^2, differentiated by torch from the per-task terms themselves."""
    torch = pytest.importorskip("torch")
    cfg = cfg_of("strategy=ewc")
    net, _ = small_network(cfg, members=1)
    rng = np.random.default_rng(11)
    for mode, gamma in (("separate", 1.0), ("online", 0.7)):
        strategy = build_strategy([dataclasses.replace(cfg.strategy, strength=4.0, mode=mode, gamma=gamma)], net,
                                  [np.random.default_rng(0)])
        tasks = []
        for _ in range(3):
            for p in net.params.values():
                p[...] = rng.normal(size=p.shape)
            fisher = random_like(net, rng)
            strategy.consolidate(fisher)
            tasks.append(({n: f[0] for n, f in fisher.items()}, {n: p[0].copy() for n, p in net.params.items()}))
        for p in net.params.values():
            p[...] = rng.normal(size=p.shape)
        theta = {n: torch.tensor(p[0], requires_grad=True) for n, p in net.params.items()}
        if mode == "separate":
            terms = [(torch.tensor(F[n]) * (theta[n] - torch.tensor(star[n])) ** 2).sum() for F, star in tasks for n in theta]
        else:
            decayed = {n: sum(gamma ** (len(tasks) - 1 - k) * torch.tensor(F[n]) for k, (F, _) in enumerate(tasks)) for n in theta}
            terms = [(decayed[n] * (theta[n] - torch.tensor(tasks[-1][1][n])) ** 2).sum() for n in theta]
        (2.0 * sum(terms)).backward()  # lambda / 2 with lambda = 4
        added = {n: np.zeros_like(p) for n, p in net.params.items()}
        strategy.adjust(added)
        for n in theta:
            np.testing.assert_allclose(added[n][0], theta[n].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=(mode, n))


def test_the_fisher_is_the_mean_squared_per_sample_gradient_of_torchs_loss():
    """EWC's empirical Fisher from the network's per-sample backward pass, against torch's autograd of
    each sample's loss one at a time (a masked softmax with cross-entropy, as in task-IL)."""
    torch = pytest.importorskip("torch")
    from benchmarks.per_sample_backprop import TorchMLP, torch_loss

    cfg = cfg_of("strategy=ewc", "network.output=softmax", "network.loss=cross_entropy", "network.activation=relu")
    net, _ = small_network(cfg, members=1)
    strategy = build_strategy([cfg.strategy], net, [np.random.default_rng(0)])
    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, 7))
    y = np.eye(4)[rng.integers(0, 2, size=9)]
    mask = np.tile([1.0, 1.0, 0.0, 0.0], (9, 1))
    fisher = strategy.fisher(x, y, mask)
    model = TorchMLP(net)
    expected = [torch.zeros_like(p) for layer in model.layers for p in (layer.weight, layer.bias)]
    for i in range(9):
        model.zero_grad()
        t = lambda a: torch.tensor(a[i : i + 1])  # noqa: E731
        torch_loss("softmax", "cross_entropy", model(t(x), t(mask)), t(y), t(mask)).sum().backward()
        for acc, p in zip(expected, (p for layer in model.layers for p in (layer.weight, layer.bias))):
            acc += p.grad ** 2 / 9
    names = [n for l in range(len(model.layers)) for n in (f"W{l}", f"b{l}")]
    for n, e in zip(names, expected):
        np.testing.assert_allclose(fisher[n][0], e.numpy(), rtol=1e-10, atol=1e-14, err_msg=n)


def test_si_importance_is_the_path_integral_of_the_algorithms_own_updates():
    """Omega after the first task = max(0, sum_u -g_u Delta theta_u / ((theta_end - theta_start)^2 + xi)),
    g_u the gradient the algorithm computed (without the penalty) and Delta theta_u the change it made,
    summed here from the outside, update by update."""
    cfg = cfg_of(*SMALL, "strategy=si", "strategy.strength=0.05", "strategy.damping=0.3", "trainer.batch_size=2")
    trainer = build_trainer(cfg)
    algo, net, si = trainer.algorithm, trainer.network, trainer.callbacks[0]
    path = {n: np.zeros_like(p) for n, p in net.params.items()}
    start = weights(trainer)
    gradient, pending, seen = algo.gradient, [], {}

    def recording(x, y, mask):
        loss, grads = gradient(x, y, mask)
        pending[:] = [{n: g.copy() for n, g in grads.items()}, {n: p.copy() for n, p in net.params.items()}]
        return loss, grads

    class Outside(Callback):
        def on_update(self, trainer):
            if not seen:
                g, before = pending
                for n, p in net.params.items():
                    path[n] -= g[n] * (p - before[n])

        def on_stage_end(self, trainer, stage):
            if stage == 0:
                seen.update(importance={n: w.copy() for n, w in si.importance.items()},
                            end={n: p.copy() for n, p in si.start.items()})

    algo.gradient = recording
    trainer.callbacks.append(Outside())
    trainer.run()
    for n, omega in path.items():
        moved = seen["end"][n] - start[n][None]
        expected = np.maximum(omega / (moved * moved + 0.3), 0.0)
        np.testing.assert_allclose(seen["importance"][n], expected, rtol=1e-9, atol=1e-15, err_msg=n)
        assert np.any(expected > 0), n


# --- A-GEM's projection --------------------------------------------------------------------------------


def test_agem_projects_exactly_the_conflicting_members_onto_the_memorys_gradient():
    """With the reference batch the whole memory: a member whose gradient conflicts with the memory's
    (negative dot product) ends orthogonal to it; one that does not keeps its gradient bit for bit."""
    cfg = cfg_of(*SMALL, "strategy=agem", "strategy.memory_size=4", "strategy.sample_size=100")
    trainer = build_ensemble_trainer([cfg, dataclasses.replace(cfg, seed=1)])
    agem, net = trainer.callbacks[0], trainer.network
    agem.on_train_start(trainer)
    agem.memory.add_stage(trainer, 0)
    _, reference = net.data_gradient(agem.memory.x, agem.memory.y, agem.memory.mask)
    ref = net.flatten(reference)
    rng = np.random.default_rng(1)
    g = {n: rng.normal(size=p.shape) for n, p in net.params.items()}
    flat = net.flatten(g)
    # member 0 made to conflict, member 1 to agree: g_m +- 3 |g_m| r_m / |r_m|
    for m, sign in ((0, -1.0), (1, 1.0)):
        shift = sign * 3 * np.linalg.norm(flat[m]) / np.linalg.norm(ref[m])
        for n in g:
            g[n][m] += shift * reference[n][m]
    before = {n: a.copy() for n, a in g.items()}
    agem.adjust(g)
    after = net.flatten(g)
    assert net.flatten(before)[0] @ ref[0] < 0 and abs(after[0] @ ref[0]) < 1e-9 * np.linalg.norm(after[0]) * np.linalg.norm(ref[0])
    for n in g:
        np.testing.assert_array_equal(g[n][1], before[n][1])
    assert list(agem.projected) == [1, 0]


# --- ensembles -------------------------------------------------------------------------------------------

# Members of one ensemble: their own seeds and, for the penalties, their own strengths.
STRATEGY_MEMBERS = {
    "ewc": [["seed=0", "strategy.strength=5"], ["seed=1", "strategy.strength=1"], ["seed=2", "strategy.strength=0"]],
    "si": [["seed=0", "strategy.strength=0.05"], ["seed=1", "strategy.strength=0.2"], ["seed=2", "strategy.strength=0"]],
    "replay": [["seed=0"], ["seed=1", "algorithm.lr=0.2"], ["seed=2"]],
    "agem": [["seed=0"], ["seed=1", "algorithm.lr=0.2"], ["seed=2"]],
}


@pytest.mark.parametrize("algorithm", [
    a if a in ("backprop", "rtrl") else pytest.param(a, marks=pytest.mark.slow) for a in BUILT_IN])
@pytest.mark.parametrize("strategy", list(STRATEGY_MEMBERS))
def test_each_member_has_the_strategy_numbers_of_its_config_alone(strategy, algorithm):
    cfgs = [cfg_of(*SMALL, *learner(algorithm), *ACTIVE[strategy], *member) for member in STRATEGY_MEMBERS[strategy]]
    ensemble = build_ensemble_trainer(cfgs)
    results = ensemble.run()
    assert all(r.error is None for r in results)
    for m in (1, 2):
        solo = build_trainer(cfgs[m])
        (alone,) = solo.run()
        assert_same_run(alone, results[m], weights(solo), weights(ensemble, m))
        if RECORD in alone.records:
            for key, value in alone.records[RECORD].items():
                np.testing.assert_array_equal(value, results[m].records[RECORD][key], err_msg=key)
    assert not np.array_equal(weights(ensemble, 0)["W_hy" if "W_hy" in ensemble.network.params else "W1"],
                              weights(ensemble, 1)["W_hy" if "W_hy" in ensemble.network.params else "W1"])


def test_a_penalty_strength_is_a_member_key():
    from forgetlab.assembly import incompatible_key, member_keys

    ewc = cfg_of("strategy=ewc")
    assert "strategy.strength" in member_keys(ewc)
    assert incompatible_key([ewc, cfg_of("strategy=ewc", "strategy.strength=3")]) is None
    assert incompatible_key([cfg_of("strategy=replay"), cfg_of("strategy=replay", "strategy.ratio=2")])[0] == "strategy.ratio"
    assert incompatible_key([ewc, cfg_of("strategy=si")])[0].startswith("strategy.")


# --- the episodic memory and replay's bookkeeping ------------------------------------------------------


def test_class_balanced_selection_spreads_the_memory_evenly_over_the_classes():
    labels = np.repeat([4, 5, 6], [30, 5, 40])
    owners = np.zeros(75, dtype=np.int64)
    chosen = class_balanced(labels, owners, 14, np.random.default_rng(0))
    assert len(chosen) == 5 + 5 + 4 and len(set(chosen)) == len(chosen)  # 5, 5, 4: class 5 gives its 5
    assert sorted(np.bincount(labels[chosen] - 4).tolist()) == [4, 5, 5]
    again = class_balanced(labels, owners, 14, np.random.default_rng(0))
    np.testing.assert_array_equal(chosen, again)
    assert not np.array_equal(chosen, class_balanced(labels, owners, 14, np.random.default_rng(1)))


def test_reservoir_sampling_keeps_a_uniform_subset_of_the_stream():
    order = np.random.default_rng(0).permutation(20)
    counts = np.zeros(20)
    for seed in range(4000):
        kept = reservoir(order, 5, np.random.default_rng(seed))
        assert len(set(kept)) == 5 and set(kept) <= set(order)
        counts[kept] += 1
    expected = 4000 * 5 / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 43.8  # the 99.9 % quantile of chi-square with 19 degrees of freedom
    np.testing.assert_array_equal(reservoir(order, 30, np.random.default_rng(0)), np.sort(order))


def test_reservoir_memory_follows_each_members_own_stream():
    cfgs = [cfg_of(*SMALL, *ACTIVE["replay"], "strategy.selection=reservoir", f"seed={s}") for s in (0, 1)]
    trainer = build_ensemble_trainer(cfgs)
    results = trainer.run()
    first, second = (r.records[RECORD] for r in results)
    assert len(first["index"]) == 3 * 6 and not np.array_equal(first["index"], second["index"])


def test_replay_completes_each_stream_presentation_before_replaying():
    """The update probe's bookkeeping under replay (per-sample backprop, ratio 1): a probe sample's
    presentation completes at the update that learns it, so after stage 0 (no memory yet) every
    earlier sample of later stages has been followed by exactly one replayed update."""
    cfg = cfg_of(*SMALL, *ACTIVE["replay"], "eval.probe_every=1", "eval.update_probe_per_task=all", "eval.probe_per_task=all")
    trainer = build_trainer(cfg)
    (result,) = trainer.run()
    history = result.records["update_probe"]
    stage_0 = trainer.stages[0].n
    presented = result.presented_at[:, 0]  # samples seen after each probe sample's one presentation
    completing = history.presented_update[:, 0]
    expected = presented + np.maximum(0, presented - 1 - stage_0)
    np.testing.assert_array_equal(completing, expected)
    assert trainer.algorithm.updates == sum(s.n for s in trainer.stages) + sum(s.n for s in trainer.stages[1:])


@pytest.mark.slow
def test_the_memory_is_an_artifact_of_the_run_and_the_strategy_its_params(sqlite_uri, tmp_path):
    from mlflow.tracking import MlflowClient

    from forgetlab.experiment import RunContext, run_experiment

    cfg = as_config(compose([f"tracking.uri={sqlite_uri}", *SMALL[1:], *ACTIVE["replay"]]))
    run_experiment(cfg, RunContext(quiet=True))
    client = MlflowClient(sqlite_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("forgetlab").experiment_id])
    params = run.data.params
    assert (params["strategy.name"], params["strategy.memory_size"], params["strategy.ratio"]) == ("replay", "6", "1.0")
    assert run.data.tags[contract.TAG_LEARNER_LABEL] == "backprop (MLP) + replay"
    assert run.info.run_name.startswith("backprop·replay·")
    path = client.download_artifacts(run.info.run_id, contract.ARTIFACT_STRATEGY_MEMORY, str(tmp_path))
    with np.load(path) as memory:
        assert memory["task"].tolist() == [0] * 6 + [1] * 6 + [2] * 6 and len(memory["index"]) == 18


# --- config: the hash, validation, labels, the cost guard ------------------------------------------


def test_the_strategy_group_at_its_neutral_values_keeps_every_recorded_config_hash(compose_cfg):
    cfg = compose_cfg()
    stripped = dataclasses.asdict(cfg)
    del stripped["strategy"]  # a config recorded before strategies existed
    assert config_hash(cfg) == config_hash(stripped)
    rnn = compose_cfg("learner=rnn_rtrl")
    stripped = dataclasses.asdict(rnn)
    del stripped["strategy"]
    assert config_hash(rnn) == config_hash(stripped)
    assert config_hash(compose_cfg("strategy=ewc")) != config_hash(cfg)
    assert config_hash(compose_cfg("strategy=ewc", "strategy.selected_by=20260101-000000-abcdef")) != config_hash(
        compose_cfg("strategy=ewc"))


@pytest.mark.parametrize("overrides,message", [
    (["strategy=ewc", "strategy.strength=-1"], "The 'strategy.strength' parameter must be a number in the range [0, inf). Got -1.0"),
    (["strategy=replay", "strategy.ratio=0"], "The 'strategy.ratio' parameter must be a number in the range (0, inf). Got 0.0"),
    (["strategy=agem", "strategy.sample_size=0"], "The 'strategy.sample_size' parameter must be a number in the range [1, inf)"),
    (["strategy=replay", "strategy.selection=newest"], "The 'strategy.selection' parameter must be one of 'class_balanced', 'reservoir'"),
    (["strategy=replay", "strategy.memory_size=-3"], "The 'strategy.memory_size' parameter must be a non-negative int"),
    (["strategy=si", "strategy.damping=0"], "The 'strategy.damping' parameter must be a number in the range (0, inf)"),
    (["strategy=ewc", "strategy.gamma=0.9"], "The 'strategy.gamma' parameter must be 1.0 with strategy.mode='separate'"),
    (["strategy=replay", "learner=rnn_bptt_truncated", "algorithm.reset=never"],
     "The 'strategy.name' parameter must be a strategy other than 'replay' with algorithm.reset='never'"),
])
def test_invalid_strategy_values_are_refused_with_the_key(compose_cfg, overrides, message):
    with pytest.raises(ConfigError) as error:
        validate(compose_cfg(*overrides))
    assert message in str(error.value)


def test_learner_labels_name_the_strategy():
    assert learner_label(cfg_of()) == "backprop (MLP)"
    assert learner_label(cfg_of("strategy=ewc")) == "backprop (MLP) + EWC"
    assert learner_label(cfg_of("strategy=ewc", "strategy.mode=online")) == "backprop (MLP) + online EWC"
    assert learner_label(cfg_of("learner=rnn_rtrl", "strategy=agem")) == "RTRL + A-GEM"
    assert learner_label(cfg_of("strategy=si")) == "backprop (MLP) + SI"


@pytest.mark.slow
def test_the_cost_guard_counts_what_a_strategy_adds():
    from forgetlab.cost import data_size, estimate
    from forgetlab.networks import NETWORKS

    def parts(*overrides):
        cfg = cfg_of("task_sequence=split_mnist", *overrides)
        data = data_size(cfg)
        network = NETWORKS[cfg.network.name].cost(cfg.network, data)
        work = ALGORITHMS[cfg.algorithm.name].cost(cfg, network, data)
        return network, work, STRATEGIES[cfg.strategy.name].cost(cfg, network, data, work), estimate(cfg, data)

    _, work, nothing, plain = parts()
    assert nothing.ops_per_sample == 0 and not nothing.memory
    _, _, replay, replay_total = parts("strategy=replay", "strategy.ratio=2")
    assert replay.ops_per_sample == pytest.approx(2 * 4 / 5 * work.ops_per_sample)  # replayed from the 2nd of 5 tasks on
    assert replay_total.seconds > 1.5 * plain.seconds
    *_, bigger = parts("strategy=replay", "strategy.ratio=2", "strategy.memory_size=10000")
    assert bigger.memory_bytes - replay_total.memory_bytes == pytest.approx(8 * (10000 - 100) * 5 * (784 + 2 * 10))
    for name in ("ewc", "si", "agem"):
        *_, total = parts(f"strategy={name}")
        assert total.memory_bytes > plain.memory_bytes and total.seconds > plain.seconds, name
    rnn, rtrl, agem, _ = parts("learner=rnn_rtrl", "network.loss_at=all", "strategy=agem")
    assert rtrl.updates_per_sample == 28  # an update at every row of an MNIST digit
    # a BPTT pass over 64 memory sequences and the projection at each of them, from the 2nd task on
    assert agem.ops_per_sample == pytest.approx(28 * 4 / 5 * (3 * 64 * rnn.forward_ops + 6 * rnn.params))


@pytest.mark.parametrize("strategy", ["si", "agem"])
def test_both_forms_of_rtrl_give_a_strategy_the_same_updates(strategy):
    """RTRL's forward recursion and its reverse accumulation compute one gradient: under a strategy that
    reads every update (SI's path integral) or changes it (A-GEM's projection), the runs agree."""
    finals = []
    for form in ("forward", "reverse"):
        trainer = build_trainer(cfg_of(*SMALL, *learner("rtrl"), *ACTIVE[strategy], f"algorithm.implementation={form}"))
        trainer.run()
        finals.append(trainer.network.flatten(trainer.network.params))
    np.testing.assert_allclose(finals[0], finals[1], rtol=1e-9, atol=1e-11)
    assert not np.array_equal(finals[0], fine_tuning_run("rtrl")[0].network.flatten(fine_tuning_run("rtrl")[0].network.params))
