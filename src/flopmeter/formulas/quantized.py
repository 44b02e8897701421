"""The ``quantized::`` ops of eager-mode quantized models (``torch.ao.quantization``).

A quantized kernel counts as its float counterpart: a quantized Linear or convolution does
the float layer's MACs (in ``uint8×int8``: activations ``quint8``, weights ``qint8``) and
bias adds; ``*_relu`` fusions add the ReLU (one per output element). Requantising the
int32 accumulator to the output's scale happens inside the integer kernel and is not
counted, as a float kernel's epilogue is not; the explicit ``quantize_per_tensor`` and
``dequantize`` at the model's boundaries are (``formulas.lowprec``).

Dynamically quantized ops (``linear_dynamic``, ``conv2d_dynamic`` …) also quantise their
float input on every call: 4 per input element (min, max, scale, shift), like
``quantize_per_tensor_dynamic``; ``linear_dynamic_fp16`` keeps float32 activations and
float16 weights (``float32×float16``).

The weight and bias live in a packed-parameter object (a ``torch.ScriptObject``), not in
tensor arguments: the formulas read the weight's shape, the bias, and a convolution's
stride, padding, dilation and groups from it (methods that only read). Bytes read are the
activation, the packed weight at its element size (1 byte for int8, 2 for float16) and the
bias; bytes written are the outputs. Per-channel scales and zero points are not counted.

Other quantized ops count like their float forms: add and mul 1 per element (+1 with
``_relu``), activations 1 (sigmoid, elu, celu: 1 transcendental), ``cat`` and ``dropout``
move data, pooling and normalisation as in ``formulas.reduce`` and ``formulas.norm``.
"""

from __future__ import annotations

from math import prod

from ..cost import ZERO, Cost
from .attention import softmax_cost
from .conv import conv_cost
from .matmul import matmul_cost
from .norm import batch_norm_cost, layer_norm_cost
from .registry import dtype_label, operands, register


class Packed:
    """What the formulas need from a packed-parameter object: the weight's shape and element
    size, whether there is a bias (and its bytes), and a convolution's geometry."""

    def __init__(self, obj, *, weight_itemsize: int | None = None):
        weight, bias = _call(obj, "unpack")
        self.weight_shape = tuple(weight.shape)
        self.weight_dtype = dtype_label(weight.dtype)
        itemsize = weight_itemsize or weight.element_size()
        self.weight_bytes = prod(self.weight_shape) * itemsize
        self.has_bias = bias is not None
        self.bias_bytes = bias.numel() * bias.element_size() if bias is not None else 0
        conv = obj._has_method("groups") if hasattr(obj, "_has_method") else False
        self.groups = _call(obj, "groups") if conv else 1
        self.transposed = bool(_call(obj, "transpose")) if conv else False
        self.stride = list(_call(obj, "stride")) if conv else []
        self.padding = list(_call(obj, "padding")) if conv else []
        self.dilation = list(_call(obj, "dilation")) if conv else []


def _call(obj, method):
    return getattr(obj, method)()


def _bytes(ev, packed: Packed) -> Cost:
    read = sum(t.nbytes for t in ev.inputs) + packed.weight_bytes + packed.bias_bytes
    return Cost(bytes_read=read, bytes_written=sum(t.nbytes for t in ev.outputs))


# -- linear ---------------------------------------------------------------------------

_LINEAR_EXTRA = {"": 0, "_relu": 1, "_leaky_relu": 1}


def _linear(extra: int = 0, transcendental: int = 0, dynamic: bool = False, fp16: bool = False):
    def formula(ev):   # (X, W_prepack, …) → Y; X is (…, K), Y is (…, N)
        x, out = ev.args[0], ev.outputs[0]
        packed = Packed(ev.args[1], weight_itemsize=2 if fp16 else None)
        k, n = x.shape[-1], out.shape[-1]
        rows = prod(x.shape[:-1])
        cost = matmul_cost(1, rows, k, n, bias=packed.has_bias)
        cost += Cost(elementwise=extra * rows * n + (4 * x.numel if dynamic and not fp16 else 0),
                     transcendental=transcendental * rows * n)
        return cost + _bytes(ev, packed)
    return formula


def _linear_precision(dynamic: bool = False, fp16: bool = False):
    def precision(ev):
        if fp16:
            return operands(dtype_label(ev.args[0].dtype), "float16")
        activation = "uint8" if dynamic else dtype_label(ev.args[0].dtype)
        return operands(activation, Packed(ev.args[1]).weight_dtype)
    return precision


for _suffix, _extra in _LINEAR_EXTRA.items():
    register(f"quantized.linear{_suffix}", own_bytes=True, precision=_linear_precision())(_linear(_extra))
register("quantized.linear_tanh", own_bytes=True, precision=_linear_precision())(_linear(0, 1))
register("quantized.linear_dynamic", own_bytes=True,
         precision=_linear_precision(dynamic=True))(_linear(dynamic=True))
register("quantized.linear_relu_dynamic", own_bytes=True,
         precision=_linear_precision(dynamic=True))(_linear(1, dynamic=True))
register("quantized.linear_dynamic_fp16", own_bytes=True,
         precision=_linear_precision(fp16=True))(_linear(fp16=True))
register("quantized.linear_relu_dynamic_fp16", own_bytes=True,
         precision=_linear_precision(fp16=True))(_linear(1, fp16=True))


# -- convolution ----------------------------------------------------------------------

def _conv(extra: int = 0, dynamic: bool = False, add: bool = False):
    def formula(ev):
        # conv2d(qx, packed, scale, zp); conv2d_add(qx, qaccum, packed, scale, zp); *_dynamic(x, packed, reduce_range)
        x, out = ev.args[0], ev.outputs[0]
        packed = Packed(ev.args[2] if add else ev.args[1])
        nd = x.ndim - 2                        # conv1d is packed as a 2-d conv with a kernel height of 1
        w = packed.weight_shape[:2] + packed.weight_shape[-nd:]
        cost = conv_cost(x.shape, w, out.shape, transposed=packed.transposed, groups=packed.groups,
                         bias=packed.has_bias, stride=packed.stride[-nd:], padding=packed.padding[-nd:],
                         dilation=packed.dilation[-nd:])
        cost += Cost(elementwise=(extra + (1 if add else 0)) * out.numel + (4 * x.numel if dynamic else 0))
        return cost + _bytes(ev, packed)
    return formula


def _conv_precision(dynamic: bool = False, add: bool = False):
    def precision(ev):
        activation = "uint8" if dynamic else dtype_label(ev.args[0].dtype)
        return operands(activation, Packed(ev.args[2] if add else ev.args[1]).weight_dtype)
    return precision


for _d in ("1d", "2d", "3d"):
    register(f"quantized.conv{_d}", own_bytes=True, precision=_conv_precision())(_conv())
    register(f"quantized.conv{_d}_relu", own_bytes=True, precision=_conv_precision())(_conv(1))
    register(f"quantized.conv_transpose{_d}", own_bytes=True, precision=_conv_precision())(_conv())
    register(f"quantized.conv{_d}_dynamic", f"quantized.conv_transpose{_d}_dynamic", own_bytes=True,
             precision=_conv_precision(dynamic=True))(_conv(dynamic=True))
register("quantized.conv2d_add", own_bytes=True, precision=_conv_precision(add=True))(_conv(add=True))
register("quantized.conv2d_add_relu", own_bytes=True, precision=_conv_precision(add=True))(_conv(1, add=True))


@register("quantized.matmul", precision=lambda ev: operands(dtype_label(ev.args[0].dtype),
                                                            dtype_label(ev.args[1].dtype)))
def qmatmul(ev):   # (qA[…, M, K], qB[…, K, N], scale, zero_point)
    a, out = ev.args[0], ev.outputs[0]
    return Cost(macs=out.numel * a.shape[-1], dots=out.numel)


# -- everything else a quantized model runs ---------------------------------------------

def _per_output(elementwise: int = 0, transcendental: int = 0):
    def formula(ev):
        n = ev.outputs[0].numel
        return Cost(elementwise=elementwise * n, transcendental=transcendental * n)
    return formula


for _op in ("add", "mul", "add_scalar", "mul_scalar"):
    register(f"quantized.{_op}", f"quantized.{_op}_out")(_per_output(1))
    register(f"quantized.{_op}_relu", f"quantized.{_op}_relu_out")(_per_output(2))
register("quantized.relu6", "quantized.hardswish", "quantized.leaky_relu", "quantized.threshold",
         "quantized.clamp", "quantized.prelu")(_per_output(1))
register("quantized.sigmoid", "quantized.elu", "quantized.celu")(_per_output(0, 1))
register("quantized.cat", "quantized.cat_out")(_per_output(0))
register("quantized.cat_relu", "quantized.cat_relu_out")(_per_output(1))


@register("quantized.dropout")
def qdropout(ev):   # inference: the identity on a quantized tensor
    return ZERO


@register("quantized.softmax")
def qsoftmax(ev):
    return softmax_cost(ev.args[0].numel)


@register("quantized.max_pool1d", "quantized.max_pool2d", "aten.quantized_max_pool1d", "aten.quantized_max_pool2d",
          "aten.quantized_max_pool3d")
def qmax_pool(ev):   # (qx, kernel_size, stride, padding, dilation, ceil_mode): window − 1 compares per output
    k = list(ev.args[1])
    nd = int(ev.op.rsplit("pool", 1)[1][0])
    return Cost(elementwise=ev.outputs[0].numel * (prod(k * nd if len(k) == 1 else k) - 1))


@register("quantized.batch_norm", "quantized.batch_norm1d", "quantized.batch_norm2d", "quantized.batch_norm3d",
          "quantized.batch_norm_relu", "quantized.batch_norm1d_relu", "quantized.batch_norm2d_relu",
          "quantized.batch_norm3d_relu")
def qbatch_norm(ev):   # (qx, weight, bias, mean, var, eps, scale, zero_point): inference, folded
    x = ev.args[0]
    relu = x.numel if ev.op.endswith("_relu") else 0
    return batch_norm_cost(x.numel, x.shape[1] if x.ndim > 1 else 1, training=False, weight=True,
                           bias=True) + Cost(elementwise=relu)


@register("quantized.layer_norm")
def qlayer_norm(ev):   # (qx, normalized_shape, weight, bias, eps, scale, zero_point)
    x, shape, w, b = ev.args[:4]
    return layer_norm_cost(x.numel, x.numel // max(prod(shape), 1), weight=w is not None, bias=b is not None)


@register("quantized.group_norm")
def qgroup_norm(ev):   # (qx, num_groups, weight, bias, eps, scale, zero_point)
    x, groups, w, b = ev.args[:4]
    return layer_norm_cost(x.numel, x.shape[0] * groups, weight=w is not None, bias=b is not None)


@register("quantized.instance_norm")
def qinstance_norm(ev):   # (qx, weight, bias, eps, scale, zero_point)
    x, w, b = ev.args[:3]
    return layer_norm_cost(x.numel, x.shape[0] * x.shape[1], weight=w is not None, bias=b is not None)
