"""Helpers for the ONNX tests: exporting PyTorch models, and small graphs made with onnx.helper."""

from __future__ import annotations

import warnings

import torch

EXPORT = dict(dynamo=True, optimize=False)
# optimize=False: the exporter's optimizer folds BatchNorm into the preceding convolution,
# which changes the parameter count (a conv bias replaces the BatchNorm's weight and bias)


def export(model: torch.nn.Module, args: tuple, path) -> str:
    """torch.onnx.export (the dynamo exporter, PyTorch's default) into ``path``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), args, str(path), **EXPORT)
    return str(path)


def graph(nodes, inputs, outputs, initializers=(), opset: int = 21, name: str = "g"):
    """A ModelProto from onnx.helper pieces; inputs/outputs as (name, elem type, shape)."""
    from onnx import helper
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs], list(initializers))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def init(name: str, elem_type: int, dims, values=None):
    """An initializer of the given type and dims (zeros unless values are given)."""
    from math import prod

    from onnx import helper
    n = prod(dims)
    return helper.make_tensor(name, elem_type, list(dims), values if values is not None else [0] * n)
