"""Values chosen by a selection sweep, read into a config by the resolver ``forgetlab.selected``.

A selection table is a CSV file written by ``analysis/select_lr.py``. Its columns whose names are
dotted config keys (``task_sequence.scenario``, ``algorithm.h``, ...) say which configs a row applies
to; the other columns (``lr``, ``selected_by``, ...) are the values it gives them. A study preset
reads a value with

    algorithm:
      lr: ${forgetlab.selected:conf/learner/credit_assignment/lr.csv,lr}

(the path relative to ``paths.root_dir``): the one row whose every key column equals the composed
config's value at that key (as MLflow records it: ``str``, lists as JSON; an empty cell matches a key
that the config does not have) gives the value. None or several matching rows is a ConfigError that
names the config's values, so a study never runs with a learning rate that nobody selected.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from forgetlab.constraints import ConfigError

RESOLVER = "forgetlab.selected"
MISSING_CELL = ""


def recorded_value(value: Any) -> str:
    """A config value as MLflow records it (``tracking.mlflow_run.flatten``): ``str``, lists as JSON."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    return json.dumps(value) if isinstance(value, list) else str(value)


def read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(key columns, rows) of a selection table."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
        columns = list(rows[0]) if rows else []
    return [c for c in columns if "." in c], rows


def matching_rows(cfg: DictConfig, keys: list[str], rows: list[dict[str, str]]) -> list[dict[str, str]]:
    def value(key: str) -> str:
        found = OmegaConf.select(cfg, key, default=None)
        return MISSING_CELL if found is None else recorded_value(found)

    wanted = {key: value(key) for key in keys}
    return [row for row in rows if all(row[key] == wanted[key] for key in keys)]


def selected(table: str, column: str, *, _root_: DictConfig) -> Any:
    """The resolver: ``column`` of the row of ``table`` (relative to ``paths.root_dir``) that applies
    to the config being resolved, typed as YAML reads it (0.1 a float, 20261127-... a string)."""
    path = Path(_root_.paths.root_dir) / table
    if not path.exists():
        raise ConfigError(f"The selection table {table} does not exist (under {_root_.paths.root_dir}).")
    keys, rows = read_table(path)
    if rows and column not in rows[0]:
        raise ConfigError(f"The selection table {table} has no column {column!r}; its columns: {', '.join(rows[0])}.")
    found = matching_rows(_root_, keys, rows)
    if len(found) != 1:
        at = ", ".join(f"{k}={OmegaConf.select(_root_, k, default=None)!r}" for k in keys) or "any config"
        what = "no row" if not found else f"{len(found)} rows"
        raise ConfigError(
            f"The selection table {table} has {what} for {at} ({len(rows)} rows in all). "
            "Run the selection sweep and `python analysis/select_lr.py` (docs/credit_assignment.md), "
            "or set the value on the command line."
        )
    return yaml.safe_load(found[0][column])


def register_resolvers() -> None:
    OmegaConf.register_new_resolver(RESOLVER, selected, replace=True)
