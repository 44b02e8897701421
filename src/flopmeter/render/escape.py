"""Escaping of model-provided strings (module names and paths, class names, model names) in
text formats: module names are user data and may hold anything.

- CSV: a cell a spreadsheet would read as a formula (first character ``=``, ``+``, ``-``,
  ``@``, tab or carriage return) gets a leading ``'`` (OWASP's advice against formula
  injection); plain numbers such as ``-2.5%`` are left alone, since they cannot be formulas.
- Markdown: HTML is entity-escaped (``<script>`` shows as text), Markdown's own syntax
  (links, images, emphasis, code) is backslash-escaped where it could take effect, ``|`` cannot split a table cell and a
  newline becomes ``<br>`` instead of ending the table row.
- Every human-readable format (terminal tables, plain text, Markdown, CSV, HTML, error lines):
  C0 and C1 control characters, DEL and the Unicode bidirectional controls are shown as escapes
  (``\\x1b``, ``\\u202e``), so a name cannot retitle the window, clear the screen or reorder
  what the reader sees; newline and tab stay where the format needs them.
"""

from __future__ import annotations

import re

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)*%?")
# backslash, code, emphasis, pipes; link and image syntax ("](" and "!["); an underscore only where
# it could open or close emphasis (not inside a word such as no_grad)
_MD_SPECIAL = re.compile(r"([\\`*|]|\](?=[(\[])|(?<=!)\[|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


# C0 controls, DEL, C1 controls, and the bidirectional marks, embeddings, overrides and isolates
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape_char(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text, keep: str = "") -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\u202e``), except
    those in ``keep`` (e.g. ``"\\n\\t"`` for a whole rendered document)."""
    text = str(text)
    if keep:
        return _CONTROL.sub(lambda m: m.group() if m.group() in keep else _escape_char(m), text)
    return _CONTROL.sub(_escape_char, text)


def visible_text(text: str) -> str:
    """A whole rendered document: control characters escaped, newlines and tabs kept."""
    return visible(text, keep="\n\t")


def json_controls(text: str) -> str:
    """JSON text with the control characters ``json.dumps(ensure_ascii=False)`` leaves raw (C1,
    DEL, bidirectional controls, line separators) written as ``\\uXXXX`` escapes."""
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def csv_cell(value):
    """A CSV cell that no spreadsheet evaluates; numbers are returned unchanged."""
    if not isinstance(value, str):
        return value
    value = visible(value, keep="\n\t")       # a quoted CSV cell may hold newlines and tabs
    if not value.startswith(_FORMULA_START) or _NUMBER.fullmatch(value):
        return value
    return "'" + value


def md_text(text: str) -> str:
    """Text for a Markdown table cell or a header line: shown verbatim, never interpreted."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return visible(text.replace("\r\n", "<br>").replace("\n", "<br>").replace("\r", "<br>"))
