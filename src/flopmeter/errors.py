"""Exceptions raised by flopmeter.

Every error a user can cause derives from :class:`FlopmeterError`, so the CLI turns
them into one-line ``error: …`` / ``hint: …`` messages in a single place::

    FlopmeterError                 base; carries an optional ``hint``
    ├── OptionsError               a bad option value (unknown convention, mode, …)
    ├── InputError                 example inputs that cannot be built or used
    │   └── ParameterTypeError     a public function given a value of the wrong type (also a TypeError)
    ├── ModelForwardError          the model's forward raised; names module, op, shapes
    ├── UnsupportedOpsError        strict mode and some ops have no formula
    ├── NoClosedFormError          a module (or configuration) has no closed-form layer formula
    └── MissingDependencyError     an optional extra is not installed
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable


def close_matches(word: str, choices: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The choices closest to a misspelled ``word`` (the one close-match helper of every hint)."""
    return difflib.get_close_matches(str(word), list(choices), n=n, cutoff=cutoff)


def did_you_mean(word: str, choices: Iterable[str], *, n: int = 1, fmt: str = "'{}'",
                 otherwise: str | None = None) -> str | None:
    """'did you mean 'x'?' for the closest choices, else ``otherwise``."""
    close = close_matches(word, choices, n=n)
    if not close:
        return otherwise
    return f"did you mean {', '.join(fmt.format(c) for c in close)}?"


class FlopmeterError(Exception):
    """Base of every error flopmeter raises on purpose."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class OptionsError(FlopmeterError, ValueError):
    """An option has a value flopmeter does not know."""


class InputError(FlopmeterError, ValueError):
    """Example inputs are missing, malformed or unusable with the chosen mode."""


class ParameterTypeError(InputError, TypeError):
    """A public function or :class:`~flopmeter.Options` was given a value of the wrong type;
    the message names the parameter and what it expects."""


def expect_type(value, types, parameter: str, expected: str, hint: str | None = None) -> None:
    """Raise :class:`ParameterTypeError` unless ``value`` is an instance of ``types``."""
    if not isinstance(value, types) or (bool not in _as_tuple(types) and isinstance(value, bool)
                                        and int in _as_tuple(types)):
        got = type(value).__name__
        raise ParameterTypeError(f"{parameter} must be {expected}, got {got} {value!r:.60}",
                                 hint=hint or f"pass {expected}")


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def env_int(name: str, default: int, unit: str, example: int) -> int:
    """The whole number of ``unit`` set in environment variable ``name`` (1 or more), or ``default``."""
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"{name}={text[:40]!r} is not a whole number of {unit} of 1 or more",
                         hint=f"set {name} to a whole number of {unit}, e.g. {example}")
    return value


class ModelForwardError(FlopmeterError):
    """The model's forward raised while it was being recorded.

    ``module`` is the innermost module path running when it failed ("" is the root),
    ``op`` the aten op that failed (if it failed inside one) and ``shapes`` that op's
    input shapes. The original exception is chained as ``__cause__``. ``data_dependent`` is
    true when the forward needed tensor *values* (an output size or a Python branch) that
    fake tensors do not have; real mode can count such a model.
    """

    def __init__(self, message: str, *, module: str | None, op: str | None,
                 shapes: list | None, hint: str | None = None, data_dependent: bool = False):
        super().__init__(message, hint)
        self.module = module
        self.op = op
        self.shapes = shapes
        self.data_dependent = data_dependent   # fake tensors cannot give what the code asked


class UnsupportedOpsError(FlopmeterError):
    """Strict mode: some executed ops have no cost formula. ``ops`` maps op → calls."""

    def __init__(self, ops: dict[str, int]):
        listed = ", ".join(f"{k} (×{v})" for k, v in sorted(ops.items()))
        super().__init__(
            f"{len(ops)} unsupported op(s) ran: {listed}",
            hint="register a formula with flopmeter.formulas.register, or run without strict",
        )
        self.ops = dict(ops)


class NoClosedFormError(FlopmeterError):
    """No closed-form layer formula covers this module type or this configuration of it."""


class MissingDependencyError(FlopmeterError, ImportError):
    """An optional dependency is missing; the hint names the extra that installs it."""

    def __init__(self, package: str, extra: str):
        super().__init__(
            f"this needs the optional package '{package}', which is not installed",
            hint=f"pip install 'flopmeter[{extra}]'",
        )
        self.package = package
        self.extra = extra


class FlopmeterNote(UserWarning):
    """Something a user should know about a count that is not an error (the CLI prints it as
    a ``note:`` line), e.g. that a ``torch.compile``d module was counted through its original."""
