"""Closed-form layer formulas that show their work.

``derive(module, *inputs)`` returns a :class:`Derivation`: the symbolic formulas, the same
formulas with the layer's numbers substituted, the values, and the :class:`~flopmeter.Cost`.
``LAYERS`` maps module types to their closed forms; importing this package fills it.
"""

from . import activation, conv, embedding, linear, norm, pool, recurrent  # noqa: F401  (registration)
from .attention import Attention, attention
from .derivation import Derivation, Step, Work
from .registry import LAYERS, LayerCall, Layers, closed_form, derive
from .transformer import decoder_estimate

__all__ = ["Attention", "Derivation", "LAYERS", "LayerCall", "Layers", "Step", "Work", "attention",
           "closed_form", "decoder_estimate", "derive"]
