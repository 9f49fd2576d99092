"""The sweeper's config node (``hydra/sweeper=forgetlab``), registered apart from the sweeper itself:
Hydra's plugin scan imports every module here, and this one imports nothing that may be missing, so
that a config composes (for a single run, a benchmark, a GPU machine without MLflow) even where the
sweeper's own module cannot be imported."""

from dataclasses import dataclass
from typing import Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class ResumableSweeperConf:
    _target_: str = "hydra_plugins.forgetlab_sweeper.forgetlab_sweeper.ResumableSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None
    ensemble: bool = True  # train jobs that differ only in member keys (seed, lr, ...) as ensembles
    max_ensemble_size: int = 8


ConfigStore.instance().store(group="hydra/sweeper", name="forgetlab", node=ResumableSweeperConf, provider="forgetlab")
