"""Cost formulas for aten ops, by family, and ONNX ops (``onnx``, thin adapters over the same
family helpers); importing this package fills ``REGISTRY``."""

from . import (attention, backward, conv, indexing, loss, lowprec, matmul, memory, norm, onnx, optim,  # noqa: F401
               pointwise, quantized, quantized_rnn, recurrent, reduce)  # (registration)
from .registry import COSTED, FREE, REGISTRY, TRANSCENDENTAL, UNSUPPORTED, Registry, io_bytes, register

__all__ = ["COSTED", "FREE", "REGISTRY", "TRANSCENDENTAL", "UNSUPPORTED", "Registry", "io_bytes", "register"]
