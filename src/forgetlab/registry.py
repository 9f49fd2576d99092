"""The parts a config chooses by name (``network=rnn``, ``algorithm=rtrl``, ``task_sequence=split_mnist``,
``strategy=ewc``): each is one declaration, next to its code, that the rest of forgetlab reads.

A part declares its option name, its config (a dataclass whose fields carry their constraints,
``forgetlab.constraints``) and what the other layers need to know of it (which networks an algorithm
trains, its cost, its label in reports, ...). Defining the class (or decorating the builder) adds it
to its group's ``Registry``; the config schema, validation, the cost guard, ``--help``, ensembles and
the reports read the registries, never a list of names.

Where parts come from: the modules of forgetlab's own packages (each package imports all of its
modules, so a new file there is found), and the modules named in the environment variable
``FORGETLAB_EXTENSIONS`` (comma-separated, importable names), imported by ``load_extensions`` before a
config is composed and again, lazily, in any process that looks up a name it does not know (a sweep's
worker). docs/extending.md shows each kind of part.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from typing import Generic, Iterator, TypeVar

EXTENSIONS_ENV = "FORGETLAB_EXTENSIONS"

T = TypeVar("T")


class Registry(Generic[T]):
    """The parts of one config group, by name, in the order they were declared."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._parts: dict[str, T] = {}

    def add(self, name: str, part: T) -> T:
        known = self._parts.get(name)
        # A module imported twice (a script run as __main__ and imported) declares the same part again.
        if known is not None and _identity(known) != _identity(part):
            raise ValueError(f"two {self.group} parts are named {name!r}: {_identity(known)} and {_identity(part)}")
        self._parts[name] = part
        return part

    def __getitem__(self, name: str) -> T:
        if name not in self._parts:
            load_extensions()
        try:
            return self._parts[name]
        except KeyError:
            raise KeyError(f"no {self.group} named {name!r}; known: {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._parts

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)

    def names(self) -> list[str]:
        return list(self._parts)

    def items(self):
        return self._parts.items()


def _identity(part) -> str:
    """Where a part is defined: its class, or the function its declaration wraps."""
    defined = getattr(part, "build", part)
    return f"{getattr(defined, '__module__', '?')}.{getattr(defined, '__qualname__', repr(defined))}"


_loaded: set[str] = set()


def load_extensions() -> list[str]:
    """Import the modules named in ``FORGETLAB_EXTENSIONS`` (once each); returns their names."""
    names = [n.strip() for n in os.environ.get(EXTENSIONS_ENV, "").split(",") if n.strip()]
    for name in names:
        if name not in _loaded:
            importlib.import_module(name)
            _loaded.add(name)
    return names


def import_submodules(package_name: str, package_path: list[str]) -> None:
    """Import every module of a package, so that the parts declared in its files are registered
    without a list of them to keep up to date."""
    for module in pkgutil.iter_modules(package_path):
        importlib.import_module(f"{package_name}.{module.name}")
