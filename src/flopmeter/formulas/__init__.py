"""Cost formulas for aten ops, by family; importing this package fills ``REGISTRY``."""

from . import attention, backward, conv, indexing, loss, lowprec, matmul, memory, norm, optim, pointwise, quantized, quantized_rnn, recurrent, reduce  # noqa: F401,E501  (registration)
from .registry import COSTED, FREE, REGISTRY, TRANSCENDENTAL, UNSUPPORTED, Registry, io_bytes, register

__all__ = ["COSTED", "FREE", "REGISTRY", "TRANSCENDENTAL", "UNSUPPORTED", "Registry", "io_bytes", "register"]
