"""Networks in NumPy, each with its one hand-derived backward pass, which the learning algorithms and the
probes call."""

from collections.abc import Sequence

import numpy as np

from forgetlab.networks.base import Network
from forgetlab.networks.mlp import MLP
from forgetlab.networks.rnn import RNN

NETWORKS = ("mlp", "rnn")


def build_network(cfg, input_shape: tuple[int, ...], n_outputs: int,
                  rng: np.random.Generator | Sequence[np.random.Generator], init_scale=None, *,
                  xp=None, dtype: str = "float64") -> Network:
    """Network named by ``cfg.name`` for inputs of ``input_shape`` (per sample: (n_in,) vectors for the
    MLP, (T, n_in) sequences for the RNN) and ``n_outputs`` units: one member per generator in ``rng``
    (one generator: one member), with ``init_scale`` (one per member) in place of ``cfg.init_scale``
    when given. Its parameters are arrays of ``xp`` (NumPy by default) of ``dtype``; the initial
    weights are drawn on the host in float64 whatever the backend, so every backend starts alike."""
    dtype = np.dtype(dtype)
    init_scale = cfg.init_scale if init_scale is None else init_scale
    if cfg.name == "mlp":
        n_in = int(np.prod(input_shape))
        return MLP(
            [n_in, *cfg.hidden_sizes, n_outputs],
            activation=cfg.activation,
            output=cfg.output,
            loss=cfg.loss,
            init_scale=init_scale,
            rng=rng,
            dtype=dtype,
            xp=xp,
        )
    if cfg.name == "rnn":
        if len(input_shape) != 2:
            raise ValueError(f"the RNN reads sequences of shape (T, n_in); got samples of shape {input_shape}")
        return RNN(
            input_shape[-1],
            cfg.hidden_size,
            n_outputs,
            activation=cfg.activation,
            output=cfg.output,
            loss=cfg.loss,
            loss_at=cfg.loss_at,
            loss_last_steps=cfg.loss_last_steps,
            init_scale=init_scale,
            rng=rng,
            dtype=dtype,
            xp=xp,
        )
    raise ValueError(f"unknown network {cfg.name!r}; allowed: {sorted(NETWORKS)}")


__all__ = ["MLP", "NETWORKS", "RNN", "Network", "build_network"]
