"""Closed forms the plan is checked against, and the data-parallel collectives it models.

- Megatron tensor parallelism (Shoeybi et al. 2019): per transformer layer, two all-reduces of
  b·s·h elements in the forward (after attention, after the MLP) and two in the backward (the
  gradients of the attention and MLP inputs), over the TP group.
- FSDP2's dim-0 sharding: a parameter of shape (d0, …) is padded to ⌈d0/n⌉·n rows and each of
  the n ranks holds ⌈d0/n⌉ rows (its storage; the last ranks' real rows may be fewer).
- ZeRO (Rajbhandari et al. 2020), bytes per parameter of mixed-precision Adam (2 for the fp16/bf16
  parameter, 2 for its gradient, K = 12 for the fp32 master copy and two moments) over N data-
  parallel ranks: stage 0: 2 + 2 + K; 1: 2 + 2 + K/N; 2: 2 + (2 + K)/N; 3: (2 + 2 + K)/N.
- DDP (``DistributedDataParallel``) all-reduces gradients in buckets: 1 MiB first, then 25 MiB
  (``bucket_cap_mb``), in reverse order of the parameters. Its reducer calls the process group
  from C++, outside the dispatcher, so the plan cannot trace it: these collectives are modelled
  (``source="modelled"``). ZeRO stages 1 and 2 are modelled too (PyTorch's ``fully_shard`` is
  stage 3 only): a reduce-scatter of the gradients in the same buckets during backward and an
  all-gather of the updated parameters after the optimizer step.
"""

from __future__ import annotations

import math

from .collectives import Collective

ADAM_K = 12
FIRST_BUCKET = 1 << 20          # bytes: DDP's first bucket (torch.distributed._DEFAULT_FIRST_BUCKET_BYTES)
BUCKET = 25 << 20               # bytes: DDP's bucket_cap_mb=25


def megatron_tp_layer(b: int, s: int, h: int) -> dict[str, list[int]]:
    """Elements of the TP all-reduces of one transformer layer, by phase (bytes: times the
    itemsize of what is reduced — the block outputs in the forward, the input gradients in the
    backward, which under autocast are the residual stream's dtype)."""
    one = b * s * h
    return {"forward": [one, one], "backward": [one, one]}


def fsdp_shard_rows(dim0: int, n: int) -> int:
    """Rows of a dim-0 shard on each of n ranks (padded)."""
    return math.ceil(dim0 / n)


def fsdp_shard_numel(shape: tuple[int, ...], n: int) -> int:
    """Elements of one rank's (padded) shard of a parameter of ``shape``."""
    if not shape:
        return math.ceil(1 / n)
    rest = math.prod(shape[1:])
    return fsdp_shard_rows(shape[0], n) * rest


def zero_bytes_per_param(stage: int, n: int, k: int = ADAM_K) -> float:
    """Model-state bytes per parameter of mixed-precision Adam under ZeRO ``stage`` over n ranks."""
    return {0: 2 + 2 + k, 1: 2 + 2 + k / n, 2: 2 + (2 + k) / n, 3: (2 + 2 + k) / n}[stage]


def buckets(sizes: list[int], first: int = FIRST_BUCKET, cap: int = BUCKET) -> list[int]:
    """DDP's gradient buckets (bytes each) for gradients of ``sizes`` bytes given in reverse
    parameter order: a bucket closes once it reaches its limit (the first ``first``, then ``cap``)."""
    out, current, limit = [], 0, first
    for size in sizes:
        current += size
        if current >= limit:
            out.append(current)
            current, limit = 0, cap
    if current:
        out.append(current)
    return out


def data_parallel(stage: int, grad_bytes: list[int], param_bytes: list[int], dtype: str, group: tuple[int, ...]
                  ) -> list[Collective]:
    """The modelled data-parallel collectives of one step (ZeRO stage 0, 1 or 2): ``grad_bytes``
    and ``param_bytes`` per parameter, in parameter order."""
    n = len(group)
    if n <= 1 or stage == 3:
        return []
    grads = buckets(list(reversed(grad_bytes)))
    if stage == 0:
        return [Collective("all_reduce", "dp", n, group, b, dtype, "backward", "", "modelled", "modelled")
                for b in grads]
    out = [Collective("reduce_scatter", "dp", n, group, b, dtype, "backward", "", "modelled", "modelled")
           for b in grads]
    out += [Collective("all_gather", "dp", n, group, b, dtype, "optimizer", "", "modelled", "modelled")
            for b in buckets(list(reversed(param_bytes)))]
    return out


__all__ = ["ADAM_K", "BUCKET", "FIRST_BUCKET", "buckets", "data_parallel", "fsdp_shard_numel", "fsdp_shard_rows",
           "megatron_tp_layer", "zero_bytes_per_param"]
