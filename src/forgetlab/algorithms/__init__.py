"""Learning algorithms, one file each, behind the interface in ``base``."""

from forgetlab.algorithms.backprop import Backprop
from forgetlab.algorithms.base import LearningAlgorithm
from forgetlab.algorithms.bptt_epochwise import BPTTEpochwise
from forgetlab.algorithms.bptt_truncated import BPTTTruncated
from forgetlab.algorithms.rtrl import RTRL

# name -> (class, network names it can train)
ALGORITHMS = {
    "backprop": (Backprop, ("mlp",)),
    "bptt_epochwise": (BPTTEpochwise, ("rnn",)),
    "bptt_truncated": (BPTTTruncated, ("rnn",)),
    "rtrl": (RTRL, ("rnn",)),
}

# name -> the algorithm's own config keys, passed to its constructor besides lr and l2
ALGORITHM_KEYS = {
    "bptt_truncated": ("h", "h_prime", "reset"),
    "rtrl": ("update_every", "reset", "implementation"),
}

# Algorithms that learn from one sequence at a time (trainer.batch_size must be 1).
RECURRENT = ("bptt_epochwise", "bptt_truncated", "rtrl")


def build_algorithm(cfg, network, lr=None, l2=None) -> LearningAlgorithm:
    """The algorithm named by ``cfg.name`` over ``network``; ``lr`` and ``l2`` (one per member of the
    network) replace ``cfg.lr`` and ``cfg.l2`` when given."""
    cls, _ = ALGORITHMS[cfg.name]
    own = {key: cfg[key] for key in ALGORITHM_KEYS.get(cfg.name, ())}
    return cls(network, lr=cfg.lr if lr is None else lr, l2=cfg.l2 if l2 is None else l2, **own)


__all__ = ["ALGORITHMS", "ALGORITHM_KEYS", "RECURRENT", "BPTTEpochwise", "BPTTTruncated", "Backprop",
           "LearningAlgorithm", "RTRL", "build_algorithm"]
