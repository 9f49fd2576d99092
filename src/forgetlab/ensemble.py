"""Which configs can train together as the members of one ensemble (``networks.base``).

Members share everything that fixes the shapes and the schedule of the computation (network
architecture, algorithm and its keys, task sequence, evaluation, training loop) and may differ only
in ``MEMBER_KEYS``: the seed (initial weights and sample order), the learning rate, the L2
coefficient and the initial weight scale. Each member's numbers are the same as when its config
is trained alone.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from forgetlab.tracking.mlflow_run import flat_config

# Dotted config keys in which the members of one ensemble may differ.
MEMBER_KEYS = ("seed", "algorithm.lr", "algorithm.l2", "network.init_scale", "network.init_perturbation")

# Top-level nodes that are not part of a run's config (Hydra's own).
_NOT_CONFIG = ("hydra",)


def _flat(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config (Hydra's node left out) as dotted keys -> values."""
    return flat_config(OmegaConf.masked_copy(cfg, [k for k in cfg if k not in _NOT_CONFIG]))


def ensemble_signature(cfg: DictConfig) -> str:
    """A hash of everything but ``MEMBER_KEYS``: configs with equal signatures can share an ensemble."""
    shared = {k: v for k, v in _flat(cfg).items() if k not in MEMBER_KEYS}
    return hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:16]


def incompatible_key(cfgs: list[DictConfig]) -> tuple[str, Any, Any] | None:
    """(key, value in the first config, value in another) for the first key outside ``MEMBER_KEYS``
    in which two of ``cfgs`` differ; None when they can all share an ensemble."""
    flats = [_flat(c) for c in cfgs]
    first = flats[0]
    for other in flats[1:]:
        for key in sorted(first.keys() | other.keys()):
            if key not in MEMBER_KEYS and first.get(key) != other.get(key):
                return key, first.get(key), other.get(key)
    return None


def member_compatible(cfgs: list[DictConfig]) -> bool:
    """Whether ``cfgs`` differ in ``MEMBER_KEYS`` only, so that they can train as one ensemble."""
    return incompatible_key(cfgs) is None
