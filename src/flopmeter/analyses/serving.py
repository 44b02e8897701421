"""Serving sizing as vLLM (0.11, V1 engine) does it, per tensor-parallel rank, each term stated.

Memory (what ``vllm serve`` does at start-up):

- **weights per rank**: the rank's parameters and buffers in ``weights`` (a flopmeter format,
  :func:`flopmeter.memory.parse_format`, or as a checkpoint stores them: :mod:`.serving_weights`);
- **activation peak**: the most bytes alive beyond the weights during the profile run
  (:class:`~.serving_model.ProfileRun`) at the batched-token budget, traced on fake tensors —
  vLLM measures it as the increase of ``torch.cuda.memory_stats()["allocated_bytes.all.peak"]``;
- **KV budget** = usable × gpu_memory_utilization − weights − activation peak. vLLM's
  ``Worker.determine_available_memory`` (vllm/v1/worker/gpu_worker.py) takes
  ``requested_memory = total_memory × gpu_memory_utilization`` with ``total_memory`` from
  ``torch.cuda.mem_get_info()`` and subtracts ``non_kv_cache_memory`` = weights + torch peak
  increase + non-torch increase (``memory_profiling``, vllm/utils/mem_utils.py). Here ``usable``
  is the device's memory less the stated reserve (:func:`flopmeter.devices.usable_memory`),
  which stands for what is not tensors (CUDA context, NCCL and library buffers); ``reserve=0``
  gives vLLM's own product with the datasheet total;
- **KV bytes per token**: K and V of every layer's cache as the rank's model builds it (its
  key/value heads and head size), in ``kv_dtype``;
- **blocks** = ⌊budget / (bytes per token × block_size)⌋ (``get_num_blocks``,
  vllm/v1/core/kv_cache_utils.py: ``available_memory // page_size // num_layers``); tokens =
  ⌊budget / bytes per token⌋; block 0 is the block pool's null block (vllm/v1/core/block_pool.py);
- **concurrency** at P + N tokens = min(⌊(blocks − 1) / ⌈(P + N) / block_size⌉⌋, max_num_seqs).

Time (the roofline of the device's table row, :mod:`.serving_time`): TTFT, TPOT and tokens/s
against batch up to that concurrency.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from ..devices import DeviceSpec, Usable, get_device, usable_memory
from ..errors import InputError, OptionsError, expect_type
from ..memory.kvcache import (
    KVLayer,
    cache_layers,
    find_cache,
    per_layer_tokens,
    root_output,
)
from . import serving_model as sm
from .serving_weights import RankWeights, rank_weights, resolve_weights

VLLM = "vLLM 0.11 (V1 engine)"
KV_DTYPES = {"auto": None, "fp16": 2, "float16": 2, "bf16": 2, "bfloat16": 2, "fp8": 1, "fp8_e4m3": 1,
             "fp8_e5m2": 1}
GiB = 2**30


def batch_defaults(device: DeviceSpec) -> tuple[int, int, str]:
    """(max_num_batched_tokens, max_num_seqs, why) as ``vllm serve`` sets them when not given
    (``EngineArgs._set_default_args``, vllm/engine/arg_utils.py, the OpenAI-server context)."""
    large = (device.memory or 0) >= 70 * GiB and "a100" not in device.name.lower()
    tokens, seqs = (8192, 1024) if large else (2048, 256)
    why = ("a GPU of 70 GiB or more that is not an A100" if large else "a GPU under 70 GiB, or an A100")
    return tokens, min(seqs, tokens), f"{VLLM} `vllm serve` defaults for {why}"


def kv_bytes_per_token(layers: list[KVLayer], itemsize: int | None) -> int:
    """K and V of one token over every layer: each layer's cache elements per token × the bytes
    of ``itemsize`` (None: the cache's own dtype)."""
    total = 0
    for layer in layers:
        tokens = per_layer_tokens(layer) * (layer.key_shape[0] if layer.key_shape else 1)
        size = itemsize or getattr(torch, layer.dtype).itemsize
        total += (math.prod(layer.key_shape) + math.prod(layer.value_shape)) // tokens * size
    return total


@dataclass(frozen=True)
class KVPlan:
    """The KV budget of one rank and what it holds (the module docstring's arithmetic)."""
    usable: Usable
    utilization: float
    weights: int
    activation_peak: int
    per_token: int
    block_size: int
    prompt: int
    output: int
    max_num_seqs: int

    @property
    def requested(self) -> float:
        return self.usable.usable * self.utilization

    @property
    def budget(self) -> int:
        return int(self.requested - self.weights - self.activation_peak)

    @property
    def tokens(self) -> int:
        return self.budget // self.per_token

    @property
    def blocks(self) -> int:
        return self.budget // (self.per_token * self.block_size)

    @property
    def blocks_per_request(self) -> int:
        return -(-(self.prompt + self.output) // self.block_size)

    @property
    def by_kv(self) -> int:
        """Requests of P + N tokens the blocks hold (block 0 is the null block)."""
        return max(self.blocks - 1, 0) // self.blocks_per_request

    @property
    def concurrency(self) -> int:
        return min(self.by_kv, self.max_num_seqs)

    def to_dict(self) -> dict:
        return {"usable": self.usable.to_dict(), "gpu_memory_utilization": self.utilization,
                "requested": self.requested, "weights": self.weights, "activation_peak": self.activation_peak,
                "kv_budget": self.budget, "kv_bytes_per_token": self.per_token, "block_size": self.block_size,
                "kv_tokens": self.tokens, "blocks": self.blocks, "paged_tokens": self.blocks * self.block_size,
                "blocks_per_request": self.blocks_per_request, "requests_by_kv": self.by_kv,
                "max_num_seqs": self.max_num_seqs, "max_concurrency": self.concurrency,
                "vllm_logged_concurrency": self.blocks / self.blocks_per_request}


@dataclass
class Serving:
    """The answer of :func:`serve` (see the module docstring); ``steps`` is the decode table."""
    model: str
    device: DeviceSpec
    tp: int
    prompt: int
    output: int
    dtype: str
    kv_dtype: str
    max_num_batched_tokens: int
    max_num_seqs: int
    defaults: str
    weights: RankWeights
    activation_at: str
    profile_requests: int
    kv: KVPlan
    kv_layers: int
    kv_terms: str                                 # how the bytes per token are made up
    ttft: object                                  # serving_time.Prefill
    steps: list = field(default_factory=list)     # serving_time.Step per batch
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"schema": "flopmeter.serve/1", "model": self.model, "device": self.device.name, "tp": self.tp,
                "vllm": VLLM, "prompt": self.prompt, "output": self.output, "dtype": self.dtype,
                "kv_dtype": self.kv_dtype, "max_num_batched_tokens": self.max_num_batched_tokens,
                "max_num_seqs": self.max_num_seqs, "defaults": self.defaults,
                "weights_per_rank": self.weights.to_dict(),
                "profile_run": {"tokens": self.max_num_batched_tokens, "requests": self.profile_requests,
                                "activation_peak": self.kv.activation_peak, "at": self.activation_at},
                "kv": self.kv.to_dict(), "kv_layers": self.kv_layers, "kv_terms": self.kv_terms, "ttft": self.ttft.to_dict(),
                "decode": [s.to_dict() for s in self.steps], "notes": list(self.notes)}


def _positive(value, name: str) -> int:
    expect_type(value, int, f"serve({name})", "a whole number")
    if value < 1:
        raise OptionsError(f"{name} must be 1 or more, got {value}", hint=f"e.g. {name}=16")
    return value


def _resolve(model, name: str | None):
    """(model, name, notes): a spec string is built as the CLI builds it (a folder with its
    config.json in its checkpoint's dtype), float32 weights in float16 (vLLM's ``--dtype auto``)."""
    if not isinstance(model, str):
        expect_type(model, nn.Module, "serve(model)", "a torch.nn.Module or a spec such as 'hf:llama-7b'")
        return model, name or type(model).__name__, []
    from ..frontends import InputRequest, resolve
    from ..frontends.checkpoint.folder import has_config
    resolved = resolve(model, InputRequest(seq_len=1))        # serve makes its own inputs
    stored = sm.model_dtype(resolved.model)
    if stored == torch.float32:
        config = f"hf:{model}" if has_config(model) else model         # the config alone, in another dtype
        resolved = resolve(config, InputRequest(seq_len=1, dtype=torch.float16))
    served = str(sm.model_dtype(resolved.model)).removeprefix("torch.")
    note = (f"weights and activations in {served}, vLLM's --dtype auto for "
            f"{'a checkpoint' if has_config(model) else 'a config'} in {str(stored).removeprefix('torch.')}")
    return resolved.model, name or model, [note]


def serve(model, *, device: str | DeviceSpec, prompt: int, output: int, tp: int = 1,
          gpu_memory_utilization: float = 0.9, block_size: int = 16, kv_dtype: str = "auto",
          max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None,
          weights: str | Mapping[str, int] | object = "stored", reserve: int | None = None,
          name: str | None = None) -> Serving:
    """Size serving ``model`` (a Hugging Face decoder, or a spec such as ``"hf:llama-7b"``) on
    ``tp`` GPUs of ``device`` for requests of ``prompt`` + ``output`` tokens, as vLLM would
    (the module docstring). ``weights``: a flopmeter weight format, a checkpoint (a path, or
    what :func:`flopmeter.frontends.checkpoint.read_checkpoint` returns), or ``{tensor name:
    bytes}`` (:mod:`.serving_weights`)."""
    from . import serving_time as st

    spec = get_device(device).require_compute("serve (TTFT and TPOT from the roofline)")
    for value, label in ((prompt, "prompt"), (output, "output"), (tp, "tp"), (block_size, "block_size")):
        _positive(value, label)
    if output < 2:
        raise OptionsError("TPOT is the time between output tokens: --output needs 2 or more",
                           hint="e.g. --output 128 (the first token comes from the prefill)")
    expect_type(gpu_memory_utilization, (int, float), "serve(gpu_memory_utilization)", "a number")
    if not 0 < gpu_memory_utilization <= 1:
        raise OptionsError(f"gpu_memory_utilization must be above 0 and at most 1, got {gpu_memory_utilization}",
                           hint="vLLM's default is 0.9")
    if kv_dtype not in KV_DTYPES:
        raise OptionsError(f"unknown KV cache dtype '{kv_dtype}'", hint=f"one of: {', '.join(KV_DTYPES)}")
    weights = resolve_weights(weights, model)        # a format, a checkpoint read by its headers, or bytes
    if tp > 1 and not (spec.link_bandwidth or spec.pcie_bandwidth):
        raise OptionsError(f"--tp {tp}: the device table gives {spec.name} no GPU-to-GPU or host link bandwidth",
                           hint="the all-reduces of tensor parallelism need a link; size one GPU with --tp 1")
    tokens_default, seqs_default, why = batch_defaults(spec)
    defaults = []
    if max_num_batched_tokens is None:
        max_num_batched_tokens = tokens_default
        defaults.append(f"max_num_batched_tokens {tokens_default}")
    if max_num_seqs is None:
        max_num_seqs = min(seqs_default, max_num_batched_tokens)
        defaults.append(f"max_num_seqs {max_num_seqs}")
    _positive(max_num_batched_tokens, "max_num_batched_tokens")
    _positive(max_num_seqs, "max_num_seqs")
    if max_num_seqs > max_num_batched_tokens:
        raise OptionsError(f"max_num_batched_tokens ({max_num_batched_tokens}) is less than max_num_seqs "
                           f"({max_num_seqs}), which vLLM refuses", hint="raise --max-num-batched-tokens")

    model, label, notes = _resolve(model, name)
    sm.check_decoder(model)
    from ..generate import max_positions
    limit = max_positions(sm.text_config(model))
    if limit and prompt + output > limit:
        raise InputError(f"a request of {prompt:,} + {output:,} tokens reaches position {prompt + output:,}, beyond "
                         f"this model's {limit:,} positions",
                         hint=f"keep --prompt + --output within {limit:,}")
    rank = sm.rank_model(model, tp)
    dtype = sm.model_dtype(model)
    rw = rank_weights(model, rank, weights)
    use = usable_memory(spec, reserve)
    _check_fits(KVPlan(use, float(gpu_memory_utilization), rw.total, 0, 1, block_size, prompt, output,
                       max_num_seqs), rw, label, spec, tp, weights_only=True)     # before any trace
    requests = min(max_num_batched_tokens, max_num_seqs)
    activation, where = sm.profile_peak(rank, max_num_batched_tokens, requests, gather=tp)
    pre = sm.prefill(rank, prompt)
    layers = [layer for layer in cache_layers(find_cache(root_output(pre.trace))) if layer.attention == "self"]
    if not layers:
        raise InputError(f"{label} builds no KV cache", hint="serve sizes decoders that keep a KV cache")
    per_token = kv_bytes_per_token(layers, KV_DTYPES[kv_dtype])
    kv = KVPlan(use, float(gpu_memory_utilization), rw.total, activation, per_token, block_size, prompt, output,
                max_num_seqs)
    _check_fits(kv, rw, label, spec, tp)
    hidden = sm.text_config(model).hidden_size
    ttft = st.prefill_time(pre, spec, tp=tp, layers=len(layers), hidden=hidden, dtype=dtype)
    flops = sm.decode_flops(rank, prompt, output)
    steps = st.decode_steps(kv, rw, spec, tp=tp, flops=flops, layers=len(layers), hidden=hidden, dtype=dtype)
    cache_dtype = layers[0].dtype if kv_dtype == "auto" else kv_dtype
    notes += [*rw.notes, *_notes(kv, layers, limit, tp, spec, rw, defaults, why)]
    return Serving(label, spec, tp, prompt, output, str(dtype).removeprefix("torch."), cache_dtype,
                   max_num_batched_tokens, max_num_seqs, why if defaults else "given", rw, where, requests, kv,
                   len(layers), _kv_terms(layers, KV_DTYPES[kv_dtype], cache_dtype), ttft, steps, notes)


def _kv_terms(layers: list[KVLayer], itemsize: int | None, dtype: str) -> str:
    """'32 layers × 2 (K, V) × 8 heads × 128 × 2 B (float16)' when every layer is alike."""
    shapes = {(layer.key_shape[1:2] + layer.key_shape[-1:], layer.dtype) for layer in layers
              if len(layer.key_shape) == 4 and layer.key_shape == layer.value_shape}
    if len(shapes) != 1 or len(layers) != sum(len(layer.key_shape) == 4 for layer in layers):
        return f"{len(layers)} layers' keys and values, as each layer's cache holds them, in {dtype}"
    ((kv, dim), own), = shapes
    size = itemsize or getattr(torch, own).itemsize
    return f"{len(layers)} layers × 2 (K, V) × {kv} key/value heads × head size {dim} × {size} B ({dtype})"


def _check_fits(kv: KVPlan, rw: RankWeights, label: str, spec: DeviceSpec, tp: int, weights_only: bool = False) -> None:
    from ..render.units import human_unit as hu
    requested = f"{hu(int(kv.requested), 'B')} (usable {hu(kv.usable.usable, 'B')} × {kv.utilization:g})"
    bigger = "; or --tp " + str(2 * tp) if tp < 64 else ""
    if rw.total > kv.requested:
        raise InputError(f"the weights of {label} per rank ({hu(rw.total, 'B')}, {rw.label}) do not fit "
                         f"{requested} on {spec.name}",
                         hint=f"quantise them (--weights int4, int8, fp8){bigger}, or raise --gpu-memory-utilization")
    if weights_only:
        return
    if kv.budget <= 0:
        raise InputError(f"weights ({hu(rw.total, 'B')}) and the profile run's activation peak "
                         f"({hu(kv.activation_peak, 'B')}) leave no KV cache in {requested} on {spec.name}",
                         hint=f"lower --max-num-batched-tokens, quantise the weights (--weights int4){bigger}")
    if kv.by_kv < 1:
        raise InputError(f"one request of {kv.prompt + kv.output:,} tokens needs {kv.blocks_per_request:,} KV blocks "
                         f"and the {hu(kv.budget, 'B')} KV budget holds {max(kv.blocks - 1, 0):,} (block 0 is the "
                         "null block)", hint=f"shorter requests, --kv-dtype fp8, --weights int4{bigger}")


def _notes(kv: KVPlan, layers, limit, tp, spec, rw, defaults, why) -> list[str]:
    out = []
    if defaults:
        out.append(f"{' and '.join(defaults)}: {why} (vllm/engine/arg_utils.py)")
    if any("Sliding" in layer.kind for layer in layers):
        out.append("sliding-window layers are given a block for every token of a request; vLLM frees the blocks "
                   "that leave the window, so requests longer than the window take fewer")
    if limit:
        need = -(-limit // kv.block_size) * kv.block_size * kv.per_token
        fits = need <= kv.budget
        out.append(f"vLLM starts only when one request of max_model_len fits the KV budget: {limit:,} tokens need "
                   f"{need:,} B of {kv.budget:,} B — "
                   + ("it fits" if fits else f"pass --max-model-len {kv.blocks * kv.block_size:,} or less to vLLM"))
    if tp > 1:
        link = f"{spec.link} {spec.link_bandwidth / 1e9:g} GB/s" if spec.link_bandwidth else \
            f"PCIe {spec.pcie_bandwidth / 1e9:g} GB/s (the table gives {spec.name} no GPU-to-GPU link)"
        out.append(f"tensor parallelism over {link} per direction; NCCL's per-call latency is not counted")
    if rw.format not in ("stored", "float16", "bfloat16", "float32"):
        out.append("quantised weights: their dequantisation workspaces are not in the activation peak")
    return out


__all__ = ["KV_DTYPES", "VLLM", "KVPlan", "Serving", "batch_defaults", "kv_bytes_per_token", "serve"]
