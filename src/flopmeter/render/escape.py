"""Escaping of model-provided strings (module names and paths, class names, model names) in
text formats: module names are user data and may hold anything.

- CSV: a cell a spreadsheet would read as a formula (first character ``=``, ``+``, ``-``,
  ``@``, tab or carriage return) gets a leading ``'`` (OWASP's advice against formula
  injection); plain numbers such as ``-2.5%`` are left alone, since they cannot be formulas.
- Markdown: HTML is entity-escaped (``<script>`` shows as text), Markdown's own syntax
  (links, images, emphasis, code) is backslash-escaped where it could take effect, ``|`` cannot split a table cell and a
  newline becomes ``<br>`` instead of ending the table row.
"""

from __future__ import annotations

import re

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)*%?")
# backslash, code, emphasis, pipes; link and image syntax ("](" and "!["); an underscore only where
# it could open or close emphasis (not inside a word such as no_grad)
_MD_SPECIAL = re.compile(r"([\\`*|]|\](?=[(\[])|(?<=!)\[|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def csv_cell(value):
    """A CSV cell that no spreadsheet evaluates; numbers are returned unchanged."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START) or _NUMBER.fullmatch(value):
        return value
    return "'" + value


def md_text(text: str) -> str:
    """Text for a Markdown table cell or a header line: shown verbatim, never interpreted."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("\r\n", "<br>").replace("\n", "<br>").replace("\r", "<br>")
