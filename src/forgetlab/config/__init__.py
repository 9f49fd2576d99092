"""forgetlab's configuration: the schemas (``schema.py``) with each field's constraints
(``constraints.py``), validation of a composed config (``validation.py``), the command line before
Hydra sees it (``command_line.py``) and the one way to compose ``conf/`` outside Hydra (``compose.py``)."""

from forgetlab.config.command_line import check_command_line, check_targets, explain_composition_error
from forgetlab.config.compose import compose
from forgetlab.config.schema import register_configs
from forgetlab.config.validation import ConfigError, validate

__all__ = [
    "ConfigError",
    "check_command_line",
    "check_targets",
    "compose",
    "explain_composition_error",
    "register_configs",
    "validate",
]
