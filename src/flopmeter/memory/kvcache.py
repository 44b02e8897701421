"""The KV cache a decoder really builds, measured on fake tensors.

Nothing here reads the config's head counts: a fake forward with ``use_cache=True`` returns
the model's own cache object (a Hugging Face ``Cache`` with one layer object per decoder layer,
an ``EncoderDecoderCache`` of two of them, or legacy tuples of (key, value) per layer), and
its tensors are measured. Grouped-query attention, sliding windows (Hugging Face keeps
``window − 1`` tokens per sliding layer), per-layer mixes of both and quantised caches come out
as the model builds them.

Bytes are the cache tensors' own sizes (``numel × itemsize``), the memory a decoding loop
keeps per step. (At prefill some models' keys and values are still views of a larger
projection output, e.g. GPT-2's fused ``c_attn``; the activation timeline counts that storage.)
Per token: the cache of a one-token run at batch 1. At a context: the cache of a prefill of
that many tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

_KV_NAMES = ("keys", "values", "key_cache", "value_cache")


def nbytes(t: Any) -> int:
    """Bytes of a tensor or of a recorded tensor reference."""
    if isinstance(t, torch.Tensor):
        return t.numel() * t.element_size()
    return int(t.nbytes)


def _is_tensor(v: Any) -> bool:
    return isinstance(v, torch.Tensor) or (hasattr(v, "shape") and hasattr(v, "dtype") and hasattr(v, "nbytes")
                                           and not isinstance(v, type))


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def _dtype(t: Any) -> str:
    return str(t.dtype).removeprefix("torch.")


@dataclass(frozen=True)
class KVLayer:
    index: int
    kind: str                     # the cache layer's class ("DynamicLayer", "DynamicSlidingWindowLayer", …)
    attention: str                # "self" or "cross"
    key_shape: tuple[int, ...]
    value_shape: tuple[int, ...]
    dtype: str
    bytes: int                    # keys + values
    other_bytes: int = 0          # other tensors the layer keeps (a window size held as a tensor, …)

    def to_dict(self) -> dict:
        return {"index": self.index, "kind": self.kind, "attention": self.attention, "key_shape": list(self.key_shape),
                "value_shape": list(self.value_shape), "dtype": self.dtype, "bytes": self.bytes,
                "other_bytes": self.other_bytes}


@dataclass
class KVCache:
    """The cache of one run: ``batch`` sequences of ``context`` tokens, by layer."""

    batch: int
    context: int
    layers: list[KVLayer] = field(default_factory=list)
    per_token: int | None = None  # bytes of the cache of one token at batch 1 (a run of its own)

    @property
    def bytes(self) -> int:
        return sum(layer.bytes + layer.other_bytes for layer in self.layers)

    def to_dict(self) -> dict:
        return {"batch": self.batch, "context": self.context, "bytes": self.bytes, "per_token": self.per_token,
                "layers": [layer.to_dict() for layer in self.layers]}


def find_cache(output: Any) -> Any:
    """The cache object inside a model's (recorded) output, or None."""
    if isinstance(output, dict):
        for key in ("past_key_values", "cache"):
            if output.get(key) is not None:
                return output[key]
        for value in output.values():
            if _looks_like_cache(value):
                return value
    if isinstance(output, (list, tuple)):
        for value in output:
            if _looks_like_cache(value):
                return value
    return None


def _looks_like_cache(value: Any) -> bool:
    return type(value).__name__.endswith("Cache") or hasattr(value, "self_attention_cache")


def _tensors(value: Any, depth: int = 0) -> list:
    if _is_tensor(value):
        return [value]
    if depth > 3:
        return []
    if isinstance(value, dict):
        items = value.values()
    elif isinstance(value, (list, tuple)):
        items = value
    elif hasattr(value, "__dict__") and not isinstance(value, (type, torch.device, torch.dtype)):
        items = vars(value).values()
    else:
        return []
    return [t for v in items for t in _tensors(v, depth + 1)]


def _layer(index: int, obj: Any, attention: str) -> KVLayer | None:
    if isinstance(obj, (list, tuple)):                      # legacy (key, value[, …]) per layer
        kv = [t for t in obj if _is_tensor(t)]
        if len(kv) < 2:
            return None
        k, v, rest = kv[0], kv[1], kv[2:]
        kind = "tuple"
    else:
        attrs = vars(obj)
        k = attrs.get("keys", attrs.get("key_cache"))
        v = attrs.get("values", attrs.get("value_cache"))
        if not (_is_tensor(k) and _is_tensor(v)):
            return None
        rest = [t for name, val in attrs.items() if name not in _KV_NAMES for t in _tensors(val)]
        kind = type(obj).__name__
    return KVLayer(index, kind, attention, _shape(k), _shape(v), _dtype(k), nbytes(k) + nbytes(v),
                   sum(nbytes(t) for t in rest))


def cache_layers(cache: Any, attention: str = "self") -> list[KVLayer]:
    """One entry per layer of a cache object (self-attention layers, then cross-attention ones)."""
    if cache is None:
        return []
    if hasattr(cache, "self_attention_cache"):
        return (cache_layers(cache.self_attention_cache, "self")
                + cache_layers(getattr(cache, "cross_attention_cache", None), "cross"))
    layers = getattr(cache, "layers", None)
    if layers is None and isinstance(cache, (list, tuple)):
        layers = cache
    out = []
    for i, obj in enumerate(layers or ()):
        layer = _layer(i, obj, attention)
        if layer is not None:
            out.append(layer)
    return out


def token_inputs(model: torch.nn.Module, batch: int, tokens: int) -> tuple[tuple, dict]:
    """Token ids (meta) for a decoder run with ``use_cache=True``; encoder-decoders get
    decoder ids of the same length."""
    ids = torch.zeros(batch, tokens, dtype=torch.long, device="meta")
    kwargs: dict = {"use_cache": True}
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        kwargs["decoder_input_ids"] = ids
    return (ids,), kwargs


def cache_of_run(model: torch.nn.Module, batch: int, tokens: int, device: str | None = None) -> list[KVLayer]:
    """The cache layers of a fake forward of ``batch`` × ``tokens`` token ids."""
    from ..api import Options, run

    args, kwargs = token_inputs(model, batch, tokens)
    trace, _ = run(model, args, kwargs, None, Options(mode="fake", device=device))
    return cache_layers(find_cache(root_output(trace)))


def root_output(trace) -> Any:
    outs = trace.outputs.get("") if isinstance(trace.outputs, dict) else None
    return outs[0] if outs else None


def kv_cache(model: torch.nn.Module, *, context: int, batch: int = 1, device: str | None = None,
             layers: list[KVLayer] | None = None) -> KVCache | None:
    """The KV cache of a prefill of ``context`` tokens at ``batch`` (or the ``layers`` of a run
    already made at that size), and the bytes per token from a one-token run; None when the
    model builds no cache."""
    if layers is None:
        layers = cache_of_run(model, batch, context, device)
    if not layers:
        return None
    one = layers if (batch, context) == (1, 1) else cache_of_run(model, 1, 1, device)
    per_token = sum(layer.bytes for layer in one) if one else None
    return KVCache(batch, context, layers, per_token)


def per_layer_tokens(layer: KVLayer) -> int:
    """Tokens kept by a layer in Hugging Face's (batch, heads, tokens, head dim) layout."""
    return layer.key_shape[-2] if len(layer.key_shape) >= 2 else math.prod(layer.key_shape)


__all__ = ["KVCache", "KVLayer", "cache_layers", "find_cache", "kv_cache", "token_inputs"]
