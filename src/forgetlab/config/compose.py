"""Compose the project's real ``conf/`` tree from overrides, as ``experiments/train.py`` would: the one
way the gradient audit, the tests and the benchmarks get a config outside a Hydra application."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from forgetlab.config.schema import register_configs

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONF_DIR = PROJECT_ROOT / "conf"


def compose(
    overrides: Sequence[str] = (),
    *,
    return_hydra_config: bool = False,
    multirun: bool = False,
    config_dir: str | Path = CONF_DIR,
    config_name: str = "config",
) -> DictConfig:
    """The config composed from ``overrides`` (Hydra's override syntax), without the ``hydra`` node
    unless ``return_hydra_config``. ``multirun`` composes the primary config of a sweep, so that
    sweep overrides such as ``seed=0,1`` are accepted. Composition errors propagate as Hydra raises them.

    Resets Hydra's global state before and after: not for use inside a running Hydra application."""
    # conf/paths/default.yaml resolves the project root from this variable (set by experiments/train.py).
    os.environ.setdefault("FORGETLAB_ROOT", str(PROJECT_ROOT))
    register_configs(conf_dir=config_dir)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            mode = RunMode.MULTIRUN if multirun else RunMode.RUN
            cfg = GlobalHydra.instance().hydra.compose_config(config_name, list(overrides), run_mode=mode)
    finally:
        GlobalHydra.instance().clear()
    if not return_hydra_config:
        with open_dict(cfg):
            del cfg["hydra"]
    return cfg
