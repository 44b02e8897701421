"""ONNX operators (``"onnx.Conv"``, …): thin adapters over the family helpers of the aten formulas.

Events come from :mod:`flopmeter.frontends.onnx_trace`: inputs are ``ev.args`` (by position;
``None`` for an omitted optional input), attributes are ``ev.kwargs``. Every formula here
calls the helper its aten twin calls (``matmul_cost``, ``conv_cost``, ``attention_core_cost``,
``softmax_cost``, ``layer_norm_cost``, ``batch_norm_cost``, ``reduce_cost``, ``pool_cost``,
``interp_cost``, ``layer_cost``), so one model costs the same from PyTorch and from ONNX.
Quantized ops (QLinearConv, QLinearMatMul, MatMulInteger, ConvInteger) count integer MACs
with the same helpers; :func:`flopmeter.count_onnx` states them apart in the report.
"""

from __future__ import annotations

from math import prod

from ..cost import ZERO, Cost
from .attention import EXACT, FULL, attention_core_cost, causal_pairs, softmax_cost
from .conv import conv_cost
from .matmul import matmul_cost
from .memory import gather_bytes, interp_cost
from .norm import batch_norm_cost, layer_norm_cost, rms_norm_cost
from .pointwise import pow_cost
from .recurrent import layer_cost
from .reduce import pool_cost, reduce_cost
from .registry import REGISTRY, register


def _onnx(*names: str) -> tuple[str, ...]:
    return tuple(f"onnx.{n}" for n in names)


def _in(ev, i: int):
    return ev.args[i] if i < len(ev.args) else None


def _out(ev) -> int:
    return ev.outputs[0].numel if ev.outputs else 0


# -- dot products ---------------------------------------------------------------

def _conv(w_index: int, b_index: int | None):
    def formula(ev):
        x, w, y = _in(ev, 0), _in(ev, w_index), ev.outputs[0]
        bias = b_index is not None and _in(ev, b_index) is not None
        return conv_cost(x.shape, w.shape, y.shape, transposed=False, groups=ev.kwargs.get("group", 1), bias=bias)
    return formula


register(*_onnx("Conv"))(_conv(1, 2))
register(*_onnx("ConvInteger"))(_conv(1, None))             # x, w, x_zero_point, w_zero_point
register(*_onnx("QLinearConv"))(_conv(3, 8))                # x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B


@register(*_onnx("ConvTranspose"))
def conv_transpose(ev):
    x, w, y = _in(ev, 0), _in(ev, 1), ev.outputs[0]
    nd = len(w.shape) - 2
    pads = ev.kwargs.get("pads") or [0] * (2 * nd)
    return conv_cost(x.shape, w.shape, y.shape, transposed=True, groups=ev.kwargs.get("group", 1),
                     bias=_in(ev, 2) is not None, stride=ev.kwargs.get("strides") or [1] * nd,
                     padding=list(pads[:nd]), dilation=ev.kwargs.get("dilations") or [1] * nd)


@register(*_onnx("Gemm"))
def gemm(ev):
    a, b = _in(ev, 0), _in(ev, 1)
    m, k = a.shape[::-1] if ev.kwargs.get("transA") else a.shape
    n = b.shape[0] if ev.kwargs.get("transB") else b.shape[1]
    return matmul_cost(1, m, k, n, bias=_in(ev, 2) is not None)


def _matmul(a_index: int, b_index: int):
    def formula(ev):
        a, b, y = _in(ev, a_index), _in(ev, b_index), ev.outputs[0]
        k = a.shape[-1]
        n = b.shape[-1] if b.ndim > 1 else 1
        rows = y.numel // n if b.ndim > 1 else y.numel     # numpy matmul: every output is one dot product
        return matmul_cost(1, rows, k, n)
    return formula


register(*_onnx("MatMul", "MatMulInteger"))(_matmul(0, 1))
register(*_onnx("QLinearMatMul"))(_matmul(0, 3))            # a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp


@register(*_onnx("Einsum"))
def einsum(ev):
    """Σ over every index of the product of the operands: one MAC per point of the full
    index space when some index is summed away, else one multiplication per point."""
    lhs, _, rhs = ev.kwargs["equation"].replace(" ", "").partition("->")
    terms = lhs.split(",")
    sizes: dict[str, int] = {}
    for term, t in zip(terms, ev.args):
        if t is None:
            continue
        letters = term.replace("...", "")
        ell = t.ndim - len(letters)
        dims = list(t.shape)
        if "..." in term:
            i = term.index("...")
            for j in range(ell):
                sizes[f"…{j}"] = max(sizes.get(f"…{j}", 1), dims[i + j])
            dims = dims[:i] + dims[i + ell:]
        for c, d in zip(letters, dims):
            sizes[c] = max(sizes.get(c, 1), d)
    out_letters = set(rhs.replace("...", "")) if rhs else {c for c in sizes if lhs.count(c) == 1}
    space = prod(sizes.values())
    out = _out(ev)
    contracted = any(c not in out_letters and not c.startswith("…") for c in sizes)
    if len(terms) == 1:
        return Cost(elementwise=max(space - out, 0))
    if contracted:
        return Cost(macs=space * (len(terms) - 1), dots=out)
    return Cost(elementwise=space * (len(terms) - 1))


def _attention(exact_causal: bool):
    def attention(ev):
        """opset 23 Attention: Q, K, V as (B, H, L, E) or (B, L, H·E) with q/kv_num_heads;
        under ``causal="exact"`` an ``is_causal`` mask counts only its unmasked pairs."""
        q, k, v = _in(ev, 0), _in(ev, 1), _in(ev, 2)
        if q.ndim == 4:
            b, h, l, e = q.shape
            s, ev_ = k.shape[2], v.shape[3]
        else:
            h = ev.kwargs["q_num_heads"]
            kvh = ev.kwargs.get("kv_num_heads", h)
            b, l, e = q.shape[0], q.shape[1], q.shape[2] // h
            s, ev_ = k.shape[1], v.shape[2] // kvh
        causal = bool(ev.kwargs.get("is_causal"))
        pairs = causal_pairs(l, s) if exact_causal and causal else None
        return attention_core_cost(b * h, l, s, e, ev_, mask=_in(ev, 3) is not None or causal, pairs=pairs)
    return attention


FULL["onnx.Attention"] = register("onnx.Attention")(_attention(False))    # with_causal swaps these two
EXACT["onnx.Attention"] = _attention(True)


@register("onnx.com.microsoft.MultiHeadAttention")
def ort_multi_head_attention(ev):
    """onnxruntime's MultiHeadAttention: query (B, S, D), key/value (B, L, D) or
    (B, H, L, D/H); the attention core only (projections are separate nodes)."""
    q, k, v = _in(ev, 0), _in(ev, 1), _in(ev, 2)
    h = ev.kwargs["num_heads"]
    b, s_len, d = q.shape
    kv_len = k.shape[2] if k.ndim == 4 else k.shape[1]
    dv = v.shape[1] * v.shape[3] if v is not None and v.ndim == 4 else (v.shape[2] if v is not None else d)
    return attention_core_cost(b * h, s_len, kv_len, d // h, dv // h, mask=_in(ev, 4) is not None)


@register("onnx.com.microsoft.Attention")
def ort_attention(ev):
    """onnxruntime's Attention: the packed q/k/v projection of input (B, S, D_in) by
    weights (D_in, D_q + D_k + D_v), then self-attention over S (plus any past keys)."""
    x, w = _in(ev, 0), _in(ev, 1)
    h = ev.kwargs["num_heads"]
    b, s_len, d_in = x.shape
    sizes = ev.kwargs.get("qkv_hidden_sizes") or [w.shape[1] // 3] * 3
    past = _in(ev, 4)
    total = s_len + (past.shape[3] if past is not None and past.ndim == 5 else 0)
    return (matmul_cost(1, b * s_len, d_in, w.shape[1], bias=_in(ev, 2) is not None)
            + attention_core_cost(b * h, s_len, total, sizes[0] // h, sizes[2] // h, mask=_in(ev, 3) is not None))


# -- normalisation and softmax -----------------------------------------------------

@register(*_onnx("BatchNormalization"))
def batch_norm(ev):
    x = _in(ev, 0)
    return batch_norm_cost(x.numel, x.shape[1] if x.ndim > 1 else 1, training=bool(ev.kwargs.get("training_mode")),
                           weight=True, bias=True)


@register(*_onnx("LayerNormalization"))
def layer_norm(ev):
    x = _in(ev, 0)
    axis = ev.kwargs.get("axis", -1) % x.ndim
    return layer_norm_cost(x.numel, prod(x.shape[:axis]), weight=True, bias=_in(ev, 2) is not None)


@register(*_onnx("GroupNormalization"))
def group_norm(ev):
    x = _in(ev, 0)
    return layer_norm_cost(x.numel, x.shape[0] * ev.kwargs["num_groups"], weight=True, bias=True)


@register(*_onnx("InstanceNormalization"))
def instance_norm(ev):
    x = _in(ev, 0)
    return layer_norm_cost(x.numel, x.shape[0] * x.shape[1], weight=True, bias=True)


@register(*_onnx("RMSNormalization"))
def rms_norm(ev):
    x = _in(ev, 0)
    axis = ev.kwargs.get("axis", -1) % x.ndim
    return rms_norm_cost(x.numel, prod(x.shape[:axis]), weight=True)


@register(*_onnx("LRN"))
def lrn(ev):   # square (n), sum over a window of `size` channels (n·(size − 1)), scale and bias (2n),
    n = _in(ev, 0).numel        # a power (n transcendental) and a divide (n)
    return Cost(elementwise=n * (ev.kwargs["size"] + 3), transcendental=n)


@register(*_onnx("Softmax"))
def softmax(ev):
    return softmax_cost(_in(ev, 0).numel)


@register(*_onnx("LogSoftmax"))
def log_softmax(ev):      # as aten._log_softmax: 4n arithmetic, n exponentials and one log per row
    x = _in(ev, 0)
    axis = ev.kwargs.get("axis", -1) % max(x.ndim, 1)
    return Cost(elementwise=4 * x.numel, transcendental=x.numel + x.numel // max(x.shape[axis], 1))


# -- pooling, reductions, resize ------------------------------------------------------

def _pool(is_max: bool):
    def formula(ev):
        return pool_cost(_out(ev), prod(ev.kwargs["kernel_shape"]), is_max=is_max)
    return formula


register(*_onnx("MaxPool"))(_pool(True))
register(*_onnx("AveragePool"))(_pool(False))


def _global_pool(is_max: bool):
    def formula(ev):
        x = _in(ev, 0)
        return pool_cost(_out(ev), prod(x.shape[2:]), is_max=is_max)
    return formula


register(*_onnx("GlobalMaxPool"))(_global_pool(True))
register(*_onnx("GlobalAveragePool"))(_global_pool(False))

_REDUCE = {"ReduceSum": "reduce", "ReduceMax": "reduce", "ReduceMin": "reduce", "ReduceProd": "reduce",
           "ArgMax": "reduce", "ArgMin": "reduce", "ReduceMean": "mean", "ReduceL2": "norm2",
           "ReduceSumSquare": "sumsquare", "ReduceLogSumExp": "logsumexp", "ReduceL1": "reduce"}


def _reduce(kind: str):
    def formula(ev):
        return reduce_cost(kind, _in(ev, 0).numel, _out(ev))
    return formula


for _name, _kind in _REDUCE.items():
    register(f"onnx.{_name}")(_reduce(_kind))


@register(*_onnx("Resize", "Upsample"))
def resize(ev):
    mode = ev.kwargs.get("mode", "nearest")
    if mode == "nearest":
        return interp_cost("nearest", _out(ev))
    spatial = sum(1 for a, b in zip(_in(ev, 0).shape, ev.outputs[0].shape) if a != b) or 1
    kind = {"linear": {1: "linear", 2: "bilinear"}.get(spatial, "trilinear"), "cubic": "bicubic"}.get(mode, "bilinear")
    return interp_cost(kind, _out(ev))


# -- recurrent ------------------------------------------------------------------------

def _rnn(kind: str):
    def formula(ev):
        x, w = _in(ev, 0), _in(ev, 1)
        hidden = ev.kwargs["hidden_size"]
        directions, inputs = w.shape[0], w.shape[2]
        steps_rows = x.shape[0] * x.shape[1]          # (seq, batch, input) with layout 0
        name = kind
        if kind == "rnn":
            acts = ev.kwargs.get("activations") or ["Tanh"]
            name = "rnn_relu" if acts[0].lower() == "relu" else "rnn_tanh"
        return layer_cost(name, steps_rows, inputs, hidden, bias=_in(ev, 3) is not None).scaled(directions)
    return formula


register(*_onnx("LSTM"))(_rnn("lstm"))
register(*_onnx("GRU"))(_rnn("gru"))
register(*_onnx("RNN"))(_rnn("rnn"))


# -- pointwise ------------------------------------------------------------------------

_TRANSCENDENTAL = ("Exp Log Sqrt Erf Tanh Sigmoid Gelu Elu Selu Celu Softplus Sin Cos Tan Asin Acos Atan Sinh Cosh "
                   "Asinh Acosh Atanh Mish ThresholdedRelu").split()
_ELEMENTWISE = ("Add Sub Mul Div Relu LeakyRelu PRelu HardSigmoid HardSwish Clip Neg Abs Max Min Mean Sum Where "
                "Equal Greater GreaterOrEqual Less LessOrEqual Not And Or Xor Sign Floor Ceil Round Reciprocal Mod "
                "Softsign IsNaN IsInf BitShift Shrink").split()


@register(*_onnx(*_TRANSCENDENTAL))
def transcendental(ev):
    return Cost(transcendental=_out(ev))


@register(*_onnx(*_ELEMENTWISE))
def elementwise(ev):
    return Cost(elementwise=_out(ev))


@register(*_onnx("Pow"))
def pow_(ev):   # as aten.pow; the exponent's value is known when it is a scalar Constant node
    return pow_cost(_out(ev), ev.kwargs.get("exponent"))


@register(*_onnx("DequantizeLinear", "QuantizeLinear"))
def quantize(ev):   # (x − zero point) · scale, or x / scale + zero point with rounding: 2 ops per element
    return Cost(elementwise=2 * _out(ev))


@register(*_onnx("DynamicQuantizeLinear"))
def dynamic_quantize(ev):   # min and max (2n), scale and zero point, then quantize (2n)
    return Cost(elementwise=4 * _in(ev, 0).numel)


# -- data movement and free ops ---------------------------------------------------------------

@register(*_onnx("Gather", "GatherElements", "GatherND"), own_bytes=True)
def gather(ev):
    return gather_bytes(ev)


@register(*_onnx("Concat", "Slice", "Split", "Expand", "Tile", "Pad", "Cast", "CastLike", "Transpose",
                 "DepthToSpace", "SpaceToDepth", "ScatterND", "ScatterElements", "Trilu", "ConstantOfShape",
                 "Range", "EyeLike", "OneHot", "ReverseSequence", "Compress"))
def data_movement(ev):
    return ZERO


REGISTRY.free(*_onnx("Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Shape", "Size", "Constant",
                     "Dropout", "SplitToSequence", "SequenceAt", "SequenceConstruct", "SequenceEmpty",
                     "SequenceInsert", "SequenceErase", "SequenceLength", "ConcatFromSequence"))

__all__ = ["einsum"]
