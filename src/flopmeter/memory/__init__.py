"""Memory: weights by format, the activation timeline and peak of a forward, the KV cache, and
whether it fits a budget — all from one trace on fake tensors.

>>> report = flopmeter.count(model, x, options=flopmeter.Options(memory=True))
>>> report.memory.peak.bytes, report.memory.peak.module       # the largest live total, and where
>>> flopmeter.memory.analyse(report, weights="int4").total     # the same with 4-bit weights

:func:`analyse` turns a Report (its trace) into a :class:`MemoryReport`; ``report.memory`` holds
one when memory was asked for, and ``report.to_dict()["memory"]`` is its JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import FlopmeterError, OptionsError
from .devices import Budget, parse_budget, parse_size
from .fit import Search, largest_fitting
from .kvcache import KVCache, cache_layers, find_cache, kv_cache, per_layer_tokens, root_output
from .timeline import CUDA_BLOCK, Timeline, sparkline, timeline
from .weights import FORMATS, WeightBytes, WeightTensor, all_formats, parse_format, weight_bytes

SEMANTICS = ("eager: a tensor lives until the program drops its last reference (as in eager PyTorch), "
             "not until its last use as an ideal compiler would free it")


def trace_tensors(trace) -> list[WeightTensor]:
    """The unique parameters and buffers of a trace, as :class:`WeightTensor`."""
    return [WeightTensor(p.name, tuple(p.shape), p.dtype, "parameter" if p.kind == "param" else "buffer")
            for p in trace.params]


@dataclass
class Fit:
    """Whether the forward's peak, with the weights in the chosen format, fits a budget."""

    budget: Budget
    total: int

    @property
    def fits(self) -> bool:
        return self.total <= self.budget.bytes

    @property
    def headroom(self) -> int:
        return self.budget.bytes - self.total

    def to_dict(self) -> dict:
        return {"budget": self.budget.bytes, "budget_label": self.budget.label, "total": self.total,
                "fits": self.fits, "headroom": self.headroom, "budget_detail": self.budget.to_dict()}


@dataclass
class MemoryReport:
    """Memory of one forward. ``total`` = the peak with the weights in ``weights.format``:
    the timeline's peak minus the parameters and buffers as stored, plus them in that format."""

    weights: WeightBytes                      # in the chosen format
    stored: WeightBytes                       # as stored
    formats: dict[str, WeightBytes]           # every base format
    timeline: Timeline
    kv: KVCache | None = None
    fit: Fit | None = None
    search: dict[str, Search] = field(default_factory=dict)    # "batch" / "context" → search
    device: str = "cpu"

    @property
    def peak(self):
        return self.timeline.peak

    @property
    def total(self) -> int:
        if self.weights.format == "stored":
            return self.peak.bytes
        by_role = self.peak.by_role
        stored = by_role.get("param", 0) + by_role.get("buffer", 0)
        return self.peak.bytes - stored + self.weights.total

    def to_dict(self) -> dict:
        d = {"semantics": SEMANTICS, "device": self.device, "weights": self.weights.to_dict(),
             "weights_by_format": {k: v.to_dict() for k, v in self.formats.items()},
             "timeline": self.timeline.to_dict(), "total": self.total,
             "kv_cache": self.kv.to_dict() if self.kv else None}
        if self.fit is not None:
            d["fits"] = self.fit.to_dict()
        if self.search:
            d["largest"] = {k: v.to_dict() for k, v in self.search.items()}
        return d


def analyse(report, *, weights: str = "stored", rounding: int | None | str = "auto", model=None,
            prepared=None) -> MemoryReport:
    """The MemoryReport of a counted forward. ``rounding``: ``"auto"`` rounds storages up to
    512-byte blocks on a CUDA device (the caching allocator's granularity) and not elsewhere;
    an int or None sets it. The KV cache per token is each cache layer's bytes over the tokens
    it keeps; given ``model`` (the same model) it is measured instead, by a one-token fake run.
    ``prepared`` (:class:`flopmeter.analyses.switches.Prepared`): the switches the counted copy
    has; with QLoRA adapters the base Linear weights are in ``nf4`` (``weights`` is then the
    format of nothing else and must be ``stored``)."""
    trace = report.trace if hasattr(report, "trace") else report
    if rounding == "auto":
        rounding = CUDA_BLOCK if str(trace.device).startswith("cuda") else None
    tensors = trace_tensors(trace)
    fmt = parse_format(weights)
    adapters = getattr(prepared, "adapters", None)
    quantised = adapters.quantised if adapters is not None and adapters.kind == "qlora" else None
    layers = cache_layers(find_cache(root_output(trace)))
    kv = None
    if layers:
        batch = layers[0].key_shape[0] if layers[0].key_shape else 1
        tokens = _tokens(trace)
        if model is not None:
            try:
                kv = kv_cache(model, context=tokens, batch=batch, device=trace.device, layers=layers)
            except FlopmeterError:      # a model that takes more than token ids: per token as below
                kv = None
        if kv is None:              # per token from this run's cache: each layer's bytes over the tokens it keeps
            kv = KVCache(batch, tokens, layers,
                         sum(layer.bytes // (per_layer_tokens(layer) * batch) for layer in layers if batch))
    if quantised is not None:
        if fmt.bits is not None:
            raise OptionsError("QLoRA sets the base weights' format (nf4); another weight format cannot apply too",
                               hint="leave --weights out with --qlora")
        chosen = weight_bytes(tensors, "nf4", only=quantised,
                              label=f"QLoRA: {len(quantised)} base Linear weights in nf4 (4-bit NormalFloat, float32 "
                                    "absmax per 64 values); adapters, embeddings, head and norms as stored")
        chosen = replace(chosen, format="qlora-nf4")
    else:
        chosen = weight_bytes(tensors, fmt)
    formats = all_formats(tensors)
    if quantised is not None:
        formats["qlora-nf4"] = chosen
    return MemoryReport(chosen, weight_bytes(tensors, "stored"), formats, timeline(trace, rounding=rounding), kv,
                        device=str(trace.device))


def _tokens(trace) -> int:
    for t in trace.inputs:
        if t.ndim == 2 and not t.dtype.is_floating_point:
            return t.shape[1]
    return 0


__all__ = ["FORMATS", "Fit", "KVCache", "MemoryReport", "Search", "Timeline", "analyse",
           "largest_fitting", "parse_budget", "parse_format", "parse_size", "sparkline", "timeline", "weight_bytes"]
