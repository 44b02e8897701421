"""Cost formulas for aten ops, by family; importing this package fills ``REGISTRY``."""

from . import attention, backward, conv, matmul, memory, norm, optim, pointwise, recurrent, reduce  # noqa: F401  (registration)
from .registry import COSTED, FREE, REGISTRY, TRANSCENDENTAL, UNSUPPORTED, Registry, io_bytes, register

__all__ = ["COSTED", "FREE", "REGISTRY", "TRANSCENDENTAL", "UNSUPPORTED", "Registry", "io_bytes", "register"]
