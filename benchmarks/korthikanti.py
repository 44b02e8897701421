"""Activation memory of one Megatron transformer layer in a training step, traced on fake tensors
under a GPU's kernels, next to Korthikanti et al. 2022's count (fp16, no recomputation, t = 1):
34·s·b·h + 5·a·s²·b bytes kept for backward, plus the LayerNorms' float32 mean and rstd (16·s·b).

- ``unfused``: the attention written out (QKᵀ, softmax, dropout, ·V), as the paper counts it;
- ``flash``: ``F.scaled_dot_product_attention`` with the same dropout, which an A100 runs as
  flash attention: the softmax, its mask and its output are never stored, the kernel keeps its
  output (the projection's input too) and a float32 logsumexp per query row and head, and the
  dropout's RNG state (24 bytes): 34·s·b·h + 4·a·s·b + 24;
- ``cpu``: the unfused layer on the CPU's kernels (2-byte dropout masks, float16 LayerNorm
  statistics): 36·s·b·h + 6·a·s²·b + 8·s·b.

    python benchmarks/korthikanti.py      # writes benchmarks/results/korthikanti.md
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import flopmeter

OUT = Path(__file__).with_name("results") / "korthikanti.md"
SIZES = [(64, 2, 64, 4), (2048, 1, 4096, 32), (2048, 1, 12288, 96)]      # (s, b, h, a): tiny, 7B-like, GPT-3 175B


class GPTLayer(nn.Module):
    """Pre-LN Megatron layer on (s, b, h) (Korthikanti et al. 2022, fig. 2)."""

    def __init__(self, h, a, p=0.1, fused=False):
        super().__init__()
        self.h, self.a, self.p, self.fused = h, a, p, fused
        self.ln1, self.ln2 = nn.LayerNorm(h), nn.LayerNorm(h)
        self.q, self.k, self.v, self.proj = (nn.Linear(h, h) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(h, 4 * h), nn.Linear(4 * h, h)
        self.attn_drop, self.drop1, self.drop2 = nn.Dropout(p), nn.Dropout(p), nn.Dropout(p)

    def heads(self, t):
        s, b, _ = t.shape
        return t.view(s, b, self.a, self.h // self.a).permute(1, 2, 0, 3)

    def forward(self, x):
        s, b, h = x.shape
        y = self.ln1(x)
        q, k, v = self.heads(self.q(y)), self.heads(self.k(y)), self.heads(self.v(y))
        if self.fused:
            o = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p, is_causal=True)
        else:
            o = self.attn_drop(torch.softmax((q * (1 / math.sqrt(h // self.a))) @ k.transpose(-2, -1), dim=-1)) @ v
        x = x + self.drop1(self.proj(o.permute(2, 0, 1, 3).reshape(s, b, h)))
        return x + self.drop2(self.fc2(F.gelu(self.fc1(self.ln2(x)))))


def saved(s, b, h, a, device, fused) -> tuple[int, str]:
    with torch.device("meta"):
        layer = GPTLayer(h, a, fused=fused).half()
    x = torch.randn(s, b, h, dtype=torch.float16, device="meta")
    r = flopmeter.count(layer, x, options=flopmeter.Options(device=device, training=True))
    kernels = ", ".join(f"{g['backend']} ×{g['calls']}" for g in r.kernels["attention"]) or "written out"
    return r.trace.extra["training"]["saved_bytes"], kernels


def main() -> None:
    rows = ["| s, b, h, a | run | attention | traced (bytes) | closed form | bytes |",
            "|---|---|---|---:|---|---:|"]
    for s, b, h, a in SIZES:
        cases = [("unfused, A100 kernels", "cuda:a100", False, "34sbh + 5as²b + 16sb",
                  34 * s * b * h + 5 * a * s * s * b + 16 * s * b),
                 ("fused, A100 kernels", "cuda:a100", True, "34sbh + 4asb + 24 + 16sb",
                  34 * s * b * h + 4 * a * s * b + 24 + 16 * s * b),
                 ("unfused, CPU kernels", "cpu", False, "36sbh + 6as²b + 8sb",
                  36 * s * b * h + 6 * a * s * s * b + 8 * s * b)]
        for label, device, fused, form, expected in cases:
            got, kernels = saved(s, b, h, a, device, fused)
            mark = "" if got == expected else " ≠"
            rows.append(f"| {s}, {b}, {h}, {a} | {label} | {kernels} | {got:,} | {form}{mark} | {expected:,} |")
    text = (f"# Activation memory of one transformer layer (torch {torch.__version__})\n\n"
            "Bytes saved for backward in one training step (fp16, no recomputation, t = 1), traced by "
            "`python benchmarks/korthikanti.py`.\n\n" + "\n".join(rows) + "\n")
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
