"""Models from files:

- ``path/to/file.py:factory`` — a function returning a model, or ``(model, inputs)`` where
  inputs is a tensor, a tuple of positional inputs, or a dict of keyword inputs; a Keras 3
  model counts too (``KERAS_BACKEND`` defaults to ``torch`` for the file);
- ``model.pt2`` — a ``torch.export`` ExportedProgram, with its own example inputs;
- ``model.pt`` / ``.pth`` / ``.ts`` — a TorchScript archive (counted in real mode), or a whole
  pickled model; both are loaded only with ``--trust-pickle`` (unpickling runs code, and a
  TorchScript archive's methods are code that loading and counting it run).
  A checkpoint holding only weights is not a model: use a ``file.py:factory``.

Options are honoured or refused, never ignored: ``--batch`` resizes the model's own example
inputs (repeating them along the first dimension), ``--dtype`` converts the model and its
floating-point inputs (an exported ``.pt2`` program keeps its dtypes: refused), ``--seq-len``
belongs to ``hf:`` specs (refused). A model in training mode is refused rather than switched
to eval mode behind the user's back.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError, did_you_mean
from .base import (InputRequest, Resolved, on_device, rebatch, recast, refuse, refuse_seq_len, shaped_inputs,
                   tensor)
from .keras import is_keras

TRAIN_HINT = "or add --train to count a training step"
from .pt2 import check_pt2, module_tree
from .usercode import check_no_arguments, first_line as _first_line, user_code_error

FILE_FORMS = "a torch.export .pt2, a TorchScript .pt, or path/to/file.py:FUNCTION"
TORCHSCRIPT_TRUST_HINT = ("if you trust this file, add --trust-pickle (trust_pickle=True from Python); a TorchScript "
                          "archive is code, as a pickle is")


def _inputs_from_shapes(req: InputRequest):
    if not req.shapes:
        return None
    shapes = shaped_inputs(req, [], req.dtype or torch.float32)
    return lambda device: (tuple(tensor(s, d, device) for s, d in shapes), {})


def _own_inputs(args: tuple, kwargs: dict, req: InputRequest, name: str):
    """The model's own example inputs, with --batch and --dtype applied."""
    if req.batch is not None:
        args, kwargs = rebatch(args, kwargs, req.batch, name)
    if req.dtype is not None:
        args, kwargs = recast(args, kwargs, req.dtype)
    return lambda device: on_device((args, kwargs), device)       # meta in fake mode: fakes on --device


def _in_dtype(model: nn.Module, req: InputRequest) -> nn.Module:
    return model.to(req.dtype) if req.dtype is not None else model


def _check_eval(model: nn.Module, what: str, hint: str, req: InputRequest | None = None) -> None:
    """A model in training mode is refused: counting it in eval mode would be a silent change
    (with --train it is what is asked for)."""
    if req is not None and req.training:
        return
    training = [n or "the root" for n, m in model.named_modules() if m.training]
    if training:
        raise InputError(f"{what} in training mode ({', '.join(training[:3])}{', …' if len(training) > 3 else ''}); "
                         "flopmeter counts inference and does not switch a model's mode for you",
                         hint=f"{hint} ({TRAIN_HINT})")


def _as_inputs(value):
    if isinstance(value, dict):
        return (), dict(value)
    if isinstance(value, (list, tuple)):
        return tuple(value), {}
    return (value,), {}


def python_factory(path: str, func: str, req: InputRequest) -> Resolved:
    file = _existing(path)
    os.environ.setdefault("KERAS_BACKEND", "torch")    # a Keras 3 model in the file: the backend flopmeter counts
    spec = importlib.util.spec_from_file_location(f"_flopmeter_user_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(file.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # noqa: BLE001  (the user's code: say where it failed, in their file)
        raise user_code_error(exc, file, f"importing {file.name}") from exc
    finally:
        sys.path.pop(0)
    factory = getattr(module, func, None)
    if not callable(factory):
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise InputError(f"{path} has no function '{func}'",
                         hint=did_you_mean(func, names, fmt=f"{path}:{{}}", otherwise="write path/to/file.py:FUNCTION"))
    check_no_arguments(factory, f"{path}:{func}")
    try:
        made = factory()
    except (Exception, SystemExit) as exc:  # noqa: BLE001
        raise user_code_error(exc, file, f"calling {func}()") from exc
    model, example = (made if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module)
                      else (made, None))
    if not isinstance(model, nn.Module):
        raise InputError(f"{path}:{func} returned {type(model).__name__}, not a torch.nn.Module",
                         hint=f"return the module from {func}() (or a (module, inputs) pair)")
    name = f"{file.name}:{func}"
    refuse_seq_len(req, name)
    if not is_keras(model):     # a Keras layer takes `training` per call (inference by default), not torch's flag
        _check_eval(model, f"{name} returned a model", "return model.eval() from the factory to count inference", req)
    make = _inputs_from_shapes(req)
    if make is None:
        if example is None:
            raise InputError(f"{path}:{func} returned no example inputs",
                             hint="pass --input 1x3x224x224, or return (model, inputs) from the factory")
        make = _own_inputs(*_as_inputs(example), req, name)      # the user's own tensors, at --batch and --dtype
    return Resolved(name, _in_dtype(model, req), make)


def _existing(path: str) -> Path:
    file = Path(path)
    if file.is_dir():
        raise InputError(f"{path} is a directory, not a file", hint=f"give the file inside it: {FILE_FORMS}")
    if not file.is_file():
        raise InputError(f"no such file: {path}",
                         hint="check the path (FILE.py:FUNCTION names a factory in a Python file)")
    return file


def saved_model(path: str, req: InputRequest, trust_pickle: bool = False) -> Resolved:
    file = _existing(path)
    if file.stat().st_size == 0:
        raise InputError(f"{file.name} is empty", hint=f"write the model again: {FILE_FORMS}")
    refuse_seq_len(req, file.name)
    make = _inputs_from_shapes(req)
    if file.suffix == ".pt2":
        if req.dtype is not None:
            raise refuse("--dtype", f"cannot change {file.name}: an exported program keeps the dtypes it was "
                         "exported with", hint="export it again in the dtype you want to count")
        if req.training:
            raise refuse("--train", f"cannot count a training step of {file.name}: an exported program cannot be "
                         "put in train mode (its graph keeps the mode it was exported in)",
                         hint="count a training step on the eager model")
        check_pt2(file, trust_pickle)      # pickled payloads only with --trust-pickle
        try:
            program = torch.export.load(str(file))
            model = module_tree(program)
        except Exception as exc:  # noqa: BLE001  (a damaged or incompatible archive)
            raise InputError(f"torch.export cannot load {file.name}: {type(exc).__name__}: {_first_line(exc)}",
                             hint="write it again with torch.export.save, under this version of PyTorch") from None
        if make is None:
            make = _own_inputs(*(program.example_inputs or ((), {})), req, file.name)
        return Resolved(file.name, model, make)
    if _is_torchscript(file):
        if not trust_pickle:     # its scripted methods run while it loads (__setstate__) and while it is counted
            raise InputError(f"{file.name} is a TorchScript archive: it holds its own code, which loading and "
                             "counting it would run", hint=TORCHSCRIPT_TRUST_HINT)
        try:
            model = torch.jit.load(str(file), map_location="cpu")
        except Exception as exc:  # noqa: BLE001  (a damaged archive)
            raise InputError(f"cannot load {file.name} as TorchScript: {type(exc).__name__}: {_first_line(exc)}",
                             hint="write it again with torch.jit.save") from None
        if make is None:
            raise InputError("a TorchScript file carries no example inputs", hint="pass --input SHAPE")
        return Resolved(file.name, _in_dtype(model, req), make,
                        notes=["TorchScript: counted in real mode, all ops at the root"])
    try:
        obj = torch.load(str(file), map_location="meta", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any unpickling refusal)
        if not trust_pickle and "weights only load failed" not in str(exc).lower():
            raise InputError(f"cannot read {file.name}: it is not a file torch.save wrote ({type(exc).__name__})",
                             hint=FILE_FORMS[0].upper() + FILE_FORMS[1:] + " is expected") from None
        if not trust_pickle:
            raise InputError(f"{file.name} is not a plain weights file; loading it would run pickled code",
                             hint="if you trust this file, add --trust-pickle") from None
        try:
            obj = torch.load(str(file), map_location="meta", weights_only=False)
        except Exception as exc2:  # noqa: BLE001  (garbage, truncated, or not made by torch.save)
            raise InputError(f"cannot load {file.name}: {type(exc2).__name__}: {_first_line(exc2)}",
                             hint=f"is it a file written by torch.save or torch.jit.save? {FILE_FORMS}") from None
        del exc
    if not isinstance(obj, nn.Module):
        raise InputError(f"{file.name} holds {type(obj).__name__} (weights?), not a model",
                         hint="write a factory that builds the model: path/to/file.py:FUNCTION")
    if make is None:
        raise InputError("a saved model carries no example inputs", hint="pass --input SHAPE")
    _check_eval(obj, f"{file.name} holds a model saved",
                "save it after model.eval(), or load it in a file.py:FUNCTION that returns model.eval()", req)
    def rebuild():          # real mode: the file's own weights (the model above is on the meta device)
        return _in_dtype(torch.load(str(file), map_location="cpu", weights_only=not trust_pickle), req)
    return Resolved(file.name, _in_dtype(obj, req), make, rebuild)


def _is_torchscript(file: Path) -> bool:
    try:
        with zipfile.ZipFile(file) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
