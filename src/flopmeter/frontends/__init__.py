"""Front ends: turn a SPEC string into a model plus example input shapes."""

from .zoo import Resolved, resolve

__all__ = ["Resolved", "resolve"]
