"""LLM inference phases for Hugging Face decoders: prefill, then decode with the KV cache.

- **prefill**: one forward of ``batch × prompt`` tokens with ``use_cache=True`` and, as
  ``generate()`` does, ``logits_to_keep=1`` (the LM head only for the last position);
- **decode** at position ``p`` (the new token is the p-th, so it attends to p keys: p − 1
  in the cache and itself): one forward of ``batch × 1`` token with a ``DynamicCache`` holding
  p − 1 positions per layer. The cache is filled inside a small wrapper (:class:`DecodeStep`)
  so that its tensors are the run's own fakes; its filling is bytes only and is left out of
  the decode figures (only the model's own subtree counts).

Decode cost is traced at a few positions, not once per token: per-token cost is affine in the
position (projections, MLP and head are constant; attention is linear in the keys), so the
total over the new tokens is exact from two traces — a third, in the middle, checks it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .api import Options, count
from .cost import Cost
from .errors import InputError


class DecodeStep(nn.Module):
    """``model(ids, past_key_values=cache of cached positions)``, the cache built in forward."""

    def __init__(self, model: nn.Module, cached: int):
        super().__init__()
        self.model = model
        self.cached = cached

    def forward(self, ids: torch.Tensor):
        from transformers import DynamicCache

        cfg = self.model.config
        heads = cfg.num_attention_heads
        kv = getattr(cfg, "num_key_value_heads", None) or heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        dtype = next(self.model.parameters()).dtype
        cache = DynamicCache(config=cfg)
        if self.cached:
            shape = (ids.shape[0], kv, self.cached, head_dim)
            for layer in range(cfg.num_hidden_layers):     # no local keeps a layer's tensors past its update
                cache.update(torch.zeros(shape, dtype=dtype, device=ids.device),
                             torch.zeros(shape, dtype=dtype, device=ids.device), layer)
        position = torch.full((1,), self.cached, dtype=torch.long, device=ids.device)
        return self.model(ids, **{_cache_arg(self.model): cache}, use_cache=True, cache_position=position).logits


def _cache_arg(model: nn.Module) -> str:
    """``cache`` in newer transformers, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _prefill_kwargs(model: nn.Module) -> dict:
    """As ``generate()`` calls the prefill: with the cache on and logits for the last position only."""
    kwargs = {"use_cache": True}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = 1
    return kwargs


@dataclass
class Phase:
    tokens: int                # tokens processed (batch × length)
    cost: Cost

    def per_token(self, convention: str = "dot") -> dict:
        return {"flops": self.cost.flops(convention) // self.tokens,
                "bytes": (self.cost.bytes_read + self.cost.bytes_written) // self.tokens}


@dataclass
class Generation:
    """Prefill and decode of ``batch × (prompt + new)`` tokens."""

    model: str
    batch: int
    prompt: int
    new: int
    convention: str
    prefill: Phase
    decode_at: dict[int, Phase] = field(default_factory=dict)     # position → one decode step
    decode_total: Cost = field(default_factory=Cost)
    weight_bytes: int = 0
    kv_bytes_per_position: int = 0      # KV cache bytes one position adds (all layers, the batch)
    memory: GenerationMemory | None = None

    def table(self, raw: bool = False):
        """Prefill, each traced decode step and the decode total: tokens, FLOPs, per token."""
        from .render.tables import Table
        t = Table(["phase", "tokens", f"FLOPs ({self.convention})", "FLOPs/token", "bytes/token"],
                  [False, True, True, True, True])
        rows = [("prefill", self.prefill)] + [(f"decode @ position {p}", ph) for p, ph in self.decode_at.items()]
        rows.append((f"decode {self.prompt + 1}…{self.prompt + self.new}", Phase(self.batch * self.new, self.decode_total)))
        for label, ph in rows:
            per = ph.per_token(self.convention)
            t.rows.append([label, ph.tokens, ph.cost.flops(self.convention), per["flops"], per["bytes"]])
        t.footer = [("weights", f"{self.weight_bytes:,} B"),
                    ("KV cache", f"{self.kv_bytes_per_position:,} B per position (batch {self.batch})")]
        if self.memory is not None:
            t.footer += self.memory.lines(raw)
        return t

    def to_dict(self) -> dict:
        return {"model": self.model, "batch": self.batch, "prompt": self.prompt, "new": self.new,
                "convention": self.convention,
                "prefill": {"tokens": self.prefill.tokens, **self.prefill.cost.to_dict(),
                            "flops": self.prefill.cost.flops(self.convention),
                            "per_token": self.prefill.per_token(self.convention)},
                "decode": {"tokens": self.batch * self.new, **self.decode_total.to_dict(),
                           "flops": self.decode_total.flops(self.convention),
                           "per_token_at": {str(p): ph.per_token(self.convention) for p, ph in self.decode_at.items()}},
                "weight_bytes": self.weight_bytes, "kv_bytes_per_position": self.kv_bytes_per_position,
                **({"memory": self.memory.to_dict()} if self.memory is not None else {})}


@dataclass
class GenerationMemory:
    """Memory of a generation: the peak of the prefill (P tokens, the KV cache it builds and the
    last position's logits) and of the last decode step (the cache at P + N positions); the
    larger of the two is what the generation needs."""

    weights: str                         # the weight format the peaks are in
    prefill: int
    prefill_at: str                      # the module (and op) at the prefill's peak
    decode: int
    decode_at: str
    fit: object = None                   # memory.Fit of the larger peak
    search: object = None                # memory.Search of the largest batch
    kernels: dict | None = None          # the prefill's kernels record (Report.kernels)
    assumptions: object = None           # analyses.assumptions.Assumptions of the prefill (and the budget)

    @property
    def total(self) -> int:
        return max(self.prefill, self.decode)

    def lines(self, raw: bool = False) -> list[tuple[str, str]]:
        from .render.memory import budget_line, fit_line, search_line
        from .render.units import human_unit
        out = [("prefill peak", f"{human_unit(self.prefill, 'B', raw)} at {self.prefill_at}"),
               ("decode peak", f"{human_unit(self.decode, 'B', raw)} at {self.decode_at} (the last step)")]
        if self.fit is not None:
            out += [("budget", budget_line(self.fit.budget, raw)), ("fits", fit_line(self.fit, raw))]
        if self.search is not None:
            out.append(("max batch", search_line(self.search, raw)))
        if self.kernels is not None:
            from .render.kernels import record_items
            out += record_items(self.kernels, budget=getattr(getattr(self.fit, "budget", None), "device", None), raw=raw)
        if self.assumptions is not None:
            out += self.assumptions.lines()
        return out

    def to_dict(self) -> dict:
        d = {"weights": self.weights, "prefill_peak": self.prefill, "prefill_peak_at": self.prefill_at,
             "decode_peak": self.decode, "decode_peak_at": self.decode_at, "total": self.total}
        if self.fit is not None:
            d["fits"] = self.fit.to_dict()
        if self.search is not None:
            d["largest"] = {"batch": self.search.to_dict()}
        if self.kernels is not None:
            d["kernels"] = self.kernels
        if self.assumptions is not None:
            d["assumptions"] = self.assumptions.to_dict()
        return d


def generation_peaks(model: nn.Module, prompt: int, new: int, *, batch: int = 1, weights: str = "stored",
                     options: Options | None = None) -> tuple[tuple[int, str], tuple[int, str]]:
    """(bytes, where) of the prefill's peak and of the last decode step's peak, with the weights
    in ``weights`` (a :func:`flopmeter.memory.parse_format` name)."""
    return _peaks(model, prompt, new, batch=batch, weights=weights, options=options)[:2]


def _peaks(model, prompt, new, *, batch, weights, options):
    from .memory import analyse
    opts = replace(options or Options(), training=False, memory=False)
    ids = torch.zeros(batch, prompt, dtype=torch.long, device="meta")
    prefill = count(model, ids, kwargs=_prefill_kwargs(model), options=opts)
    pre = analyse(prefill, weights=weights)
    last = torch.zeros(batch, 1, dtype=torch.long, device="meta")
    dec = analyse(count(DecodeStep(model, prompt + new - 1), last, options=opts), weights=weights)

    def where(m, decode=False):
        module = m.peak.module
        if decode:              # the step's modules sit under DecodeStep.model; outside it the cache is filled
            if module != "model" and not module.startswith("model."):
                return f"the KV cache of {prompt + new - 1:,} positions being filled ({m.peak.op})"
            module = module.removeprefix("model").removeprefix(".")
        return f"{module or '(root)'} ({m.peak.op})"
    return (pre.total, where(pre)), (dec.total, where(dec, decode=True)), prefill


def generation_memory(model: nn.Module, prompt: int, new: int, *, batch: int = 1, weights: str = "stored",
                      budget=None, max_batch: bool = False, options: Options | None = None) -> GenerationMemory:
    """The :class:`GenerationMemory` of ``batch × (prompt + new)`` tokens; with ``budget`` (a
    :class:`flopmeter.memory.Budget`) whether it fits, and with ``max_batch`` the largest batch
    whose larger peak fits (from a few fake traces, :func:`flopmeter.memory.largest_fitting`)."""
    from .analyses.assumptions import assumptions
    from .memory import Fit, largest_fitting
    (pre, pre_at), (dec, dec_at), prefill = _peaks(model, prompt, new, batch=batch, weights=weights, options=options)
    mem = GenerationMemory(weights, pre, pre_at, dec, dec_at,
                           assumptions=assumptions(prefill, budget=budget, generation=True),
                           kernels=prefill.kernels)
    if budget is not None:
        mem.fit = Fit(budget, mem.total)
        if max_batch:
            def peak(b):
                if b == batch:
                    return mem.total
                (p, _), (d, _) = generation_peaks(model, prompt, new, batch=b, weights=weights, options=options)
                return max(p, d)
            mem.search = largest_fitting(peak, budget.bytes)
            mem.search.fixed.update(prompt=prompt, new=new)
    return mem


def decode_step(model: nn.Module, position: int, *, batch: int = 1, options: Options | None = None) -> Phase:
    """One decode step at ``position`` (1 = the first token; p − 1 positions in the cache)."""
    if position < 1:
        raise InputError(f"a decode position starts at 1, got {position}",
                         hint="positions count from 1 (the first generated token)")
    opts = replace(options or Options(), training=False)
    ids = torch.zeros(batch, 1, dtype=torch.long, device="meta")
    report = count(DecodeStep(model, position - 1), ids, options=opts)
    return Phase(batch, report.module("model").total)


def generation(model: nn.Module, prompt: int, new: int, *, batch: int = 1, options: Options | None = None,
               name: str = "") -> Generation:
    """Prefill of ``prompt`` tokens and decode of ``new`` tokens (see the module docstring)."""
    if prompt < 1 or new < 1:
        raise InputError(f"--generate needs PROMPT ≥ 1 and NEW ≥ 1, got {prompt}+{new}", hint="for example 512+128")
    if not hasattr(model, "config") or not hasattr(model.config, "num_hidden_layers"):
        raise InputError("--generate needs a Hugging Face decoder (hf:…)", hint="for example hf:llama-7b")
    limit = max_positions(model.config)
    if limit and prompt + new > limit:
        raise InputError(f"--generate {prompt}+{new} reaches position {prompt + new:,}, beyond this model's "
                         f"{limit:,} positions",
                         hint=f"keep PROMPT+NEW within {limit:,}, e.g. {min(prompt, limit // 2)}+"
                              f"{limit - min(prompt, limit // 2)}")
    opts = replace(options or Options(), training=False)
    ids = torch.zeros(batch, prompt, dtype=torch.long, device="meta")
    pre = count(model, ids, kwargs=_prefill_kwargs(model), options=opts)
    first, last = prompt + 1, prompt + new
    positions = sorted({first, (first + last) // 2, last})
    at = {p: decode_step(model, p, batch=batch, options=opts) for p in positions}
    total = _affine_sum(at, first, last)
    cfg = model.config
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    itemsize = next(model.parameters()).dtype.itemsize
    return Generation(name or type(model).__name__, batch, prompt, new, opts.convention, Phase(batch * prompt, pre.total),
                      at, total, weight_bytes=pre.params.bytes,
                      kv_bytes_per_position=2 * cfg.num_hidden_layers * batch * kv * head_dim * itemsize)


def max_positions(config) -> int | None:
    """The longest sequence a model's position embeddings (or its configured rotary range) cover;
    None when the configuration gives none."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(text, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _affine_sum(at: dict[int, Phase], first: int, last: int) -> Cost:
    """Σ over positions first..last of a per-step Cost affine in the position, from the traced
    steps (checked on the middle one when there are three)."""
    a, b = at[first].cost, at[last].cost
    n = last - first + 1
    if n == 1:
        return a
    fields = ("macs", "dots", "elementwise", "transcendental", "bytes_read", "bytes_written")
    total = {}
    for f in fields:
        fa, fb = getattr(a, f), getattr(b, f)
        # Σ_{i=0}^{n-1} (fa + (fb − fa)·i/(n − 1)) = n·(fa + fb)/2
        total[f] = n * (fa + fb) // 2
        for p, ph in at.items():
            expected = fa + (fb - fa) * (p - first) / (n - 1)
            if abs(getattr(ph.cost, f) - expected) > 1e-6 * max(abs(expected), 1):
                raise InputError(f"decode cost is not affine in the position ({f} at {p})",
                                 hint="this model's decode step changes with the position in another way")
    return Cost(**total)
