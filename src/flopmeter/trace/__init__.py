"""Recording what ran: op events with module attribution (see run.record)."""

from .events import OpEvent, TensorMeta
from .run import Trace, record

__all__ = ["OpEvent", "TensorMeta", "Trace", "record"]
