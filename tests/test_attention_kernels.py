"""Every scaled-dot-product-attention kernel PyTorch can dispatch to, called with its own
argument layout on fake tensors (CUDA kernels need only their meta functions, no GPU)."""

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

import flopmeter

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
