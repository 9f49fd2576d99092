"""Per-field constraints, declared next to each config field in the style of scikit-learn's parameter
validation (whose classes, in ``sklearn.utils._param_validation``, are private):

    lr: float = field(default=0.5, metadata=constrain(Interval(0, None, closed="neither"), member=True))

A constraint tells whether a value satisfies it, and its ``str`` says what is allowed, so that the
checker in ``config/validation.py`` can write "The 'algorithm.lr' parameter must be a number in the
range (0, inf). Got -1.0 instead." Types are OmegaConf's job (a ``float`` field never holds a string);
constraints state what the type cannot.

This module is the bottom of the package: every part (network, algorithm, task sequence) declares its
config fields with it, next to its own code, and raises ``ConfigError`` for a rule its fields span.
"""

from __future__ import annotations

import difflib
import math
from abc import ABC, abstractmethod
from numbers import Real
from typing import Any, Literal

# The key under which a dataclass field's metadata holds its constraints.
CONSTRAINTS = "forgetlab.constraints"
# The key under which it says that the members of one ensemble may differ in this field.
MEMBER = "forgetlab.member"


class ConfigError(ValueError):
    """A config value is out of its allowed range or set; the message names key, value and what is allowed."""


def fail(key: str, value: Any, allowed: str, hint: str = "") -> None:
    """Raise the ConfigError of ``key``: "The 'key' parameter must be <allowed>. Got <value> instead."
    and ``hint`` (e.g. ``did_you_mean``'s) after it."""
    raise ConfigError(f"The '{key}' parameter must be {allowed}. Got {value!r} instead.{hint}")


def did_you_mean(given: Any, options) -> str:
    """" Did you mean 'x'?" for the option closest to a mistyped ``given`` (difflib's ratio ≥ 0.6), else ""."""
    if not isinstance(given, str):
        return ""
    close = difflib.get_close_matches(given, [str(o) for o in options], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


class Constraint(ABC):
    @abstractmethod
    def is_satisfied_by(self, value: Any) -> bool: ...

    @abstractmethod
    def __str__(self) -> str:
        """What is allowed, as the end of "The 'key' parameter must be ..."."""


def constrain(*constraints: Constraint, member: bool = False) -> dict[str, Any]:
    """Field metadata: the value must satisfy at least one of ``constraints``; ``member``: the members
    of one ensemble may differ in this field (each member's value is passed to the part that reads
    it, as one value per member)."""
    return {CONSTRAINTS: constraints, MEMBER: member}


def allowed(constraints: tuple[Constraint, ...]) -> str:
    return " or ".join(str(c) for c in constraints)


class Interval(Constraint):
    """A finite real number between ``left`` and ``right`` (None: unbounded on that side); ``closed``
    says which ends belong to the interval, as in scikit-learn's ``Interval``."""

    def __init__(self, left: float | None, right: float | None, *,
                 closed: Literal["left", "right", "both", "neither"]) -> None:
        if closed not in ("left", "right", "both", "neither"):
            raise ValueError(f"closed must be 'left', 'right', 'both' or 'neither', not {closed!r}")
        self.left, self.right, self.closed = left, right, closed

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            return False
        if self.left is not None:
            if value < self.left or (value == self.left and self.closed in ("right", "neither")):
                return False
        if self.right is not None:
            if value > self.right or (value == self.right and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self) -> str:
        left_closed = self.left is not None and self.closed in ("left", "both")
        right_closed = self.right is not None and self.closed in ("right", "both")
        left = -math.inf if self.left is None else self.left
        right = math.inf if self.right is None else self.right
        return f"a number in the range {'[' if left_closed else '('}{left}, {right}{']' if right_closed else ')'}"


class Options(Constraint):
    """One of a fixed set of values (scikit-learn's ``StrOptions``), listed in the given order."""

    def __init__(self, *options: Any) -> None:
        self.options = options

    def is_satisfied_by(self, value: Any) -> bool:
        return value in self.options

    def __str__(self) -> str:
        listed = ", ".join(repr(o) for o in self.options)
        return listed if len(self.options) == 1 else f"one of {listed}"


class NonNegativeInt(Constraint):
    """An int >= 0; for fields that also accept another type (``Any``), a bool is not an int here."""

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    def __str__(self) -> str:
        return "a non-negative int"


class ListOf(Constraint):
    """A list of at least ``min_length`` items, each satisfying ``item``; ``description`` is what is
    allowed, in words."""

    def __init__(self, item: Constraint, *, description: str, min_length: int = 0) -> None:
        self.item, self.description, self.min_length = item, description, min_length

    def is_satisfied_by(self, value: Any) -> bool:
        return (isinstance(value, (list, tuple)) and len(value) >= self.min_length
                and all(self.item.is_satisfied_by(v) for v in value))

    def __str__(self) -> str:
        return self.description


class NonBlank(Constraint):
    """A string with something other than white space, e.g. ``NonBlank("experiment name")``."""

    def __init__(self, what: str) -> None:
        self.what = what

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, str) and bool(value.strip())

    def __str__(self) -> str:
        return f"a non-empty {self.what}"


class OneOfNames(Constraint):
    """A name that ``names()`` lists when the value is checked (the options of a registry, which an
    extension may add to after this constraint was declared)."""

    def __init__(self, names) -> None:
        self.names = names

    def is_satisfied_by(self, value: Any) -> bool:
        return value in self.names()

    def __str__(self) -> str:
        return str(Options(*self.names()))


# Constraints that many fields share.
POSITIVE = Interval(0, None, closed="neither")
AT_LEAST_0 = Interval(0, None, closed="left")
AT_LEAST_1 = Interval(1, None, closed="left")
