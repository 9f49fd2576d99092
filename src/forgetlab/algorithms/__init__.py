"""Learning algorithms, one file each, behind the interface in ``base``; each registered under its
name (``base.ALGORITHMS``) by its class declaration."""

from collections.abc import Sequence

from forgetlab.algorithms.backprop import Backprop
from forgetlab.algorithms.base import ALGORITHMS, AlgorithmConfig, LearningAlgorithm
from forgetlab.algorithms.bptt_epochwise import BPTTEpochwise
from forgetlab.algorithms.bptt_truncated import BPTTTruncated, BPTTTruncatedConfig
from forgetlab.algorithms.rtrl import RTRL, RTRLConfig
from forgetlab.networks.base import Network
from forgetlab.registry import import_submodules

import_submodules(__name__, __path__)  # an algorithm in a new file of this package registers itself


def build_algorithm(members: AlgorithmConfig | Sequence[AlgorithmConfig], network: Network) -> LearningAlgorithm:
    """The algorithm that the config (or the configs of an ensemble's members, one per member) names, over ``network``."""
    members = [members] if isinstance(members, AlgorithmConfig) else list(members)
    return ALGORITHMS[members[0].name].from_config(members, network)


__all__ = ["ALGORITHMS", "AlgorithmConfig", "BPTTEpochwise", "BPTTTruncated", "BPTTTruncatedConfig", "Backprop",
           "LearningAlgorithm", "RTRL", "RTRLConfig", "build_algorithm"]
