"""``count_onnx``: the Report of an ONNX model, from its graph alone (the ``onnx`` extra).

The graph's nodes become trace events (:mod:`.onnx_trace`) costed by the ``onnx.*``
formulas of the same registry as the aten ops (:mod:`flopmeter.formulas.onnx`, thin
adapters over the same family helpers), so a model exported from PyTorch counts the same
MACs and parameters from its ``.onnx`` file as from its ``nn.Module``.
"""

from __future__ import annotations

from ..errors import expect_type
from ..report import Report, build_report
from .onnx_shapes import bind, infer, load
from .onnx_trace import build_trace

# ops whose MACs are integer multiply-accumulates (int8/uint8 operands)
INTEGER_MAC_OPS = frozenset({"onnx.QLinearConv", "onnx.QLinearMatMul", "onnx.MatMulInteger", "onnx.ConvInteger",
                             "onnx.com.microsoft.QGemm", "onnx.com.microsoft.MatMulIntegerToFloat"})


def trace_onnx(model, input_shapes=None, *, batch: int | None = None):
    """The :class:`~flopmeter.trace.Trace` of an ONNX model (a path or a ``ModelProto``)."""
    proto, name = load(model)
    shapes = bind(proto, input_shapes, batch)
    inferred, values = infer(proto, shapes)
    return build_trace(inferred, values, name, shapes)


def count_onnx(model, input_shapes=None, *, batch: int | None = None, options=None) -> Report:
    """Count an ONNX model: a path to a ``.onnx`` file or an ``onnx.ModelProto``.

    ``input_shapes``: ``{input name: shape}``, a list of shapes in input order, or one shape;
    needed where the file leaves a dimension symbolic (``batch`` binds a symbolic first
    dimension). External weight files are never read. ``options``: a
    :class:`flopmeter.Options` (its ``convention``, ``strict``, ``registry`` and ``causal``
    apply; ``mode`` and ``device`` do not, nothing runs).
    """
    import os

    from ..api import _options
    options = _options(options, "count_onnx")
    if not isinstance(model, (str, os.PathLike)) and type(model).__name__ != "ModelProto":
        expect_type(model, (str, os.PathLike), "count_onnx(model)", "a path to a .onnx file or an onnx.ModelProto")
    if batch is not None:
        expect_type(batch, int, "count_onnx(batch)", "a positive int or None")
    trace = trace_onnx(model, input_shapes, batch=batch)
    trace.options.update(convention=options.convention, causal=options.causal, strict=options.strict)
    report = build_report(trace, registry=options.registry, convention=options.convention, strict=options.strict,
                          causal=options.causal)
    integer = sum(r.cost.macs for r in report.ops if r.op in INTEGER_MAC_OPS)
    if integer:
        trace.extra["notes"] = [f"{integer:,} of the {report.macs:,} MACs are integer (8-bit) multiply-accumulates "
                                f"of quantized ops ({', '.join(sorted({r.op.removeprefix('onnx.') for r in report.ops if r.op in INTEGER_MAC_OPS}))})"]
        trace.extra["integer_macs"] = integer
    return report


__all__ = ["INTEGER_MAC_OPS", "count_onnx", "trace_onnx"]
