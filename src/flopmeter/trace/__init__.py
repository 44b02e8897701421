"""Recording what ran: op events with module attribution and tensor identity (see run.record)."""

from .events import OpEvent, TensorMeta, TensorRef
from .model import ModuleInfo, ParamInfo, StorageInfo, Trace
from .run import record

__all__ = ["ModuleInfo", "OpEvent", "ParamInfo", "StorageInfo", "TensorMeta", "TensorRef", "Trace", "record"]
