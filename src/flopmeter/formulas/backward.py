"""Backward ops: the kernels autograd runs in ``loss.backward()``.

Counting rules (n = elements of the forward input, g = gradient of the output):

- ``convolution_backward``: only the results its ``output_mask`` asks for. Grad input is the
  transposed convolution of g with the weight (for a transposed forward: a plain one), the
  forward's MACs; grad weight is one dot product per weight element over N·output positions,
  again the forward's MACs; grad bias sums g over N and the positions (numel(g) − C_out adds).
- attention kernels (flash, efficient, CPU flash, cuDNN): the scores q·kᵀ recomputed (these
  kernels keep only the log-sum-exp, not the L×S matrix; B·L·S·E MACs), dV = Pᵀ·g, dP = g·Vᵀ,
  dQ = dS·K, dK = dSᵀ·Q — B·L·S·(3E + 2Ev) MACs, as PyTorch's FlopCounterMode counts them.
  Elementwise: P recomputed from the log-sum-exp (scale, subtract, exp per score), the row
  sums Σ(g·O) (2·B·L·Ev), dS = P·(dP − Σ) (2 per score), scaling (1), mask and dropout as forward.
- ``native_layer_norm_backward`` / ``native_batch_norm_backward`` (training) /
  ``native_group_norm_backward``: x̂ = (x − μ)·σ⁻¹ again (2n); grad input: g·w (n, with a
  weight), Σg and Σg·x̂ per group (3n), combine g − Σg/N − x̂·Σg·x̂/N and scale by σ⁻¹ (4n);
  grad weight: Σ g·x̂ per channel (2n, n when the grad input already formed g·x̂… counted 2n);
  grad bias: Σ g (n). Batch norm in eval mode: grad input is g·w·σ⁻¹ (n).
- pooling: max pooling scatters each g into the input (one add per g element); average
  pooling adds g/window to every window element (window per output); adaptive average
  pooling: one per (output, window element) pair.
- ``embedding_dense_backward``: one add per element of g (scatter-add into the table).
- softmax backward: y·(g − Σ g·y): 4 per element; log-softmax backward g − exp(y)·Σg: 3 per
  element + one exp. GELU backward: Φ(x) (erf) and φ(x) (exp) — 2 transcendental + 4;
  SiLU backward: σ(x) + 4; sigmoid/tanh backward: 3; dropout backward: 2; other pointwise
  backward ops (``threshold_backward``, …): one per element by the generic pointwise rule.
- the gradient of a view (``select_backward``, ``slice_backward``, …): bytes only.
- ``nll_loss_backward`` writes −1/N at one position per row (rows); the forward losses are
  in ``formulas.loss``.
"""

from __future__ import annotations

from math import prod

from ..cost import ZERO, Cost
from .conv import conv_cost
from .matmul import matmul_cost
from .memory import data_movement
from .reduce import _window_total
from .registry import register


def _mask(ev, default=(True, True, True)):
    m = ev.arg("output_mask", None)
    return tuple(bool(x) for x in m) if m is not None else default


@register("aten.convolution_backward")
def convolution_backward(ev):
    g, x, w = ev.arg("grad_output"), ev.arg("input"), ev.arg("weight")
    transposed, groups = bool(ev.arg("transposed")), ev.arg("groups")
    stride, padding, dilation = ev.arg("stride"), ev.arg("padding"), ev.arg("dilation")
    want_input, want_weight, want_bias = _mask(ev)
    forward = conv_cost(x.shape, w.shape, g.shape, transposed=transposed, groups=groups, bias=False,
                        stride=stride, padding=padding, dilation=dilation)
    cost = ZERO
    if want_input:   # the adjoint convolution: g → input shape
        cost += conv_cost(g.shape, w.shape, x.shape, transposed=not transposed, groups=groups, bias=False,
                          stride=stride, padding=padding, dilation=dilation)
    if want_weight:
        cost += Cost(macs=forward.macs, dots=w.numel)
    if want_bias:
        c_out = g.shape[1]
        cost += Cost(elementwise=g.numel - c_out)
    return cost


# -- attention ----------------------------------------------------------------

def attention_backward_cost(b: int, l: int, s: int, e: int, ev_: int, *, mask: bool = False,
                            dropout: bool = False, recompute: bool = True) -> Cost:
    scores = b * l * s
    grads = (matmul_cost(b, s, l, ev_)        # dV = Pᵀ g
             + matmul_cost(b, l, ev_, s)      # dP = g Vᵀ
             + matmul_cost(b, l, s, e)        # dQ = dS K
             + matmul_cost(b, s, l, e))       # dK = dSᵀ Q
    extra = Cost(elementwise=2 * b * l * ev_ + 3 * scores + (scores if mask else 0) + (2 * scores if dropout else 0))
    if recompute:
        grads += matmul_cost(b, l, e, s) + Cost(elementwise=2 * scores + (scores if mask else 0),
                                                transcendental=scores)
    return grads + extra


def _sdpa_backward(layout: str, mask_arg: str | None):
    def formula(ev):
        q, k, v = ev.arg("query"), ev.arg("key"), ev.arg("value")
        if layout == "bhld":
            b, l, s, e = prod(q.shape[:-2]), q.shape[-2], k.shape[-2], q.shape[-1]
        else:
            n, l, h, e = q.shape[-4:] if q.ndim == 4 else (1, *q.shape)
            b, s = n * h, k.shape[-3]
        mask = mask_arg is not None and ev.arg(mask_arg, None) is not None
        return attention_backward_cost(b, l, s, e, v.shape[-1], mask=mask, dropout=(ev.arg("dropout_p") or 0) > 0)
    return formula


for _name, _layout, _mask_arg in (
        ("aten._scaled_dot_product_flash_attention_for_cpu_backward", "bhld", "attn_mask"),
        ("aten._scaled_dot_product_flash_attention_backward", "bhld", None),
        ("aten._scaled_dot_product_efficient_attention_backward", "bhld", "attn_bias"),
        ("aten._scaled_dot_product_cudnn_attention_backward", "bhld", "attn_bias"),
        ("aten._scaled_dot_product_fused_attention_overrideable_backward", "bhld", "attn_bias"),
        ("aten._flash_attention_backward", "blhd", None),
        ("aten._efficient_attention_backward", "blhd", "bias")):
    register(_name)(_sdpa_backward(_layout, _mask_arg))


# -- normalisation ------------------------------------------------------------

def norm_backward_cost(n: int, *, want_input: bool, want_weight: bool, want_bias: bool, weight: bool,
                       train: bool = True) -> Cost:
    if not train:      # eval batch norm: x̂ from running statistics, grad input g·w·σ⁻¹
        ew = (n if want_input else 0) + (3 * n if want_weight else 0) + (n if want_bias else 0)
        return Cost(elementwise=ew)
    ew = 2 * n if (want_input or want_weight) else 0                       # x̂
    if want_input:
        ew += (n if weight else 0) + 3 * n + 4 * n
    if want_weight:
        ew += 2 * n
    if want_bias:
        ew += n
    return Cost(elementwise=ew)


@register("aten.native_layer_norm_backward")
def native_layer_norm_backward(ev):
    want_input, want_weight, want_bias = _mask(ev)
    return norm_backward_cost(ev.arg("input").numel, want_input=want_input, want_weight=want_weight,
                              want_bias=want_bias, weight=ev.arg("weight") is not None)


@register("aten.native_batch_norm_backward", "aten.cudnn_batch_norm_backward", "aten.miopen_batch_norm_backward",
          "aten.batch_norm_backward")
def native_batch_norm_backward(ev):
    want_input, want_weight, want_bias = _mask(ev)
    train = bool(ev.arg("train", ev.arg("training", True)))
    return norm_backward_cost(ev.arg("input").numel, want_input=want_input, want_weight=want_weight,
                              want_bias=want_bias, weight=ev.arg("weight") is not None, train=train)


@register("aten.native_group_norm_backward")
def native_group_norm_backward(ev):
    want_input, want_weight, want_bias = _mask(ev)
    return norm_backward_cost(ev.arg("input").numel, want_input=want_input, want_weight=want_weight,
                              want_bias=want_bias, weight=ev.arg("weight") is not None)


@register("aten._fused_rms_norm_backward")
def fused_rms_norm_backward(ev):   # like layer norm without the mean: x̂ = x·r (n), g·w, Σg·x̂ (2n), combine (3n)
    want_input, want_weight = _mask(ev, (True, True))[:2]
    n = ev.arg("input").numel
    weight = ev.arg("weight") is not None
    ew = n + ((n if weight else 0) + 2 * n + 3 * n if want_input else 0) + (2 * n if want_weight else 0)
    return Cost(elementwise=ew)


# -- pooling, embedding, losses, pointwise ---------------------------------------

def _g(ev) -> int:
    return ev.arg("grad_output").numel


register("aten.max_pool2d_with_indices_backward", "aten.max_pool3d_with_indices_backward",
         "aten.adaptive_max_pool2d_backward", "aten.adaptive_max_pool3d_backward",
         "aten.embedding_dense_backward", "aten.embedding_backward")(lambda ev: Cost(elementwise=_g(ev)))


def _avg_pool_backward(ev):
    kernel = ev.arg("kernel_size")
    nd = len(ev.arg("self").shape) - 2
    k = list(kernel) if isinstance(kernel, (list, tuple)) else [kernel]
    return Cost(elementwise=_g(ev) * prod(k * nd if len(k) == 1 else k))


register("aten.avg_pool2d_backward", "aten.avg_pool3d_backward")(_avg_pool_backward)


def _adaptive_avg_backward(ev):
    x, g = ev.arg("self"), ev.arg("grad_output")
    nd = 2 if "2d" in ev.op else 3
    lead = prod(x.shape[:-nd])
    return Cost(elementwise=lead * prod(_window_total(x.shape[-nd + d], g.shape[-nd + d]) for d in range(nd)))


register("aten._adaptive_avg_pool2d_backward", "aten._adaptive_avg_pool3d_backward")(_adaptive_avg_backward)


@register("aten._softmax_backward_data")
def softmax_backward(ev):
    return Cost(elementwise=4 * ev.arg("output").numel)


@register("aten._log_softmax_backward_data")
def log_softmax_backward(ev):
    n = ev.arg("output").numel
    return Cost(elementwise=3 * n, transcendental=n)


@register("aten.gelu_backward")
def gelu_backward(ev):
    n = _g(ev)
    return Cost(elementwise=4 * n, transcendental=2 * n)


@register("aten.silu_backward")
def silu_backward(ev):
    n = _g(ev)
    return Cost(elementwise=4 * n, transcendental=n)


register("aten.sigmoid_backward", "aten.tanh_backward")(lambda ev: Cost(elementwise=3 * _g(ev)))
register("aten.native_dropout_backward")(lambda ev: Cost(elementwise=2 * _g(ev)))
register("aten.hardtanh_backward", "aten.hardswish_backward", "aten.hardsigmoid_backward",
         "aten.leaky_relu_backward", "aten.elu_backward", "aten.softplus_backward")(lambda ev: Cost(elementwise=_g(ev)))


# the gradient of a view: zeros of the base's shape with g copied into the slice (bytes only)
register("aten.select_backward", "aten.slice_backward", "aten.diagonal_backward", "aten.unfold_backward",
         "aten.as_strided_scatter")(data_movement)


def _rows(ev) -> int:
    x = ev.arg("self")
    return x.shape[0] if x.ndim > 1 else 1


register("aten.nll_loss_backward", "aten.nll_loss2d_backward")(lambda ev: Cost(elementwise=_rows(ev)))
