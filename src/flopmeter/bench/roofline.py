"""The roofline estimate: predicted time per op, module and model on a device spec.

For every op of a :class:`~flopmeter.Report` that is not free::

    compute = 2·MACs / peak[dtype]  +  (elementwise + transcendental) / vector
    memory  = (bytes read + bytes written) / bandwidth
    time    = max(compute, memory)  (+ the spec's per-op overhead, when asked)

``peak[dtype]`` is the device's peak for the op's class and dtype: the class is ``conv`` for
a convolution, ``pointwise`` for a 1 × 1 one in a single group (``conv``'s figure where the
spec has none for it), ``grouped`` for one in groups of several input channels, ``depthwise`` for
one with a single input channel per group, ``matmul`` for any other op with MACs; a class
without its own figure (every datasheet row) uses the matrix-product peak. Ops without MACs
run at ``vector``, or at their class's own figure (``pool``: max and average pooling) where
a calibration measured one. A calibrated class ``<class>:batched`` (a CPU's figure at a
batch of more than one) is used for ops whose input has a batch of more than one. The dtype is the op's first floating input's; float32 counts as TF32
with ``tf32=True`` for matrix products and, unless ``conv_tf32=False``, for convolutions
(cuDNN's default). ``vector`` is the throughput of the non-matrix units. An op is *compute-bound* when ``compute ≥ memory``. Its arithmetic
intensity is FLOPs / bytes, FLOPs counted as in the ``all`` convention (2·MACs + elementwise
+ transcendental). A module sums its ops (its own and its children's); it is compute-bound
when its compute-bound ops take most of its predicted time. Free ops (views) take no time;
unsupported ops have no cost, so only the overhead, and are listed in ``notes``.

``measured`` (module path → seconds) puts measured time next to each module's prediction
with the ratio predicted / measured and the achieved FLOP/s and bytes/s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..report import Report
from ..devices import DeviceSpec, dtype_key, get_device


@dataclass(frozen=True)
class OpEstimate:
    module: str
    op: str
    op_class: str            # matmul, conv, pointwise, grouped, depthwise, pool or vector (":batched": batch > 1)
    dtype: str               # the device-table key whose peak was used
    flops: int               # 2·MACs + elementwise + transcendental
    bytes: int
    compute_s: float
    memory_s: float
    overhead_s: float

    @property
    def time_s(self) -> float:
        return max(self.compute_s, self.memory_s) + self.overhead_s

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else float("inf")


@dataclass
class ModuleEstimate:
    path: str
    type: str
    depth: int
    flops: int = 0
    bytes: int = 0
    compute_s: float = 0.0            # Σ compute time of its ops
    memory_s: float = 0.0             # Σ memory time of its ops
    time_s: float = 0.0               # Σ predicted time of its ops
    compute_bound_s: float = 0.0      # predicted time (without overhead) of its compute-bound ops
    memory_bound_s: float = 0.0       # … and of its memory-bound ops
    ops: int = 0
    measured_s: float | None = None

    def add(self, e: OpEstimate) -> None:
        self.flops += e.flops
        self.bytes += e.bytes
        self.compute_s += e.compute_s
        self.memory_s += e.memory_s
        self.time_s += e.time_s
        self.ops += 1
        if e.bound == "compute":
            self.compute_bound_s += e.compute_s
        else:
            self.memory_bound_s += e.memory_s

    @property
    def bound(self) -> str:
        """Where most of its (overhead-free) predicted time goes."""
        return "compute" if self.compute_bound_s > self.memory_bound_s else "memory"

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else float("inf")

    @property
    def ratio(self) -> float | None:
        """predicted / measured."""
        return self.time_s / self.measured_s if self.measured_s else None

    @property
    def achieved_flops(self) -> float | None:
        return self.flops / self.measured_s if self.measured_s else None

    @property
    def achieved_bandwidth(self) -> float | None:
        return self.bytes / self.measured_s if self.measured_s else None

    @property
    def measured_bound(self) -> str | None:
        """What the measurement says: ``compute`` (``memory``) when the achieved FLOP/s (bytes/s)
        reach at least half of the roof the estimate used for this module (its ops' peaks,
        the bandwidth) and the larger fraction of the two; ``neither`` when it reaches half of
        neither (overhead, or kernels far from the roofs)."""
        if not self.measured_s:
            return None
        f_frac, b_frac = self.compute_s / self.measured_s, self.memory_s / self.measured_s
        return "compute" if f_frac >= max(b_frac, 0.5) else "memory" if b_frac >= 0.5 else "neither"

    def to_dict(self) -> dict:
        return {"path": self.path, "type": self.type, "flops": self.flops, "bytes": self.bytes,
                "compute_s": self.compute_s, "memory_s": self.memory_s, "predicted_s": self.time_s,
                "bound": self.bound, "intensity": _finite(self.intensity), "ops": self.ops,
                "measured_s": self.measured_s, "ratio": self.ratio, "measured_bound": self.measured_bound}


def _finite(x: float) -> float | None:
    return None if x == float("inf") else x


@dataclass
class Roofline:
    report: Report
    device: DeviceSpec
    tf32: bool
    overhead: bool
    conv_tf32: bool
    ops: list[OpEstimate]
    modules: dict[str, ModuleEstimate]           # tree order; "" is the model
    batch: int
    notes: list[str] = field(default_factory=list)

    @property
    def latency(self) -> float:
        return self.modules[""].time_s

    @property
    def throughput(self) -> float:
        """Samples per second at this batch."""
        return self.batch / self.latency if self.latency else float("inf")

    @property
    def model(self) -> ModuleEstimate:
        return self.modules[""]

    def leaves(self) -> list[ModuleEstimate]:
        """Modules without children that ran ops (the layers)."""
        parents = {p.rsplit(".", 1)[0] if "." in p else "" for p in self.modules if p}
        return [m for p, m in self.modules.items() if p and p not in parents and m.ops]

    def costliest(self, n: int = 10, by: str = "predicted") -> list[ModuleEstimate]:
        key = (lambda m: m.time_s) if by == "predicted" else (lambda m: m.measured_s or 0.0)
        return sorted(self.leaves(), key=key, reverse=True)[:n]

    def to_dict(self) -> dict:
        d = self.device
        return {"schema": "flopmeter.roofline/1", "model": self.report.model,
                "device": {"name": d.name, "kind": d.kind, "source": d.source, "matrix_flops": d.matrix,
                           "vector_flops": d.vector, "classes": d.classes, "bandwidth": d.bandwidth, "overhead_s": d.overhead,
                           "threads": d.threads},
                "tf32": self.tf32, "conv_tf32": self.conv_tf32, "overhead": self.overhead, "batch": self.batch,
                "predicted_s": self.latency, "throughput_per_s": self.throughput,
                "bound": self.model.bound, "notes": list(self.notes),
                "modules": [m.to_dict() for m in self.modules.values()]}


def _op_dtype(row) -> torch.dtype | None:
    tensors = row.event.inputs or row.event.outputs
    for t in tensors:
        if t.dtype.is_floating_point:
            return t.dtype
    return tensors[0].dtype if tensors else None


CONV_OPS = frozenset({"aten.convolution", "aten._convolution", "aten.conv1d", "aten.conv2d", "aten.conv3d",
                      "aten.conv_transpose1d", "aten.conv_transpose2d", "aten.conv_transpose3d"})
POOL_OPS = frozenset(f"aten.{kind}_pool{d}d{suffix}" for kind in ("max", "avg") for d in (1, 2, 3)
                     for suffix in ("", "_with_indices") if not (kind == "avg" and suffix))
CONV_CLASSES = ("conv", "pointwise", "grouped", "depthwise")
FALLBACK = {"pointwise": "conv"}      # a class a spec may lack → the class whose figure it uses then


def op_class(row) -> str:
    """The op's class, for its peak: ``conv`` (a convolution), ``pointwise`` (a 1 × 1 convolution
    in one group), ``grouped`` (in groups of more
    than one input channel), ``depthwise`` (one input channel per group: a weight of shape
    [C_out, 1, …] on an input of more than one channel), ``matmul`` (any other op with MACs),
    ``pool`` (max and average pooling windows) or ``vector`` (other arithmetic)."""
    ev = row.event
    if not row.cost.macs:
        return "pool" if ev.op in POOL_OPS else "vector"
    if ev.op in CONV_OPS:
        x, w = (ev.inputs + [None, None])[:2]
        if x is not None and w is not None and w.ndim >= 3 and x.ndim >= 3 and not ev.op.startswith("aten.conv_t"):
            c_in = x.shape[1] if x.ndim == w.ndim else x.shape[0]       # batched or unbatched input
            if w.shape[1] < c_in:
                return "depthwise" if w.shape[1] == 1 else "grouped"
            if all(k == 1 for k in w.shape[2:]):
                return "pointwise"
        return "conv"
    return "matmul"


def op_batch(row) -> int:
    """The batch of a convolution's or pooling's input (1 for an unbatched input)."""
    ev = row.event
    inputs = ev.inputs
    if not inputs:
        return 1
    x = inputs[0]
    if ev.op in CONV_OPS and len(inputs) >= 2:
        return x.shape[0] if x.ndim == inputs[1].ndim else 1
    if ev.op in POOL_OPS:
        return x.shape[0] if x.ndim == int(ev.op.rsplit("pool", 1)[1][0]) + 2 else 1
    return x.shape[0] if x.ndim else 1


def estimate_op(row, device: DeviceSpec, *, tf32: bool = False, conv_tf32: bool = True,
                overhead: bool = True) -> OpEstimate:
    """The roofline of one op (an ``OpRow`` of a report)."""
    c = row.cost
    dtype = _op_dtype(row)
    cls = op_class(row)
    if cls in FALLBACK and not any(c.split(":")[0] == cls for c in device.classes):
        cls = FALLBACK[cls]
    key = dtype_key(dtype, conv_tf32 if cls in CONV_CLASSES else tf32) if dtype is not None else "fp32"
    if f"{cls}:batched" in device.classes and op_batch(row) > 1:
        cls = f"{cls}:batched"        # a calibrated figure for a batch of more than one
    matrix_flops, vector_flops = 2 * c.macs, c.elementwise + c.transcendental
    nbytes = c.bytes_read + c.bytes_written
    if c.macs:
        peak, used = device.peak(key, cls)
        compute = matrix_flops / peak + vector_flops / device.vector
    else:               # a vector op: the vector units, or its class's own calibrated figure (pool)
        own = device.classes.get(cls, {})
        compute = vector_flops / own.get(key, own.get("fp32", device.vector))
    return OpEstimate(module=row.event.module, op=row.event.op, op_class=cls, dtype=used if c.macs else key,
                      flops=matrix_flops + vector_flops, bytes=nbytes, compute_s=compute,
                      memory_s=nbytes / device.bandwidth, overhead_s=device.overhead if overhead else 0.0)


def roofline(report: Report, device: DeviceSpec | str, *, measured: dict[str, float] | None = None,
             tf32: bool = False, conv_tf32: bool = True, overhead: bool = True) -> Roofline:
    """Predicted time per op, module and model of ``report`` on ``device`` (a spec or a name)."""
    device = get_device(device).require_compute()
    modules = {n.path: ModuleEstimate(n.path, n.type, n.depth) for n in report.modules()}
    ops: list[OpEstimate] = []
    fallback: dict[str, str] = {}
    unsupported = 0
    for row in report.ops:
        if row.status == "free":
            continue
        unsupported += row.status == "unsupported"
        e = estimate_op(row, device, tf32=tf32, conv_tf32=conv_tf32, overhead=overhead)
        wanted = dtype_key(_op_dtype(row), conv_tf32 if e.op_class.split(":")[0] in CONV_CLASSES else tf32)
        if row.cost.macs and e.dtype != wanted and wanted != "tf32":
            fallback[wanted] = e.dtype
        ops.append(e)
        path = e.module
        while True:                       # the op's module and every enclosing one
            if path in modules:
                modules[path].add(e)
            if not path:
                break
            path = path.rsplit(".", 1)[0] if "." in path else ""
    for path, seconds in (measured or {}).items():
        if path in modules:
            modules[path].measured_s = seconds
    notes = [f"{device.name} has no {k} matrix peak; those ops use its {v} peak" for k, v in fallback.items()]
    if unsupported:
        notes.append(f"{unsupported} unsupported op call(s) have no cost and count only their overhead: "
                     + ", ".join(f"{k} ×{v}" for k, v in sorted(report.unsupported.items())))
    batch = report.inputs[0].shape[0] if report.inputs and report.inputs[0].shape else 1
    return Roofline(report, device, tf32, overhead, conv_tf32, ops, modules, batch, notes)


# -- decoders: prefill and decode ------------------------------------------------------------------

def kv_bytes_per_token(config, itemsize: int) -> int | None:
    """K and V of one token of one sequence, over all layers, from a Hugging Face config:
    2 · layers · kv_heads · head_dim · itemsize (None when the config does not say)."""
    get = lambda *names: next((getattr(config, n) for n in names if getattr(config, n, None)), None)  # noqa: E731
    layers = get("num_hidden_layers", "n_layer", "num_layers")
    heads = get("num_attention_heads", "n_head")
    hidden = get("hidden_size", "n_embd", "d_model")
    if not (layers and heads and hidden):
        return None
    kv_heads = get("num_key_value_heads") or heads
    head_dim = get("head_dim") or hidden // heads
    return 2 * layers * kv_heads * head_dim * itemsize


@dataclass(frozen=True)
class DecodeEstimate:
    """One decode step (one new token per sequence) at a context length."""

    batch: int
    context: int
    weight_bytes: int
    kv_bytes: int                   # the whole cache read once: batch · context · kv_bytes_per_token
    bandwidth: float
    op_level_s: float | None        # roofline of a one-token forward + reading the cache

    @property
    def analytic_s(self) -> float:
        """(bytes of weights + KV cache) / bandwidth."""
        return (self.weight_bytes + self.kv_bytes) / self.bandwidth

    @property
    def tokens_per_s(self) -> float:
        return self.batch / self.analytic_s

    def to_dict(self) -> dict:
        return {"batch": self.batch, "context": self.context, "weight_bytes": self.weight_bytes,
                "kv_bytes": self.kv_bytes, "analytic_s": self.analytic_s, "op_level_s": self.op_level_s,
                "tokens_per_s": self.tokens_per_s}


def decode_estimate(report: Report, device: DeviceSpec | str, *, context: int, kv_per_token: int,
                    one_token: Report | None = None, tf32: bool = False, overhead: bool = True) -> DecodeEstimate:
    """Decode per token ≈ (weights + KV cache) / bandwidth; with ``one_token`` (a report of the
    same model on one token per sequence) also the op-level sum: that forward's roofline plus
    the time to read the cache (a one-token forward without a cache does not read it)."""
    device = get_device(device).require_compute()
    batch = report.inputs[0].shape[0] if report.inputs and report.inputs[0].shape else 1
    kv = batch * context * kv_per_token
    op_level = None
    if one_token is not None:
        op_level = roofline(one_token, device, tf32=tf32, overhead=overhead).latency + kv / device.bandwidth
    return DecodeEstimate(batch, context, report.params.bytes, kv, device.bandwidth, op_level)


__all__ = ["DecodeEstimate", "ModuleEstimate", "OpEstimate", "Roofline", "decode_estimate", "estimate_op",
           "kv_bytes_per_token", "roofline"]
