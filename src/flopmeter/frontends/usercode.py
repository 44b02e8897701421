"""Errors raised by the user's own code (a ``file.py`` that fails to import, a factory that
needs arguments or raises), told as the user's file and line, not ours."""

from __future__ import annotations

import inspect
import traceback
from pathlib import Path

from ..errors import InputError


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _where(exc: BaseException, file: Path) -> tuple[str, int | None, str]:
    """(file name, line, source line) of the deepest frame in ``file`` (or of a SyntaxError)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return exc.filename, exc.lineno, (exc.text or "").strip()
    target = str(file.resolve())
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if str(Path(frame.filename).resolve()) == target:
            found = frame
    if found is None:
        return str(file), None, ""
    return found.filename, found.lineno, (found.line or "").strip()


def user_code_error(exc: BaseException, file: Path, doing: str) -> InputError:
    """'error: /x/net.py:12: ValueError: … (while importing net.py)'."""
    name, line, source = _where(exc, file)
    message = exc.msg if isinstance(exc, SyntaxError) else first_line(exc)
    at = f"{name}:{line}" if line else name
    hint = f"fix line {line} of {Path(name).name}" + (f" ({source})" if source else "") if line else \
        f"check {Path(name).name}"
    return InputError(f"{at}: {type(exc).__name__}: {message} (while {doing})",
                      hint=hint + "; add --debug for the full traceback")


def check_no_arguments(factory, label: str) -> None:
    """A factory is called with no arguments: refuse one that needs some, naming them."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    needed = [p.name for p in signature.parameters.values()
              if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if needed:
        raise InputError(f"{label} needs argument(s) {', '.join(needed)}, but it is called with none",
                         hint="give those parameters defaults, or write a function without arguments that calls it")
