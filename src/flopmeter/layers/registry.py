"""The closed-form registry: nn.Module type → function of (module, call) → Derivation.

A closed form reads the layer's configuration from the module and the shapes of its inputs
from a :class:`LayerCall`; it never looks at a trace, so it is an independent oracle for
the traced counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from ..errors import NoClosedFormError
from ..trace.events import TensorMeta, tensors_in, to_meta
from .derivation import Derivation


@dataclass(frozen=True)
class LayerCall:
    """One call of a module: its inputs as metadata, and how it is counted."""

    args: tuple
    kwargs: dict = field(default_factory=dict)
    grad: bool = False            # autograd on (``Options(inference=False)``)
    causal: str = "full"          # causal masks counted in full or exactly

    @classmethod
    def of(cls, *args: Any, kwargs: dict | None = None, grad: bool = False, causal: str = "full") -> "LayerCall":
        """From example inputs (tensors or TensorMetas)."""
        return cls(to_meta(tuple(args)), to_meta(dict(kwargs or {})), grad, causal)

    @property
    def input(self) -> TensorMeta:
        """The first tensor input."""
        tensors = tensors_in(self.args)
        if not tensors:
            raise NoClosedFormError("the call has no tensor input",
                                    hint="the traced ops are still counted; only the closed-form comparison is missing")
        return tensors[0]

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        if len(self.args) > index:
            return self.args[index]
        return self.kwargs.get(name, default)

    def describe(self) -> str:
        return ", ".join(map(repr, tensors_in(self.args) + tensors_in(self.kwargs)))


ClosedForm = Callable[[nn.Module, LayerCall], Derivation]


def describe(module: nn.Module) -> str:
    """``Conv2d(3, 64, kernel_size=(7, 7), …)``: the type and its one-line configuration."""
    return f"{type(module).__name__}({module.extra_repr()})"


class Layers:
    def __init__(self) -> None:
        self._forms: dict[type, ClosedForm] = {}

    def register(self, *types: type):
        """Decorator: the closed form of these module types (an error if one is registered twice)."""
        def deco(fn: ClosedForm) -> ClosedForm:
            for t in types:
                if t in self._forms:
                    raise ValueError(f"a closed form for {t.__name__} is already registered")
                self._forms[t] = fn
            return fn
        return deco

    def types(self) -> list[type]:
        return list(self._forms)

    def form(self, t: type) -> ClosedForm:
        """The closed form registered for exactly this type."""
        return self._forms[t]

    def lookup(self, module: nn.Module) -> ClosedForm:
        """The closed form of the module's type, or of a base class whose forward it keeps."""
        return self._forms[self.base(module)]

    def base(self, module: nn.Module) -> type:
        """The registered type whose closed form applies: the module's own, or a base class
        whose forward it keeps."""
        for base in type(module).__mro__:
            if base in self._forms and type(module).forward is base.forward:
                return base
        raise NoClosedFormError(f"no closed form for {type(module).__name__}",
                                hint="its traced ops are still counted; closed forms cover the standard layers")

    def derive(self, module: nn.Module, call: LayerCall) -> Derivation:
        return self.lookup(module)(module, call)


LAYERS = Layers()
closed_form = LAYERS.register


def derive(module: nn.Module, *args: Any, kwargs: dict | None = None, grad: bool = False,
           causal: str = "full") -> Derivation:
    """The closed form of ``module`` called on ``args`` (tensors or TensorMetas)."""
    return LAYERS.derive(module, LayerCall.of(*args, kwargs=kwargs, grad=grad, causal=causal))
