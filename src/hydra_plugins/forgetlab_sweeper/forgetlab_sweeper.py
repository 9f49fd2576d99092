"""Hydra finds sweepers only in the ``hydra_plugins`` namespace: this registers forgetlab's as
``hydra/sweeper=forgetlab``. The behaviour lives in ``forgetlab.tracking.sweep``."""

from dataclasses import dataclass
from typing import Dict, Optional

from hydra.core.config_store import ConfigStore

from forgetlab.tracking.sweep import ResumableSweeper


class ForgetlabSweeper(ResumableSweeper):
    pass


@dataclass
class ForgetlabSweeperConf:
    _target_: str = "hydra_plugins.forgetlab_sweeper.forgetlab_sweeper.ForgetlabSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="forgetlab", node=ForgetlabSweeperConf, provider="forgetlab")
