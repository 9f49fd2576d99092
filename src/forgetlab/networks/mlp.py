"""Multi-layer perceptron: z^(l) = W^(l) a^(l-1) + b^(l),  a^(l) = f(z^(l)),  output a^(L) = g(z^(L)).

Rows are samples: a batch X of shape (B, n_in) is propagated as Z = A W^T + b, for every member at
once: W^(l) has shape (S, n_out, n_in), so that z = W a + b reads as in the derivation member by
member, and activations are (S, B, n).

Backward pass (``backward``), for every sample of the batch at once, from the error at the output:

    delta^(L)   = dE/dz^(L)                              (networks.functions.output_delta)
    delta^(l)   = (W^(l+1)^T delta^(l+1)) * f'(z^(l))
    dE/dW^(l)   = delta^(l) a^(l-1)^T                    (per sample, or summed over the batch)
    dE/db^(l)   = delta^(l)

E is a sample's loss (``per_sample``), or the mean over the batch, whose delta^(L) is divided by B.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from forgetlab.arrays import NUMPY, dtype_of
from forgetlab.constraints import AT_LEAST_1, ListOf, Options, constrain
from forgetlab.cost_model import SECONDS_PER_UPDATE, DataSize, NetworkCost
from forgetlab.networks import functions
from forgetlab.networks.base import Network, NetworkConfig, member_inits, put


@dataclass
class MLPConfig(NetworkConfig):
    name: str = "mlp"
    activation: str = field(default="sigmoid", metadata=constrain(Options(*functions.HIDDEN_ACTIVATIONS)))
    # At least one hidden layer: without one the network would be a linear model that ignores
    # `activation` while its runs and reports call it an MLP (issue 20: `[]` was accepted silently).
    hidden_sizes: list[int] = field(
        default_factory=lambda: [64], metadata=constrain(ListOf(
            AT_LEAST_1, min_length=1, description="a non-empty list of positive ints (the hidden layers' sizes)")),
    )


@dataclass
class MLPForward:
    """Everything the backward pass needs: a[0] = x, z[l] and a[l+1] for each layer l."""

    a: list[np.ndarray]
    z: list[np.ndarray]


class MLP(Network):
    name = "mlp"
    Config = MLPConfig
    reads = "vector"
    size_key = "hidden_sizes"

    @classmethod
    def from_config(cls, cfg: MLPConfig, input_shape, n_outputs, rng, init_scale, *, xp, dtype) -> MLP:
        n_in = int(np.prod(input_shape))
        return cls([n_in, *cfg.hidden_sizes, n_outputs], activation=cfg.activation, output=cfg.output, loss=cfg.loss,
                   init_scale=init_scale, rng=rng, dtype=dtype, xp=xp)

    @classmethod
    def cost(cls, cfg: MLPConfig, data: DataSize) -> NetworkCost:
        sizes = [data.n_inputs * data.steps, *(int(s) for s in cfg.hidden_sizes), data.n_outputs]
        weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        units = sum(sizes[1:])
        return NetworkCost(
            params=weights + units,
            forward_ops=2 * weights,
            memory={"the evaluation's forward pass": 2 * data.eval_samples * units,
                    "the batch's forward pass": 4 * data.batch_size * units},
            seconds_per_sample=SECONDS_PER_UPDATE / data.batch_size,
        )

    def __init__(
        self,
        sizes: list[int],
        activation: str = "sigmoid",
        output: str = "sigmoid",
        loss: str = "mse",
        init_scale: float | Sequence[float] = 1.0,
        rng: np.random.Generator | Sequence[np.random.Generator] | None = None,
        dtype: type = np.float64,
        xp=None,
    ) -> None:
        """sizes = [n_in, hidden..., n_out]; weights ~ N(0, init_scale^2 / fan_in), biases 0.
        One member per generator in ``rng`` (a single generator: one member), each drawing its
        layers in order with its own ``init_scale`` (one for all, or one per member)."""
        inits = member_inits(rng, init_scale)
        self.sizes = list(sizes)
        self.activation, self.output, self.loss = activation, output, loss
        self.xp, self.n_members = NUMPY if xp is None else xp, len(inits)
        xp = self.xp
        layers = list(zip(sizes[:-1], sizes[1:]))
        drawn = [[(scale / np.sqrt(n_in) * r.standard_normal((n_out, n_in))).astype(dtype) for n_in, n_out in layers]
                 for r, scale in inits]
        self.W = [xp.asarray(np.stack([member[l] for member in drawn])) for l in range(len(layers))]
        self.b = [xp.zeros((self.n_members, n_out), dtype=dtype_of(xp, dtype)) for _, n_out in layers]

    @property
    def n_outputs(self) -> int:
        return self.sizes[-1]

    @cached_property
    def params(self) -> dict[str, np.ndarray]:
        """Parameters by name (W0, b0, W1, b1, ...); the arrays are the live ones, updated in place
        (never rebound, so the dict is built once: every update reads it)."""
        named = {}
        for l, (W, b) in enumerate(zip(self.W, self.b)):
            named[f"W{l}"], named[f"b{l}"] = W, b
        return named

    def members(self, selected: slice) -> MLP:
        view = copy.copy(self)
        view.__dict__.pop("params", None)  # the cached dict of the whole ensemble
        view.W, view.b = [W[selected] for W in self.W], [b[selected] for b in self.b]
        view.n_members = view.W[0].shape[0]
        return view

    @property
    def weight_names(self) -> list[str]:
        """Parameters that carry the L2 penalty (weights, not biases)."""
        return [f"W{l}" for l in range(len(self.W))]

    def forward(self, x: np.ndarray, mask: np.ndarray) -> MLPForward:
        """x (S, B, n_in) or (B, n_in) for every member; mask broadcast against (S, B, n_out)."""
        xp = self.xp
        a, zs = [x], []
        last = len(self.W) - 1
        for l in range(len(self.W)):
            z = self._pre_activation(l, a[-1])
            zs.append(z)
            a.append(functions.output(self.output, z, mask) if l == last else functions.activation(self.activation, z))
        return MLPForward(a=a, z=zs)

    def _pre_activation(self, l: int, a: np.ndarray) -> np.ndarray:
        # One (B, n_in) @ (n_in, n_out) product per member: the very BLAS call a lone network makes.
        z = self.xp.matmul(a, self.W[l].mT)
        z += self.b[l][:, None, :]
        return z

    def predict(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Network output a^(L) for a batch (B, n_in) or (S, B, n_in) -> (S, B, n_out); the forward
        pass without keeping what only the backward pass needs (evaluations run it on large batches)."""
        a, last = x, len(self.W) - 1
        for l in range(len(self.W)):
            z = self._pre_activation(l, a)
            a = functions.output(self.output, z, mask) if l == last else functions.activation(self.activation, z)
        return a

    def data_loss(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Mean over the batch of the loss without the L2 term, straight from the forward pass: (S,)."""
        return self.xp.mean(self.sample_loss(self.predict(x, mask), y, mask), axis=-1)

    def backward(self, fwd: MLPForward, delta: np.ndarray, per_sample: bool = False,
                 out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """dE/dtheta by parameter name from the forward pass ``fwd`` of a batch of B samples and
        delta = dE/dz^(L) (S, B, n_out) of each: (S, B, *shape), one gradient per sample
        (``per_sample``), or (S, *shape), their sum over the batch; written into ``out`` if given."""
        xp = self.xp
        grads: dict[str, np.ndarray] = {}
        for l in range(len(self.W) - 1, -1, -1):
            if per_sample:
                put(grads, f"W{l}", delta[..., :, None] * fwd.a[l][..., None, :], out)
                put(grads, f"b{l}", delta, out)
            else:
                # One sample: the outer product, elementwise (a GEMM with an inner dimension of 1 computes
                # the same products, one BLAS call per member with its packing overhead).
                dE_dW = delta.mT * fwd.a[l] if delta.shape[-2] == 1 else xp.matmul(delta.mT, fwd.a[l])
                put(grads, f"W{l}", dE_dW, out)
                put(grads, f"b{l}", xp.sum(delta, axis=-2), out)
            if l > 0:
                delta = xp.matmul(delta, self.W[l]) * functions.activation_derivative(self.activation, fwd.z[l - 1], fwd.a[l])
        return grads

    def data_gradient(self, x, y, mask, per_sample=False, out=None):
        """x (B, n_in) or (S, B, n_in); y and mask (B, n_out) or (S, B, n_out). See ``Network``."""
        fwd = self.forward(x, mask)
        a_out = fwd.a[-1]
        loss = self.sample_loss(a_out, y, mask)  # (S, B)
        delta = self.output_delta(a_out, y, mask)
        if per_sample:
            return loss, self.backward(fwd, delta, per_sample=True, out=out)
        batch = x.shape[-2]
        return self.xp.sum(loss, axis=-1) / batch, self.backward(fwd, delta / batch, out=out)

    def per_sample_losses(self, x, y, mask):
        """x (B, n_in) or (S, B, n_in); y and mask (B, n_out) or (S, B, n_out). See ``Network``."""
        a_out = self.predict(x, mask)
        correct = self.predicted_unit(a_out, mask) == self.xp.argmax(y, axis=-1)
        return self.sample_loss(a_out, y, mask), correct
