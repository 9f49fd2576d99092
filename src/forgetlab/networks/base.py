"""What every network offers the trainer and the learning algorithms: its parameters, a forward
pass, the loss and prediction at its output (the formulas are in ``networks.functions``), and the
gradient of its data loss, of a batch or of each sample, from its one backward pass.

A network is an ensemble of S members (S >= 1) of the same architecture: every parameter is one
array with a leading member axis, (S, *shape), and every computation runs on all members at once,
as one array operation per step of the math. A lone network is the case S = 1 of the same code.
Members differ in their initial weights (their own random generator) and ``init_scale``.
Inputs either carry the member axis, (S, B, ...) (each member its own samples), or not,
(B, ...) (the same samples for every member); outputs always do: (S, B, ...).

A network class is also its config group's option (``network=<name>``, ``forgetlab.registry``): it
declares its name, its config (``NetworkConfig`` or a subclass, next to it), what form of input it
reads, how to build it from its config, and what it costs.

Each network writes its backward pass once, as ``backward``, with the equations in its module's
docstring; its arguments are what its forward pass keeps, so their form is the network's own. A
switch ``per_sample`` says whether the weight gradients keep the sample axis, (S, B, *shape), or
sum over it, (S, *shape). Everything else (``data_gradient``, ``per_sample_gradients``, the
learning algorithms) calls it.

Flat layout (``flatten``): the parameters of one member in the order of ``params``, each raveled
in C order; ``parameter_count`` entries.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from forgetlab.constraints import AT_LEAST_0, POSITIVE, OneOfNames, Options, constrain
from forgetlab.cost_model import DataSize, NetworkCost
from forgetlab.networks import functions
from forgetlab.registry import Registry

NETWORKS: Registry[type[Network]] = Registry("network")


@dataclass
class NetworkConfig:
    """What every network's config has; a network with keys of its own extends it next to its class."""

    name: str = field(default="mlp", metadata=constrain(OneOfNames(NETWORKS.names)))
    activation: str = "sigmoid"  # each network declares the activations it allows on its own config
    output: str = field(default="sigmoid", metadata=constrain(Options(*functions.OUTPUTS)))
    loss: str = field(default="mse", metadata=constrain(Options(*functions.LOSSES)))
    init_scale: float = field(default=1.0, metadata=constrain(POSITIVE, member=True))
    # SD of Gaussian noise added to every parameter after initialisation, from a stream of its own (the
    # same run from nearby weights; the first credit-assignment study's noise floor used 1e-12, which
    # left many runs bit-identical to their twin).
    init_perturbation: float = field(default=0.0, metadata=constrain(AT_LEAST_0, member=True))

    def check(self, run) -> None:
        """Raise ConfigError for a rule that spans this config's fields (or ``run``'s other groups)."""


def member_inits(rng: np.random.Generator | Sequence[np.random.Generator] | None,
                 init_scale: float | Sequence[float]) -> list[tuple[np.random.Generator, float]]:
    """(generator, init_scale) of each member: ``rng`` is one generator (one member) or one per
    member (None: one member seeded 0); ``init_scale`` one value for every member or one per member."""
    if rng is None:
        rng = np.random.default_rng(0)
    rngs = [rng] if isinstance(rng, np.random.Generator) else list(rng)
    scales = [float(init_scale)] * len(rngs) if np.ndim(init_scale) == 0 else [float(s) for s in init_scale]
    if len(scales) != len(rngs):
        raise ValueError(f"one init_scale per member: got {len(scales)} values for {len(rngs)} members")
    return list(zip(rngs, scales))


def put(grads: dict[str, np.ndarray], name: str, value: np.ndarray, out: dict[str, np.ndarray] | None) -> None:
    """grads[name] = value; with ``out``, written into out[name] (a view of a caller's flat matrix),
    whose view becomes the entry: per-sample gradients are large, and a temporary that dies at once
    costs less than a second copy of all of them."""
    if out is not None:
        out[name][...] = value
        value = out[name]
    grads[name] = value


class Network(ABC):
    """A network with output function ``output`` and loss ``loss`` (names from ``functions``)."""

    # --- the declaration (``forgetlab.registry``): a subclass that sets ``name`` is registered ---
    name: ClassVar[str]
    Config: ClassVar[type[NetworkConfig]] = NetworkConfig
    reads: ClassVar[str]  # the form of a sample it reads: "vector" or "sequence" (task_sequence.input)
    size_key: ClassVar[str]  # its config key that sets its size (named when a run would not fit in memory)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            NETWORKS.add(cls.name, cls)

    @classmethod
    @abstractmethod
    def from_config(cls, cfg: NetworkConfig, input_shape: tuple[int, ...], n_outputs: int,
                    rng: Sequence[np.random.Generator], init_scale: Sequence[float], *, xp, dtype) -> Network:
        """The network of ``cfg`` for samples of ``input_shape`` and ``n_outputs`` output units: one
        member per generator in ``rng``, each with its ``init_scale``."""

    @classmethod
    @abstractmethod
    def cost(cls, cfg: NetworkConfig, data: DataSize) -> NetworkCost:
        """Its size, the operations of one sample's forward pass, and what its evaluations hold."""

    output: str
    loss: str
    xp: object  # the array namespace of the parameters (forgetlab.arrays)
    n_members: int  # S

    @property
    @abstractmethod
    def params(self) -> dict[str, np.ndarray]:
        """Parameters by name, each (S, *shape); the live arrays, updated in place by the learning
        algorithms (never rebound)."""

    @abstractmethod
    def members(self, selected: slice) -> Network:
        """The ``selected`` members as a network of their own, whose parameters are views of theirs
        here (an update of either is an update of both)."""

    @property
    @abstractmethod
    def weight_names(self) -> list[str]:
        """Parameters that carry the L2 penalty (weights, not biases)."""

    @abstractmethod
    def predict(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Network output for a batch of samples -> (S, B, n_out)."""

    @abstractmethod
    def data_loss(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Mean over the batch of the loss without the L2 term, per member: (S,)."""

    @abstractmethod
    def data_gradient(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray, per_sample: bool = False,
                      out: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(loss, dE/dtheta by parameter name) of the data loss E (no L2 term), by the backward pass:
        of the mean over the batch, loss (S,) and each gradient (S, *shape); or, ``per_sample``, of each
        sample's own loss, loss (S, B) and each gradient (S, B, *shape). ``out``: arrays by parameter
        name to write the gradients into (new ones when None)."""

    @abstractmethod
    def per_sample_losses(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(loss (S, B), correct (S, B) bool) from a forward pass only: each sample's data loss (what
        ``data_gradient`` differentiates), and whether its prediction is its target's class."""

    def per_sample_gradients(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """dE_p/dtheta of each sample's data loss, flattened: (S, B, n_params), row p of member s
        the gradient of sample p, so that the first-order loss change of every sample under an update
        g is one product (``forgetlab.metrics.predicted_loss_change``)."""
        xp, S, B = self.xp, self.n_members, y.shape[-2]
        G = xp.empty((S, B, self.parameter_count), dtype=next(iter(self.params.values())).dtype)
        blocks, start = {}, 0  # the (S, B, *shape) view of G of each parameter
        for name, p in self.params.items():
            size = math.prod(p.shape[1:])
            blocks[name] = xp.reshape(G[..., start : start + size], (S, B, *p.shape[1:]), copy=False)
            start += size
        self.data_gradient(x, y, mask, per_sample=True, out=blocks)
        return G

    @property
    def parameter_count(self) -> int:
        """Parameters of one member."""
        return sum(math.prod(p.shape[1:]) for p in self.params.values())

    def flatten(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """Values by parameter name (a gradient or an update (S, *shape), per-sample gradients
        (S, B, *shape), or ``params`` itself) as flat vectors in the flat layout: (S, n_params) or
        (S, B, n_params)."""
        missing = [name for name in self.params if name not in values]
        if missing:
            raise KeyError(f"no entry for the parameters {missing}; flatten needs one per entry of params")
        xp = self.xp
        name, p = next(iter(self.params.items()))
        lead = values[name].shape[: values[name].ndim - (p.ndim - 1)]  # (S,) or (S, B)
        return xp.concat([xp.reshape(xp.asarray(values[name]), (*lead, -1)) for name in self.params], axis=-1)

    def __deepcopy__(self, memo: dict) -> Network:
        """A copy with its own parameters that computes with the same array namespace (a namespace
        holds modules, which cannot be copied, and is shared by every network anyway)."""
        memo[id(self.xp)] = self.xp
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            setattr(clone, key, copy.deepcopy(value, memo))
        return clone

    def perturb(self, scale: float, rng: np.random.Generator) -> None:
        """Add scale * N(0, 1) noise to every parameter, in place, parameter by parameter in name order."""
        for name in sorted(self.params):
            p = self.params[name]
            p += scale * rng.standard_normal(p.shape)

    def sample_loss(self, a: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Loss of each output a (..., n_out) against its target y, masked units excluded: shape (...)."""
        return functions.loss(self.output, self.loss, a, y, mask)

    def output_delta(self, a: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """delta = dE/dz at the output pre-activation z for the output a = g(z): shape of a."""
        return functions.output_delta(self.output, self.loss, a, y, mask)

    def predicted_unit(self, a: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The unit each output a (..., n_out) predicts: its largest unmasked unit, shape (...)."""
        return functions.masked_argmax(a, mask)
