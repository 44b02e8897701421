"""Every scaled-dot-product-attention kernel PyTorch can dispatch to, called with its own
argument layout on fake tensors (CUDA kernels need only their meta functions, no GPU)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

import flopmeter
from flopmeter import Cost, Options

aten = torch.ops.aten
N, H, L, S, E = 2, 4, 5, 7, 16
CORE = 2 * N * H * L * S * E            # scores (B·L·S·E) + weighted sum (B·L·S·E)
SCORES = N * H * L * S


class Direct(nn.Module):
    def __init__(self, op, *extra, **kw):
        super().__init__()
        self.op, self.extra, self.kw = op, extra, kw

    def forward(self, q, k, v):
        return self.op(q, k, v, *self.extra, **self.kw)


def _qkv(device, layout="bhld", dtype=torch.float16):
    shape = (lambda n: (N, H, n, E)) if layout == "bhld" else (lambda n: (N, n, H, E))
    with FakeTensorMode():
        return tuple(torch.empty(shape(n), device=device, dtype=dtype) for n in (L, S, S))


def _bias(device):
    with FakeTensorMode():
        return torch.empty(N, H, L, S, device=device, dtype=torch.float16)


CASES = {
    "flash_cpu": ("cpu", "bhld", lambda b: Direct(aten._scaled_dot_product_flash_attention_for_cpu, 0.0, True), False),
    "flash_cpu_mask": ("cpu", "bhld", lambda b: Direct(aten._scaled_dot_product_flash_attention_for_cpu, 0.0, False,
                                                       attn_mask=b), True),
    "flash": ("cuda", "bhld", lambda b: Direct(aten._scaled_dot_product_flash_attention, 0.0, True), False),
    "efficient": ("cuda", "bhld", lambda b: Direct(aten._scaled_dot_product_efficient_attention, None, False), False),
    "efficient_bias": ("cuda", "bhld", lambda b: Direct(aten._scaled_dot_product_efficient_attention, b, False), True),
    "cudnn": ("cuda", "bhld", lambda b: Direct(aten._scaled_dot_product_cudnn_attention, None, False, 0.0, True), False),
    "flash_forward": ("cuda", "blhd", lambda b: Direct(aten._flash_attention_forward, None, None, L, S, 0.0, True,
                                                       False), False),
    "efficient_forward": ("cuda", "blhd", lambda b: Direct(aten._efficient_attention_forward, None, None, None, L, S,
                                                           0.0, 1), False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_sdpa_kernel(name):
    device, layout, make, masked = CASES[name]
    r = flopmeter.count(make(_bias(device)), *_qkv(device, layout))
    assert r.unsupported == {}
    assert r.macs == CORE
    assert r.total.dots == N * H * L * S + N * H * L * E       # one per score, one per output element
    # scale + softmax (4 + 1 exp per score) [+ mask add]
    assert r.total.elementwise == SCORES + 4 * SCORES + (SCORES if masked else 0)
    assert r.total.transcendental == SCORES


# is_causal alignment per kernel: PyTorch's SDPA is top-left, the flash kernels bottom-right
CAUSAL = {"flash_cpu": "top_left", "flash": "bottom_right", "cudnn": "top_left", "flash_forward": "bottom_right",
          "efficient_forward": "top_left"}      # custom_mask_type 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_sdpa_kernel_causal_exact(name):
    device, layout, make, masked = CASES[name]
    r = flopmeter.count(make(_bias(device)), *_qkv(device, layout), options=Options(causal="exact"))
    m = min(L, S)                                            # L = 5 queries, S = 7 keys
    pairs, rows = {"top_left": (m * (m + 1) // 2 + (L - m) * S, L),       # query i sees keys j ≤ i
                   "bottom_right": (m * (m + 1) // 2 + m * (S - m), m),   # query i sees keys j ≤ i + S − L
                   None: (L * S, L)}[CAUSAL.get(name)]
    assert r.causal == "exact"
    assert r.macs == 2 * N * H * pairs * E
    assert r.total.dots == N * H * pairs + N * H * rows * E
    assert r.total.elementwise == N * H * pairs * (1 + 4 + (1 if masked else 0))
    assert r.total.transcendental == N * H * pairs


@pytest.mark.parametrize("l, s", [(5, 7), (7, 5), (6, 6)])
def test_causal_exact_counts_the_lower_triangle_on_cpu(l, s):
    class Causal(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    q, k = torch.randn(N, H, l, E), torch.randn(N, H, s, E)
    full = flopmeter.count(Causal(), q, k, k)
    exact = flopmeter.count(Causal(), q, k, k, options=Options(causal="exact"))
    assert full.macs == 2 * N * H * l * s * E
    pairs = sum(min(i + 1, s) for i in range(l))             # Σ_{i<L} min(i + 1, S)
    assert exact.macs == 2 * N * H * pairs * E
    if l == s:
        assert pairs == l * (l + 1) // 2


def test_causal_exact_keeps_a_users_own_attention_formula():
    registry = flopmeter.REGISTRY.copy()
    mine = lambda ev: Cost(macs=1)                           # noqa: E731
    registry.override("aten._scaled_dot_product_flash_attention_for_cpu", mine)
    q = torch.randn(N, H, L, E)
    r = flopmeter.count(Direct(aten._scaled_dot_product_flash_attention_for_cpu, 0.0, True), q, q, q,
                        options=Options(causal="exact", registry=registry))
    assert r.macs == 1


def test_unknown_causal_counting_is_an_options_error():
    with pytest.raises(flopmeter.OptionsError, match="causal"):
        Options(causal="half")


@pytest.mark.parametrize("kwargs", [{}, {"need_weights": False}, {"average_attn_weights": False},
                                    {"key_padding_mask": "kpm"}, {"attn_mask": "mask", "key_padding_mask": "kpm"}])
def test_native_multi_head_attention_counts_like_the_unfused_path(kwargs):
    # Returning weights, both paths scale q (N·L·d) instead of the scores (N·h·L·L)
    n, l, d, h = 2, 5, 8, 2
    mha = nn.MultiheadAttention(d, h, batch_first=True).eval()
    x = torch.randn(n, l, d)
    masks = {"kpm": torch.zeros(n, l, dtype=torch.bool), "mask": torch.zeros(l, l, dtype=torch.bool)}
    kwargs = {k: masks[v] if isinstance(v, str) else v for k, v in kwargs.items()}
    fused = flopmeter.count(mha, x, x, x, kwargs=kwargs)
    unfused = flopmeter.count(mha, x, x, x, kwargs=kwargs, options=Options(inference=False))
    assert "aten._native_multi_head_attention" in fused.by_op()
    assert "aten._native_multi_head_attention" not in unfused.by_op()
    for field in ("macs", "dots", "elementwise", "transcendental"):
        assert getattr(fused.total, field) == getattr(unfused.total, field)
