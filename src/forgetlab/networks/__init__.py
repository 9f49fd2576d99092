"""Networks in NumPy; every gradient is hand-derived in the learning algorithm that uses it."""

import numpy as np

from forgetlab.networks.mlp import MLP

NETWORKS = {"mlp": MLP}


def build_network(cfg, input_shape: tuple[int, ...], n_outputs: int, rng: np.random.Generator):
    """Network named by ``cfg.name`` for inputs of ``input_shape`` (per sample) and ``n_outputs`` units."""
    if cfg.name == "mlp":
        n_in = int(np.prod(input_shape))
        return MLP(
            [n_in, *cfg.hidden_sizes, n_outputs],
            activation=cfg.activation,
            output=cfg.output,
            loss=cfg.loss,
            init_scale=cfg.init_scale,
            rng=rng,
        )
    raise ValueError(f"unknown network {cfg.name!r}; allowed: {sorted(NETWORKS)}")


__all__ = ["MLP", "NETWORKS", "build_network"]
