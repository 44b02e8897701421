"""Models used by the tests: the worked examples of SPEC.md §2 and an edge-case catalogue
(each named after its edge case). Expected numbers are derived in the tests, not here."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# -- SPEC.md §2 worked examples -------------------------------------------------

def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 20, bias=False), nn.ReLU(), nn.Linear(20, 15, bias=False), nn.ReLU(),
                         nn.Linear(15, 1, bias=False))


def small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(32 * 28 * 28, 10))


class SelfAttention(nn.Module):
    """The tutorial's self-attention block: bias-free q/k/v projections, fc_out with bias."""

    def __init__(self, embed_size: int = 256, heads: int = 8):
        super().__init__()
        self.heads, self.head_dim = heads, embed_size // heads
        self.values = nn.Linear(embed_size, embed_size, bias=False)
        self.keys = nn.Linear(embed_size, embed_size, bias=False)
        self.queries = nn.Linear(embed_size, embed_size, bias=False)
        self.fc_out = nn.Linear(embed_size, embed_size)

    def forward(self, values, keys, queries):
        n, lq = queries.shape[0], queries.shape[1]
        v = self.values(values).reshape(n, -1, self.heads, self.head_dim).transpose(1, 2)
        k = self.keys(keys).reshape(n, -1, self.heads, self.head_dim).transpose(1, 2)
        q = self.queries(queries).reshape(n, lq, self.heads, self.head_dim).transpose(1, 2)
        energy = q @ k.transpose(-2, -1)
        attention = torch.softmax(energy / self.head_dim ** 0.5, dim=-1)
        out = (attention @ v).transpose(1, 2).reshape(n, lq, self.heads * self.head_dim)
        return self.fc_out(out)


class KerasCNN(nn.Module):
    """Conv2d(3, 16, kernel 2) → MaxPool2d(2) → Dense(133) on the channel axis."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 2)
        self.pool = nn.MaxPool2d(2)
        self.dense = nn.Linear(16, 133)

    def forward(self, x):
        return self.dense(self.pool(self.conv(x)).permute(0, 2, 3, 1))


def _double_conv(cin: int, cout: int, bn: bool) -> nn.Sequential:
    layers = []
    for a, b in ((cin, cout), (cout, cout)):
        layers += [nn.Conv2d(a, b, 3, padding=1)] + ([nn.BatchNorm2d(b)] if bn else []) + [nn.ReLU()]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    def __init__(self, in_channels: int = 1, classes: int = 2, widths=(32, 64, 128, 256, 512), bn: bool = False):
        super().__init__()
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.down.append(_double_conv(cin, w, bn))
            cin = w
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(w * 2, w, 2, stride=2))
            self.dec.append(_double_conv(w * 2, w, bn))
        self.head = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


# -- edge cases -----------------------------------------------------------------

class TiedWeights(nn.Module):
    def __init__(self, vocab: int = 50, d: int = 8):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        return self.head(self.embed(ids))


class CalledTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return self.fc(torch.relu(self.fc(x)))


class SharedModule(nn.Module):
    """One Linear registered under two names: it keeps its first (canonical) name."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.second = self.first

    def forward(self, x):
        return self.second(self.first(x))


class FunctionalOnly(nn.Module):
    """No submodules: @, torch.matmul, einsum and scaled_dot_product_attention."""

    def __init__(self, d: int = 16):
        super().__init__()
        self.w = nn.Parameter(torch.randn(d, d))

    def forward(self, x, causal: bool = False):
        a = x @ self.w                                   # (n, l, d) @ (d, d)
        b = torch.matmul(a, self.w)
        c = torch.einsum("nld,nmd->nlm", a, b)           # (n, l, l)
        q = b.unflatten(-1, (2, -1)).transpose(1, 2)      # (n, 2, l, d/2)
        o = F.scaled_dot_product_attention(q, q, q, is_causal=causal)
        return c, o


class KeywordInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x, *, scale: torch.Tensor | None = None):
        y = self.fc(x)
        return y * scale if scale is not None else y


class DictInOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 7)
        self.b = nn.Linear(3, 7)

    def forward(self, batch: dict):
        ya, yb = self.a(batch["a"]), self.b(batch["b"])
        return {"sum": ya + yb, "pair": (ya, yb)}


class NoParameters(nn.Module):
    def forward(self, x):
        return torch.relu(x) * 2 + 1


class Raises(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(4)
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        x = self.bn(x)
        raise RuntimeError("deliberate failure inside forward")


class TrainModeBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(torch.relu(self.bn(self.conv(x))))


# -- attention and transformers for the closed-form tests ------------------------

class GroupedQueryAttention(nn.Module):
    """q, k, v, o projections around F.scaled_dot_product_attention, h_kv ≤ h key/value heads."""

    def __init__(self, d: int, heads: int, kv_heads: int, *, q_bias=False, kv_bias=False, out_bias=False,
                 causal=False, dropout=0.0):
        super().__init__()
        self.heads, self.kv_heads, self.causal, self.dropout = heads, kv_heads, causal, dropout
        e = d // heads
        self.q = nn.Linear(d, d, bias=q_bias)
        self.k = nn.Linear(d, kv_heads * e, bias=kv_bias)
        self.v = nn.Linear(d, kv_heads * e, bias=kv_bias)
        self.o = nn.Linear(d, d, bias=out_bias)

    def forward(self, x, memory, mask=None):
        n, lq, d = x.shape
        q = self.q(x).view(n, lq, self.heads, -1).transpose(1, 2)
        k = self.k(memory).view(n, memory.shape[1], self.kv_heads, -1).transpose(1, 2)
        v = self.v(memory).view(n, memory.shape[1], self.kv_heads, -1).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal,
                                           dropout_p=self.dropout if self.training else 0.0,
                                           enable_gqa=self.kv_heads != self.heads)
        return self.o(y.transpose(1, 2).reshape(n, lq, d))


class TinyDecoder(nn.Module):
    """A decoder-only language model: bias-free projections, a 4·d MLP, pre-norm blocks, causal
    attention, no position embedding, the output head tied to the token embedding."""

    def __init__(self, vocab: int, d: int, layers: int, heads: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(nn.ModuleDict({
            "norm1": nn.LayerNorm(d), "qkv": nn.Linear(d, 3 * d, bias=False), "proj": nn.Linear(d, d, bias=False),
            "norm2": nn.LayerNorm(d), "fc": nn.Linear(d, 4 * d, bias=False), "out": nn.Linear(4 * d, d, bias=False),
        }) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.embed.weight
        self.heads = heads

    def forward(self, ids):
        x = self.embed(ids)
        n, t, d = x.shape
        for b in self.blocks:
            q, k, v = b["qkv"](b["norm1"](x)).view(n, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + b["proj"](a.transpose(1, 2).reshape(n, t, d))
            x = x + b["out"](F.gelu(b["fc"](b["norm2"](x))))
        return self.head(self.norm(x))


class CachesInForward(nn.Module):
    """Caches a tensor it computes in forward in a dict attribute and sets another attribute,
    as timm's LeViT does with its attention biases."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.randn(4))
        self.cache = {}

    def forward(self, x):
        key = str(x.device)
        if key not in self.cache:
            self.cache[key] = self.bias * 2
        self.last_shape = x.shape
        return x + self.cache[key]
