"""Compose the project's real ``conf/`` tree from overrides, as ``experiments/train.py`` would: the one
way the gradient audit, the tests and the benchmarks get a config outside a Hydra application."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Sequence

from hydra import initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from forgetlab.config.schema import register_configs, stored_key

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

    Resets Hydra's global state before and after: not for use inside a running Hydra application.
    Without the ``hydra`` node, a config that differs from an earlier one of this process only in
    values (``seed=3``, not ``learner=…``) is that one's merged defaults with the values applied, as
    the sweeper composes its jobs (``_Templates``): the same config Hydra gives, for a fraction of its
    cost (``benchmarks/compose.py``)."""
    # conf/paths/default.yaml resolves the project root from this variable (set by experiments/train.py).
    os.environ.setdefault("FORGETLAB_ROOT", str(PROJECT_ROOT))
    register_configs(conf_dir=config_dir)
    if return_hydra_config or multirun:
        return _compose_with_hydra(list(overrides), config_dir, config_name, multirun, return_hydra_config)
    return _TEMPLATES.compose(list(overrides), Path(config_dir), config_name)


def _compose_with_hydra(overrides: list[str], config_dir: str | Path, config_name: str, multirun: bool,
                        return_hydra_config: bool) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            mode = RunMode.MULTIRUN if multirun else RunMode.RUN
            cfg = GlobalHydra.instance().hydra.compose_config(config_name, overrides, run_mode=mode)
    finally:
        GlobalHydra.instance().clear()
    if not return_hydra_config:
        with open_dict(cfg):
            del cfg["hydra"]
    return cfg


class _Templates:
    """Hydra builds a config in two steps: it merges the configs of the defaults list, which only the
    overrides of config groups and ``+``/``~`` overrides change, then applies the value overrides in
    order (``_apply_overrides_to_config``). The first step is ~90 % of the cost; its result is kept per
    conf/ tree (the files' names, sizes and times), the parts registered, and the structural overrides.
    ``tests/test_compose.py`` checks the result equals Hydra's own composition."""

    def __init__(self) -> None:
        self.templates: dict[tuple, DictConfig] = {}
        self.loaders: dict[str, ConfigLoaderImpl] = {}
        self.parser = OverridesParser.create()

    def _loader(self, config_dir: Path) -> ConfigLoaderImpl:
        """A config loader of ``config_dir``: what it knows of config groups decides which overrides
        are structural (its repository reads the ConfigStore as it is at each question)."""
        key = str(config_dir.resolve())
        if key not in self.loaders:
            GlobalHydra.instance().clear()
            try:
                with initialize_config_dir(config_dir=key, version_base="1.3"):
                    self.loaders[key] = GlobalHydra.instance().hydra.config_loader
            finally:
                GlobalHydra.instance().clear()
        return self.loaders[key]

    def compose(self, overrides: list[str], config_dir: Path, config_name: str) -> DictConfig:
        loader = self._loader(config_dir)
        parsed = self.parser.parse_overrides(overrides)
        shapes = [shapes_defaults(o, loader.repository) for o in parsed]
        structural = [o.input_line for o, shaping in zip(parsed, shapes) if shaping]
        key = (_tree_state(config_dir), stored_key(config_dir), config_name, tuple(structural))
        template = self.templates.get(key)
        if template is None:
            template = _compose_with_hydra(structural, config_dir, config_name, False, False)
            self.templates = {k: v for k, v in self.templates.items() if k[:2] == key[:2]}  # drop stale trees
            self.templates[key] = template
        return with_values(template, [o for o, shaping in zip(parsed, shapes) if not shaping])


def shapes_defaults(override: Override, repository) -> bool:
    """Whether Hydra reads this override while building the defaults list (so that it keys a template):
    a config group's choice, ``+``/``~``, a package, a ``hydra`` key. ``repository``: a config loader's."""
    if override.is_hydra_override() or override.package is not None or override.is_add() \
            or override.is_force_add() or override.is_delete():
        return True
    return repository is None or repository.group_exists(override.key_or_group)


def with_values(template: DictConfig, value_overrides: list[Override]) -> DictConfig:
    """A copy of ``template`` with the value overrides applied in order, as Hydra applies them."""
    cfg = copy.deepcopy(template)
    ConfigLoaderImpl._apply_overrides_to_config(value_overrides, cfg)
    return cfg


def _tree_state(config_dir: Path) -> tuple:
    """Every file of a conf/ tree with its size and modification time: a template of a tree that
    changed since is not used."""
    state = []
    for path in sorted(config_dir.rglob("*")):
        stat = path.stat()
        state.append((str(path), stat.st_size, stat.st_mtime_ns))
    return str(config_dir.resolve()), tuple(state)


_TEMPLATES = _Templates()
