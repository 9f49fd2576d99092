"""forgetlab's configuration: the run's schema (``schema.py``; the parts declare their own configs,
``forgetlab.registry``), validation of a composed config and its one conversion into typed objects
(``validation.py``), the command line before Hydra sees it (``command_line.py``) and the one way to
compose ``conf/`` outside Hydra (``compose.py``)."""

from forgetlab.config.command_line import check_command_line, check_targets, explain_composition_error
from forgetlab.config.compose import compose
from forgetlab.config.schema import Config, register_configs
from forgetlab.config.validation import as_config, config_from_container, config_yaml, typed, validate
from forgetlab.constraints import ConfigError

__all__ = [
    "Config",
    "as_config",
    "ConfigError",
    "check_command_line",
    "check_targets",
    "compose",
    "config_from_container",
    "config_yaml",
    "explain_composition_error",
    "register_configs",
    "typed",
    "validate",
]
