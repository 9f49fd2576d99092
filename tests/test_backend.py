"""One code path for every array library (``backend``): training, evaluation and both probes run on
the arrays of the network's namespace, and the data meets them there.

Without a GPU the device path is checked with ``DeviceArray``, a NumPy array that, like a CuPy array,
refuses to meet a host array (a plain NumPy array) in any computation: whatever the trainer forgot to
move to the device raises. With CuPy and a GPU the same runs on CuPy equal NumPy within 1e-10."""

from __future__ import annotations

import types

import numpy as np
import pytest

from forgetlab.arrays import NUMPY, backend_namespace, backend_unavailable, to_numpy
from forgetlab.assembly import build_ensemble_trainer, build_trainer
from forgetlab.config import ConfigError, validate

SHORT = ["tracking.enabled=false", "task_sequence.n_tasks=2", "trainer.epochs_per_task=1",
         "task_sequence.test_size=0.8", "eval.every_samples=40"]
LEARNERS = {
    "backprop": ["learner=mlp_backprop", "network.hidden_sizes=[16]", "trainer.batch_size=3", "algorithm.l2=0.001"],
    "bptt_epochwise": ["learner=rnn_bptt_epochwise", "network.hidden_size=8", "network.loss_at=all"],
    "bptt_truncated": ["learner=rnn_bptt_truncated", "network.hidden_size=8", "network.loss_at=all",
                       "algorithm.h=3", "algorithm.h_prime=2", "algorithm.reset=never"],
    "rtrl": ["learner=rnn_rtrl", "network.hidden_size=8", "network.loss_at=all", "algorithm.update_every=3",
             "algorithm.l2=0.001"],  # the auto rule picks the reverse form here
    "rtrl_forward": ["learner=rnn_rtrl", "network.hidden_size=8", "network.loss_at=all", "algorithm.update_every=3",
                     "algorithm.l2=0.001", "algorithm.implementation=forward"],
}
PROBED = ["eval.probe_every=1", "eval.interference=true", "eval.update_probe_per_task=2"]
GPU = backend_unavailable("cupy") is None


def _host_arrays(values):
    for value in values:
        if isinstance(value, (list, tuple)):
            yield from _host_arrays(value)
        elif type(value) is np.ndarray and value.ndim > 0:
            yield value


class DeviceArray(np.ndarray):
    """A NumPy array standing in for an array on a device: arithmetic with a host array of one or
    more axes raises TypeError, as CuPy does; results stay device arrays."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        self._refuse_host(ufunc.__name__, inputs + kwargs.get("out", ()))
        host = [a.view(np.ndarray) if isinstance(a, DeviceArray) else a for a in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(o.view(np.ndarray) for o in kwargs["out"])
        result = getattr(ufunc, method)(*host, **kwargs)
        return result.view(DeviceArray) if isinstance(result, np.ndarray) else result

    def __array_function__(self, func, types_, args, kwargs):
        self._refuse_host(func.__name__, list(args) + list(kwargs.values()))
        result = super().__array_function__(func, types_, args, kwargs)
        return result.view(DeviceArray) if type(result) is np.ndarray else result

    @staticmethod
    def _refuse_host(what, values):
        for host in _host_arrays(values):
            raise TypeError(f"{what}: a host array of shape {host.shape} meets device arrays")


def _on_device(function):
    def wrapped(*args, **kwargs):
        result = function(*args, **kwargs)
        return result.view(DeviceArray) if isinstance(result, np.ndarray) else result
    return wrapped


# The namespace of DeviceArray: NumPy's, with every array it creates on the "device".
DEVICE = types.SimpleNamespace(**vars(NUMPY))
for _name in ("asarray", "zeros", "empty", "ones", "full", "arange", "eye"):
    setattr(DEVICE, _name, _on_device(getattr(np, _name)))
for _name in ("zeros_like", "empty_like", "ones_like"):  # NumPy's own would copy a host array into them
    setattr(DEVICE, _name, _on_device(lambda a, dtype=None, _f=getattr(np, _name.removesuffix("_like")):
                                      _f(a.shape, dtype=a.dtype if dtype is None else dtype)))
DEVICE.__name__ = "device_standin"


@pytest.mark.slow
def test_a_config_composes_where_mlflow_cannot_be_imported():
    """A GPU machine need not have MLflow: the sweeper's module then fails to import, its config node
    (a module of its own) does not."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['mlflow'] = None\n"
            "from forgetlab.config import compose\n"
            "print(compose(['backend.dtype=float32'], return_hydra_config=True).hydra.sweeper.max_ensemble_size)")
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "8", proc.stderr[-2000:]


def test_the_standin_refuses_host_arrays():
    device = DEVICE.zeros(3)
    with pytest.raises(TypeError, match="host array"):
        device + np.ones(3)
    with pytest.raises(TypeError, match="host array"):
        np.concatenate([device, np.ones(3)])
    assert type(device * 2.0 + DEVICE.ones(3)) is DeviceArray


def assert_close_runs(reference, other, rtol):
    assert other.error is None and len(reference.points) == len(other.points)
    for p, q in zip(reference.points, other.points):
        assert (p.samples_seen, p.updates, p.boundary) == (q.samples_seen, q.updates, q.boundary)
        np.testing.assert_allclose(q.loss, p.loss, rtol=rtol, atol=1e-13)
        np.testing.assert_allclose(q.probe_loss, p.probe_loss, rtol=rtol, atol=1e-13)
        np.testing.assert_array_equal(q.accuracy, p.accuracy)
    np.testing.assert_array_equal(reference.presented_at, other.presented_at)
    a, b = reference.records.get("update_probe").arrays(), other.records.get("update_probe").arrays()
    for key in ("updates", "correct", "presented_update"):
        np.testing.assert_array_equal(b[key], a[key], err_msg=key)
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-6)  # stored as float32
    if "step_norm" in a:
        np.testing.assert_allclose(b["step_norm"], a["step_norm"], rtol=rtol)


def final_weights(trainer):
    return {name: to_numpy(p) for name, p in trainer.network.params.items()}


@pytest.mark.slow
@pytest.mark.parametrize("learner", sorted(LEARNERS))
def test_every_learner_trains_evaluates_and_probes_on_the_device(compose_cfg, learner):
    cfgs = [compose_cfg(*SHORT, *LEARNERS[learner], *PROBED, f"seed={s}") for s in (0, 1)]
    on_host, on_device = build_ensemble_trainer(cfgs), build_ensemble_trainer(cfgs, xp=DEVICE)
    assert all(type(p) is DeviceArray for p in on_device.network.params.values())
    assert type(on_device.stages[0].x) is DeviceArray and type(on_device.evaluator.x) is DeviceArray
    for reference, other in zip(on_host.run(), on_device.run()):
        # The sigmoid is scipy's expit on NumPy and 1 / (1 + exp(-z)) elsewhere: equal to rounding.
        assert_close_runs(reference, other, rtol=1e-9)
    for name, value in final_weights(on_host).items():
        np.testing.assert_allclose(final_weights(on_device)[name], value, rtol=1e-9, atol=1e-12, err_msg=name)


def test_float32_weights_train_in_float32(compose_cfg):
    cfg = compose_cfg(*SHORT, *LEARNERS["rtrl"], "backend.dtype=float32")
    trainer = build_trainer(cfg)
    assert trainer.stages[0].x.dtype == np.float32 and trainer.algorithm.lr.dtype == np.float32
    (result,) = trainer.run()
    assert all(p.dtype == np.float32 for p in trainer.network.params.values())  # nothing promoted them
    (reference,) = build_trainer(compose_cfg(*SHORT, *LEARNERS["rtrl"])).run()
    # Close to float64 on a short run, not equal: rounding at float32's 6e-8 grows over the updates.
    np.testing.assert_allclose(result.points[-1].loss, reference.points[-1].loss, rtol=1e-3)
    assert not np.array_equal(result.points[-1].loss, reference.points[-1].loss)


def test_an_unavailable_backend_is_refused_before_any_run_with_the_reason(compose_cfg):
    if GPU:
        pytest.skip("CuPy and a GPU are available here")
    with pytest.raises(ConfigError, match=r"'backend.name' parameter must be 'numpy' on this machine \(CuPy"):
        validate(compose_cfg("backend=cupy"))
    with pytest.raises(RuntimeError, match="unavailable"):
        backend_namespace("cupy")
    assert backend_namespace("numpy") is NUMPY


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("learner", sorted(LEARNERS))
def test_cupy_float64_equals_numpy_within_1e_10(compose_cfg, learner):
    members = [[*SHORT, *LEARNERS[learner], *PROBED, f"seed={s}"] for s in (0, 1)]
    on_numpy = build_ensemble_trainer([compose_cfg(*m) for m in members])
    on_gpu = build_ensemble_trainer([compose_cfg(*m, "backend=cupy") for m in members])
    assert type(next(iter(on_gpu.network.params.values()))).__module__.startswith("cupy")
    for reference, other in zip(on_numpy.run(), on_gpu.run()):
        assert_close_runs(reference, other, rtol=1e-10)
    for name, value in final_weights(on_numpy).items():
        np.testing.assert_allclose(final_weights(on_gpu)[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
