"""Learning algorithms, one file each, behind the interface in ``base``."""

from forgetlab.algorithms.backprop import Backprop
from forgetlab.algorithms.base import LearningAlgorithm

# name -> (class, network names it can train)
ALGORITHMS = {
    "backprop": (Backprop, ("mlp",)),
}


def build_algorithm(cfg, network) -> LearningAlgorithm:
    cls, _ = ALGORITHMS[cfg.name]
    return cls(network, lr=cfg.lr, l2=cfg.l2)


__all__ = ["ALGORITHMS", "Backprop", "LearningAlgorithm", "build_algorithm"]
