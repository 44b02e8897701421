"""Serving time on a device row of the table, per tensor-parallel rank.

- **TTFT**: the prefill of P tokens at batch 1 (the rank's model) on the roofline — Σ over its
  ops of max(FLOPs / peak, bytes / bandwidth), :func:`flopmeter.bench.roofline.roofline` — plus
  its all-reduces. Its compute bound, prefill FLOPs (``dot``) / peak, is given beside it.
- **TPOT** at batch B: one decode step at the mean context of the N − 1 decode steps (positions
  P + 1 … P + N − 1, mean P + N/2; a step's cost is affine in the position), as
  max(memory, compute) + all-reduces, where memory = (weight bytes read + B · (P + N/2) · KV bytes
  per token) / bandwidth — every weight is read once a step, except an input embedding table not
  tied to the output head, of which a step looks up B rows — and compute = B · the step's FLOPs at
  batch 1 (the mean of the first and last steps, traced) / the matrix peak in the weights' dtype
  (fp8 weights at the fp8 peak; int8 and int4 weights are dequantised to the activations' dtype).
- **all-reduces**: tensor parallelism all-reduces the activations twice a layer (after the
  attention's output projection and after the MLP), B · s · hidden elements each; a ring
  all-reduce moves 2 · (tp − 1) / tp of them over the link (the bus-bandwidth relation NCCL's tests
  use), at the device's link bandwidth per direction.
- **tokens/s per GPU** = B / TPOT / tp: the steady decode of B sequences, prefills not interleaved.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..bench.roofline import roofline
from ..devices import DeviceSpec, dtype_key


def allreduce_s(elements: int, itemsize: int, tp: int, link: float | None) -> float:
    """Seconds of one ring all-reduce of ``elements`` values across ``tp`` ranks."""
    if tp == 1:
        return 0.0
    return 2 * (tp - 1) / tp * elements * itemsize / link


def link_of(spec: DeviceSpec) -> float | None:
    return spec.link_bandwidth or spec.pcie_bandwidth


@dataclass(frozen=True)
class Prefill:
    tokens: int
    flops: int                  # dot: 2 × MACs
    roofline_s: float           # Σ per op max(compute, memory)
    compute_bound_s: float      # flops / peak
    comm_s: float
    peak: float
    peak_dtype: str

    @property
    def ttft_s(self) -> float:
        return self.roofline_s + self.comm_s

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "flops": self.flops, "roofline_s": self.roofline_s,
                "compute_bound_s": self.compute_bound_s, "allreduce_s": self.comm_s, "ttft_s": self.ttft_s,
                "peak_flops": self.peak, "peak_dtype": self.peak_dtype}


def prefill_time(report, spec: DeviceSpec, *, tp: int, layers: int, hidden: int, dtype: torch.dtype) -> Prefill:
    """TTFT of the traced prefill ``report`` (the module docstring)."""
    tokens = report.inputs[0].shape[1]
    rl = roofline(report, spec)
    flops = report.total.flops("dot")
    peak, used = spec.peak(dtype_key(dtype))
    comm = 2 * layers * allreduce_s(tokens * hidden, dtype.itemsize, tp, link_of(spec))
    return Prefill(tokens, flops, rl.latency, flops / peak, comm, peak, used)


@dataclass(frozen=True)
class Step:
    """One decode step of ``batch`` sequences."""
    batch: int
    context: float               # keys read per sequence: P + N/2
    weight_bytes: int            # weight bytes read
    kv_bytes: float              # KV bytes read: batch · context · bytes per token
    flops: float                 # batch · the step's FLOPs at batch 1
    memory_s: float
    compute_s: float
    comm_s: float
    kv_used: int                 # bytes of the blocks the batch holds at P + N
    kv_share: float              # of the allocated blocks
    tp: int

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s > self.memory_s else "memory"

    @property
    def tpot_s(self) -> float:
        return max(self.memory_s, self.compute_s) + self.comm_s

    @property
    def tokens_per_s_per_gpu(self) -> float:
        return self.batch / self.tpot_s / self.tp

    def to_dict(self) -> dict:
        return {"batch": self.batch, "context": self.context, "weight_bytes_read": self.weight_bytes,
                "kv_bytes_read": self.kv_bytes, "flops": self.flops, "memory_s": self.memory_s,
                "compute_s": self.compute_s, "allreduce_s": self.comm_s, "bound": self.bound,
                "tpot_s": self.tpot_s, "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
                "kv_used": self.kv_used, "kv_share": self.kv_share}


def batches(limit: int) -> list[int]:
    """1, 2, 4, … below ``limit``, then ``limit``."""
    out, b = [], 1
    while b < limit:
        out.append(b)
        b *= 2
    return out + [limit] if limit >= 1 else out


def decode_steps(kv, weights, spec: DeviceSpec, *, tp: int, flops: tuple[int, int], layers: int, hidden: int,
                 dtype: torch.dtype) -> list[Step]:
    """The decode table from batch 1 up to ``kv.concurrency`` (the module docstring)."""
    key = "fp8" if weights.fp8 else dtype_key(dtype)
    peak, _ = spec.peak(key)
    itemsize = dtype.itemsize
    per_step = (flops[0] + flops[1]) / 2
    context = kv.prompt + kv.output / 2
    read = weights.total - weights.embedding
    allocated = kv.blocks * kv.block_size * kv.per_token
    out = []
    for b in batches(kv.concurrency):
        kv_read = b * context * kv.per_token
        used = b * kv.blocks_per_request * kv.block_size * kv.per_token
        out.append(Step(b, context, read, kv_read, b * per_step, (read + kv_read) / spec.bandwidth,
                        b * per_step / peak, 2 * layers * allreduce_s(b * hidden, itemsize, tp, link_of(spec)),
                        used, used / allocated if allocated else 0.0, tp))
    return out


__all__ = ["Prefill", "Step", "allreduce_s", "batches", "decode_steps", "link_of", "prefill_time"]
