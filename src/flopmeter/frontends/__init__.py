"""Front ends: turn a SPEC string into a model and a way to build its example inputs.

SPEC forms: ``torchvision:NAME``, ``timm:NAME``, ``hf:CONFIG``, ``path/file.py:FUNCTION``,
saved models (``.pt2``, TorchScript, pickled modules with ``trust_pickle``) and a folder with
a ``config.json`` beside its checkpoint (counted from the config, :mod:`.checkpoint.folder`).
A checkpoint file alone (``.safetensors``, ``.gguf``, ``.bin``) holds no model: its header is
read by :func:`.checkpoint.read_checkpoint` (the CLI's ``count_spec`` routes it there).
"""

from __future__ import annotations

from ..errors import InputError, close_matches
from .base import InputRequest, Resolved, refuse
from .files import python_factory, saved_model
from .hf import hf_model
from .zoo import timm_model, torchvision_model

FORMS = ("torchvision:NAME, timm:NAME, hf:CONFIG, path/to/file.py:FUNCTION, a saved model file, a .onnx file, "
         "a saved trace (.fmtrace), or a checkpoint (.safetensors, .gguf, .bin, or a folder of them)")
_PREFIXES = {"torchvision": torchvision_model, "timm": timm_model, "hf": hf_model}
_SAVED = (".pt2", ".pt", ".pth", ".ts", ".jit")


def resolve(spec: str, req: InputRequest | None = None, *, trust_pickle: bool = False) -> Resolved:
    req = req or InputRequest()
    head, sep, tail = spec.rpartition(":")
    if sep and head.endswith(".py"):
        _no_pickle(spec, trust_pickle)
        return python_factory(head, tail, req)
    if spec.endswith(".py"):
        raise InputError(f"which function in {spec} builds the model?", hint=f"write {spec}:FUNCTION")
    if spec.endswith(_SAVED):
        return saved_model(spec, req, trust_pickle=trust_pickle)
    from .checkpoint.folder import folder_model, has_config
    if has_config(spec):
        _no_pickle(spec, trust_pickle)
        return folder_model(spec, req)
    prefix, sep, name = spec.partition(":")
    if sep and prefix in _PREFIXES:
        _no_pickle(spec, trust_pickle)
        return _PREFIXES[prefix](name, req)
    close = close_matches(prefix, _PREFIXES, n=1)
    hint = f"did you mean '{close[0]}:{name}'?" if close and sep else f"write the model as {FORMS}"
    raise InputError(f"cannot read model spec '{spec}'", hint=hint)


def is_hf(spec: str) -> bool:
    """An ``hf:`` spec, or a folder with a config.json beside its checkpoint (built the same way)."""
    from .checkpoint.folder import has_config
    return spec.startswith("hf:") or has_config(spec)


def _no_pickle(spec: str, trust_pickle: bool) -> None:
    if trust_pickle:
        raise refuse("--trust-pickle", f"applies to saved model files only; '{spec}' loads no pickle",
                     hint="leave --trust-pickle out")


__all__ = ["FORMS", "InputRequest", "Resolved", "is_hf", "resolve"]
