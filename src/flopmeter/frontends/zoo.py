"""Model-zoo names: ``torchvision:NAME`` and ``timm:NAME``, built without weights.

Models are built on the meta device (no memory for weights); a model whose constructor
needs real values is built on the CPU instead. The input size is the crop size of the
model's default weights when torchvision knows one, else 224.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError, MissingDependencyError

FORMS = "torchvision:NAME or timm:NAME"


@dataclass
class Resolved:
    model: nn.Module
    input_shape: tuple[int, ...]
    name: str


def _import(package: str, extra: str):
    try:
        return __import__(package)
    except ImportError:
        raise MissingDependencyError(package, extra) from None


def _unknown(kind: str, name: str, known: list[str]) -> InputError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = (f"did you mean {', '.join(f'{kind}:{c}' for c in close)}?" if close
            else f"see the {len(known)} names {kind} knows")
    return InputError(f"unknown {kind} model '{name}'", hint=hint)


def _build(factory, **kwargs) -> nn.Module:
    try:
        with torch.device("meta"):
            return factory(**kwargs)
    except (NotImplementedError, RuntimeError):
        return factory(**kwargs)


def _torchvision(name: str) -> Resolved:
    tv = _import("torchvision", "zoo")
    known = tv.models.list_models()
    if name not in known:
        raise _unknown("torchvision", name, known)
    size = 224
    try:
        weights = tv.models.get_model_weights(name).DEFAULT
        size = weights.transforms.keywords.get("crop_size", size)
        if isinstance(size, (list, tuple)):
            size = size[0]
    except (ValueError, AttributeError, KeyError):
        pass
    model = _build(tv.models.get_model, name=name, weights=None)
    return Resolved(model.eval(), (1, 3, size, size), f"torchvision:{name}")


def _timm(name: str) -> Resolved:
    timm = _import("timm", "zoo")
    known = timm.list_models()
    if name not in known:
        raise _unknown("timm", name, known)
    model = _build(timm.create_model, model_name=name, pretrained=False)
    size = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224))) if hasattr(model, "pretrained_cfg") else (3, 224, 224)
    return Resolved(model.eval(), (1, *size), f"timm:{name}")


_PREFIXES = {"torchvision": _torchvision, "timm": _timm}


def resolve(spec: str) -> Resolved:
    prefix, sep, name = spec.partition(":")
    if not sep or prefix not in _PREFIXES:
        close = difflib.get_close_matches(prefix, _PREFIXES, n=1)
        hint = f"did you mean '{close[0]}:{name}'?" if close and sep else f"write the model as {FORMS}"
        raise InputError(f"cannot read model spec '{spec}'", hint=hint)
    return _PREFIXES[prefix](name)
