"""Continual-learning strategies, one file each, behind the interface in ``base``; each registered under
its name (``base.STRATEGIES``) by its class declaration. ``fine_tuning`` (the default) does nothing."""

from collections.abc import Sequence

import numpy as np

from forgetlab.networks.base import Network
from forgetlab.registry import import_submodules
from forgetlab.strategies.base import RECORD, STRATEGIES, Strategy, StrategyConfig
from forgetlab.strategies.fine_tuning import FineTuning  # the default first, in help and error messages

import_submodules(__name__, __path__)  # a strategy in a new file of this package registers itself


def build_strategy(members: StrategyConfig | Sequence[StrategyConfig], network: Network,
                   rngs: Sequence[np.random.Generator]) -> Strategy:
    """The strategy that the config (or the configs of an ensemble's members, one per member) names,
    over ``network``; ``rngs[s]``: member s's own random stream."""
    members = [members] if isinstance(members, StrategyConfig) else list(members)
    return STRATEGIES[members[0].name].from_config(members, network, rngs)


__all__ = ["FineTuning", "RECORD", "STRATEGIES", "Strategy", "StrategyConfig", "build_strategy"]
