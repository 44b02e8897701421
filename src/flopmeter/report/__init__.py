"""Report data model and builder."""

from .builder import build_report
from .model import SCHEMA, ModuleNode, OpRow, Report, TensorStats

__all__ = ["SCHEMA", "ModuleNode", "OpRow", "Report", "TensorStats", "build_report"]
