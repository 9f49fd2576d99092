"""Networks in NumPy, one class a file, each registered under its name (``networks.base.NETWORKS``),
each with its one hand-derived backward pass, which the learning algorithms and the probes call."""

from collections.abc import Sequence

import numpy as np

from forgetlab.networks.base import NETWORKS, Network, NetworkConfig
from forgetlab.networks.mlp import MLP, MLPConfig
from forgetlab.networks.rnn import RNN, RNNConfig
from forgetlab.registry import import_submodules

import_submodules(__name__, __path__)  # a network in a new file of this package registers itself


def build_network(cfg: NetworkConfig, input_shape: tuple[int, ...], n_outputs: int,
                  rng: np.random.Generator | Sequence[np.random.Generator], init_scale=None, *,
                  xp=None, dtype: str = "float64") -> Network:
    """The network ``cfg.name`` names, for inputs of ``input_shape`` (per sample: (n_in,) vectors for
    the MLP, (T, n_in) sequences for the RNN) and ``n_outputs`` units: one member per generator in
    ``rng`` (one generator: one member), with ``init_scale`` (one per member) in place of
    ``cfg.init_scale`` when given. Its parameters are arrays of ``xp`` (NumPy by default) of ``dtype``;
    the initial weights are drawn on the host in float64 whatever the backend, so every backend starts alike."""
    rngs = [rng] if isinstance(rng, np.random.Generator) else list(rng)
    scales = cfg.init_scale if init_scale is None else init_scale
    return NETWORKS[cfg.name].from_config(cfg, input_shape, n_outputs, rngs, scales, xp=xp, dtype=np.dtype(dtype))


__all__ = ["MLP", "MLPConfig", "NETWORKS", "Network", "NetworkConfig", "RNN", "RNNConfig", "build_network"]
