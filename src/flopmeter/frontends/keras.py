"""Keras 3 models on the PyTorch backend (``KERAS_BACKEND=torch``).

A Keras 3 layer on that backend *is* a ``torch.nn.Module``, and calling it goes through
``nn.Module.__call__``, so the recorder sees its ops and its calls. Two things differ from a
PyTorch model, and :class:`KerasView` bridges them without touching the user's model:

- Keras keeps its layers in its own tracker, not as torch submodules, so
  ``named_modules()`` of a Keras model does not list them. The view lists them under their
  Keras names (``conv2d``, ``mha.query`` for a sublayer), so ops are attributed to them.
- Keras variables read their own tensor (``Variable._value``), not a module attribute, so
  the recorder's stand-in tensors cannot replace them: the Keras model itself runs (the
  view's own module tree is what the recorder shadows), and the attributes Keras writes
  during the call are put back. In fake mode the fake-tensor mode converts the real weights
  it meets on the fly; their values are never read. The view lists each variable once,
  under the layer that owns it.

Non-trainable variables (BatchNormalization's moving mean and variance) are frozen
parameters, as ``model.summary()`` counts them.
"""

from __future__ import annotations

import os
import sys
from typing import Iterator

from torch import nn

from ..errors import InputError


def is_keras(model) -> bool:
    """True for a Keras 3 layer or model (without importing Keras when it is not loaded)."""
    keras = sys.modules.get("keras")
    if keras is None:
        return False
    layer = getattr(getattr(keras, "layers", None), "Layer", None)
    return layer is not None and isinstance(model, layer)


def _check(model) -> None:
    if not isinstance(model, nn.Module):
        backend = os.environ.get("KERAS_BACKEND") or "tensorflow (Keras' default)"
        raise InputError(f"this Keras model runs on the {backend} backend; flopmeter counts the PyTorch backend",
                         hint="set KERAS_BACKEND=torch before Keras is imported")
    if not model.built:
        raise InputError(f"the Keras model '{model.name}' is not built, so it has no weights to count",
                         hint="give it an input shape (keras.Input(shape=…) first, or model.build(shape))")


def _own_variables(layer) -> list:
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


def _layer_tree(layer, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(path, layer) for every sublayer, depth first, Keras names joined by '.'."""
    input_layer = sys.modules["keras"].layers.InputLayer
    seen: set[str] = set()
    for child in layer._layers:
        if isinstance(child, input_layer):
            continue
        name = child.name.replace(".", "_")
        while name in seen:
            name += "_"
        seen.add(name)
        path = f"{prefix}{name}"
        yield path, child
        yield from _layer_tree(child, path + ".")


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return len(a) == len(b) and all(b.get(k, _MISSING) is v for k, v in a.items())
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


_MISSING = object()


class _AttributeSnapshot:
    """The attributes of some objects, and the contents of their plain dicts and lists, put
    back as they were by ``restore()`` (Keras writes a few during a call)."""

    def __init__(self, objects):
        self._saved = []
        for obj in objects:
            attrs = vars(obj)
            contents = [(v, v.copy()) for v in attrs.values() if type(v) in (dict, list)]
            self._saved.append((attrs, attrs.copy(), contents))

    def restore(self) -> None:
        for attrs, before, contents in self._saved:
            if attrs.keys() != before.keys() or any(attrs[k] is not v for k, v in before.items()):
                attrs.clear()
                attrs.update(before)
            for container, copy in contents:
                if not _same(copy, container):
                    container.clear()
                    container.update(copy) if isinstance(container, dict) else container.extend(copy)


class KerasView(nn.Module):
    """A read-only view of a built Keras model for the recorder: its layers under their Keras
    names, its variables as parameters. Holds the model without registering it."""

    def __init__(self, model):
        super().__init__()
        _check(model)
        object.__setattr__(self, "keras_model", model)
        object.__setattr__(self, "layer_paths", [("", model), *_layer_tree(model)])

    def forward(self, *args, **kwargs):
        # Keras runs its own layers (their variables read their own tensors); whatever
        # attributes the call writes on them (Keras marks a model `_called`) are put back
        snapshot = _AttributeSnapshot({id(m): m for _, layer in self.layer_paths for m in layer.modules()}.values())
        try:
            return self.keras_model(*args, **kwargs)
        finally:
            snapshot.restore()

    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        yield prefix, self
        for path, layer in self.layer_paths[1:]:
            yield (f"{prefix}.{path}" if prefix else path), layer

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        # each variable once, under the layer that owns it (`conv.kernel`, `mha.query.bias`);
        # the tensor is the one the variable computes with
        for path, layer in self.layer_paths:
            for var in _own_variables(layer):
                yield (f"{path}.{var.name}" if path else var.name), var.value

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        return iter(())

    def finish_trace(self, trace) -> None:
        """Name the model and its layer types the Keras way in the trace."""
        trace.model = self.keras_model.name
        trace.extra["frontend"] = "keras"
        types = {path: type(layer).__name__ for path, layer in self.layer_paths}
        for m in trace.modules:
            m.type = types.get(m.path, m.type)


def as_torch_module(model):
    """A Keras 3 model → its :class:`KerasView`; anything else unchanged."""
    return KerasView(model) if is_keras(model) else model


__all__ = ["KerasView", "as_torch_module", "is_keras"]
