"""The JSON report's schema: the version written, the versions read, and the shipped JSON Schema.

``flopmeter.report/2`` (written) is described in ``docs/report-schema.md`` and, for machines,
in ``schema.json`` beside this file. ``flopmeter.report/1`` (flopmeter 0.1's reports) is still
read by ``flopmeter diff``: it differs only in writing tensors as display strings
(``"float32[1, 3, 224, 224]"``) where version 2 writes ``{"dtype", "shape", "display"}``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .model import SCHEMA

SCHEMA_FILE = Path(__file__).with_name("schema.json")
READABLE = ("flopmeter.report/1", SCHEMA)     # versions `flopmeter diff` reads


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) every report of the current version validates against."""
    return json.loads(SCHEMA_FILE.read_text())


__all__ = ["READABLE", "SCHEMA", "SCHEMA_FILE", "json_schema"]
