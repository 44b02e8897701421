"""The programs a vLLM server runs on one tensor-parallel rank, traced on fake tensors.

- **the rank's model**: the decoder as one of ``tp`` ranks holds it — attention heads, key/value
  heads, MLP width and vocabulary divided by ``tp`` (Megatron-style tensor parallelism as vLLM
  shards a decoder: q/k/v and gate/up split by output, o/down by input, embedding and LM head by
  vocabulary, norms replicated). Key/value heads fewer than ``tp`` are replicated, one per rank,
  as vLLM does. The vocabulary is first padded to a multiple of 64 (vLLM's
  ``VocabParallelEmbedding`` and ``ParallelLMHead``, also at ``tp`` = 1). The rank's model is
  built anew from a copy of the config on the meta device; the model given is not changed.
- **the profile run** (:class:`ProfileRun`), as vLLM's ``GPUModelRunner.profile_run``
  (vllm/v1/worker/gpu_model_runner.py) runs it before any KV cache exists: one forward of the batched-token budget T without a cache,
  split into R = min(T, max_num_seqs) requests, then the sampler's dummy run on the last
  hidden state of each request — random hidden states through the LM head (the rank's logits
  gathered to the whole vocabulary), the logits in float32, their float32 softmax and the
  exponential noise of the random sample.
- **the prefill** of P tokens at batch 1, as ``generate()`` calls it (cache on, logits of the
  last position), and **decode steps** (:func:`flopmeter.generate.decode_step`).

Attention runs as the fused kernel a CPU trace records (``_scaled_dot_product_flash_attention
_for_cpu``: the output and its log-sum-exp, no score matrix), the memory shape of the flash
kernels vLLM runs on a GPU; in vLLM's profile run attention writes only its output.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..api import Options, count
from ..errors import InputError, OptionsError
from ..memory.kvcache import root_output
from ..memory.timeline import CUDA_BLOCK, rounded, timeline

VOCAB_PADDING = 64       # vLLM's DEFAULT_VOCAB_PADDING_SIZE (vocab_parallel_embedding.py)


def text_config(model: nn.Module):
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def check_decoder(model: nn.Module) -> None:
    """A Hugging Face decoder LM (a config, a base model and an output head), in eval mode."""
    config = getattr(model, "config", None)
    generates = getattr(model, "can_generate", None)
    ok = (config is not None and not getattr(config, "is_encoder_decoder", False)
          and callable(generates) and generates()        # transformers' own test: a model generate() runs
          and hasattr(model, "get_output_embeddings") and model.get_output_embeddings() is not None
          and hasattr(model, getattr(model, "base_model_prefix", "") or "-")
          and getattr(text_config(model), "num_attention_heads", None))
    if not ok:
        raise InputError("serve sizes decoder language models: a Hugging Face causal LM with its config",
                         hint="give an hf: config of a decoder, e.g. hf:llama-7b")
    if model.training:
        raise InputError("the model is in training mode; serve traces inference",
                         hint="call model.eval() first")


def model_dtype(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.dtype.is_floating_point), torch.float32)


def heads(model: nn.Module) -> tuple[int, int, int]:
    """(attention heads, key/value heads, head dim) of the config."""
    cfg = text_config(model)
    n = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or n
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n
    return n, kv, dim


def check_tp(model: nn.Module, tp: int) -> None:
    """Refuse a TP degree vLLM refuses: heads not divisible by it, or key/value heads that neither
    divide by it nor divide it."""
    n, kv, _ = heads(model)
    if n % tp:
        raise OptionsError(f"--tp {tp} does not divide the model's {n} attention heads",
                           hint="vLLM needs the attention heads divisible by the tensor-parallel size: "
                                f"--tp one of {', '.join(str(d) for d in range(1, n + 1) if n % d == 0 and d <= 64)}")
    if kv % tp and tp % kv:
        raise OptionsError(f"--tp {tp} and the model's {kv} key/value heads: neither divides the other",
                           hint="vLLM splits key/value heads across ranks or replicates them; choose --tp so "
                                "that one divides the other")
    if tp > 1 and getattr(text_config(model), "intermediate_size", None) is None:
        raise OptionsError("--tp needs a config with intermediate_size (the MLP width it splits)",
                           hint="a Llama-style config (hf:llama-7b, hf:mistral-7b); or size one GPU with --tp 1")
    if tp > 1 and text_config(model).intermediate_size % tp:
        raise OptionsError(f"--tp {tp} does not divide the MLP width {text_config(model).intermediate_size}",
                           hint="choose a --tp that divides intermediate_size")


def rank_model(model: nn.Module, tp: int) -> nn.Module:
    """The decoder one of ``tp`` ranks holds (the module docstring); ``model`` itself when that is
    the same (``tp`` = 1 and a vocabulary that is a multiple of 64)."""
    from ..frontends.base import build_on_meta, default_dtype
    from ..frontends.hfcheck import quiet_transformers

    check_tp(model, tp)
    n, kv, dim = heads(model)
    text = text_config(model)
    padded = -(-text.vocab_size // VOCAB_PADDING) * VOCAB_PADDING
    if tp == 1 and padded == text.vocab_size:
        return model
    config = copy.deepcopy(model.config)
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    cfg.vocab_size = padded // tp if padded % tp == 0 else -(-padded // tp)
    if tp > 1:
        cfg.num_attention_heads = n // tp
        if hasattr(cfg, "num_key_value_heads"):
            cfg.num_key_value_heads = max(1, kv // tp)
        cfg.head_dim = dim
        cfg.intermediate_size = cfg.intermediate_size // tp
    dtype = model_dtype(model)

    def build():
        with quiet_transformers(), default_dtype(dtype):
            return type(model)(config).eval()
    try:
        return build_on_meta(build).to(dtype)
    except Exception as exc:  # noqa: BLE001  (transformers rejecting the rank's config)
        raise InputError(f"cannot build one rank of {tp} from this config: {type(exc).__name__}: {exc}"[:300],
                         hint="size it with --tp 1") from None


class ProfileRun(nn.Module):
    """vLLM's profile run as one program (the module docstring): ``forward(ids)`` with ids of
    shape (1, T) returns the sampled tokens and the cache of the forward (see :func:`profile_peak`)."""

    def __init__(self, lm: nn.Module, requests: int, gather: int = 1):
        super().__init__()
        self.lm = lm
        self.requests = requests
        self.gather = gather
        self.training = False          # this wrapper only; the model's own mode is left as it is

    def forward(self, ids: torch.Tensor):
        base = getattr(self.lm, self.lm.base_model_prefix)
        out = base(input_ids=ids, use_cache=True)
        hidden = out.last_hidden_state               # (1, T, d), kept to the end as vLLM keeps it
        tokens, requests = ids.shape[1], self.requests
        per = tokens // requests                     # each request ⌊T / R⌋ tokens, the last one the rest
        last = torch.arange(1, requests + 1, device=ids.device) * per - 1
        last[-1] = tokens - 1
        logits = self.lm.get_output_embeddings()(torch.rand_like(hidden[0, last]))   # (R, V / tp)
        if self.gather > 1:                          # the vocab-parallel logits gathered to the whole vocabulary
            logits = torch.cat([logits] * self.gather, dim=-1)
        logits = logits.to(torch.float32)
        probs = logits.softmax(dim=-1, dtype=torch.float32)
        noise = torch.empty_like(probs).exponential_()
        return probs.div_(noise).argmax(dim=-1), cache_tensors(out.past_key_values)


def cache_tensors(cache) -> tuple:
    """The key and value tensors a transformers cache object holds (layer objects, or the older
    ``key_cache`` / ``value_cache`` lists)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        found = [getattr(layer, name, None) for layer in layers for name in ("keys", "values")]
    else:
        found = [*getattr(cache, "key_cache", ()), *getattr(cache, "value_cache", ())]
    return tuple(t for t in found if isinstance(t, torch.Tensor))


def profile_peak(model: nn.Module, tokens: int, requests: int, gather: int = 1) -> tuple[int, str]:
    """The activation peak of the profile run (bytes alive beyond the weights and inputs, each
    storage rounded up to 512 bytes as CUDA's caching allocator hands them out) and where it is.

    The forward runs with transformers' cache on: without one, a fake-tensor trace cannot read the
    positions transformers checks for packed sequences and builds a T × T mask a real run skips;
    with one it takes the mask-free causal path. The cache's keys and values are then left out
    of the live bytes, as vLLM's profile run has no KV cache."""
    ids = torch.zeros(1, tokens, dtype=torch.long, device="meta")
    report = count(ProfileRun(model, requests, gather), ids, options=Options())
    trace = report.trace
    tl = timeline(trace, rounding=CUDA_BLOCK)
    acts = list(tl.activations)
    if not acts:
        return 0, "(no ops)"
    _, cached = root_output(trace)               # the recorded cache tensors, with their storages
    for sid in {ref.storage for ref in cached if ref.storage >= 0}:
        st = trace.storages[sid]
        size = rounded(st.nbytes, CUDA_BLOCK)
        stop = len(acts) if st.freed is None else min(st.freed + 1, len(acts))
        for i in range(max(st.created, 0), stop):
            acts[i] -= size
    i = max(range(len(acts)), key=acts.__getitem__)
    ev = trace.events[i]
    module = ev.module.removeprefix("lm").removeprefix(".") or "(root)"
    if not ev.module.startswith("lm"):
        module = "the sampler's dummy run"
    return acts[i], f"{module} ({ev.op}.{ev.overload})"


def prefill(model: nn.Module, prompt: int):
    """The Report of a prefill of ``prompt`` tokens at batch 1 (cache on, last position's logits)."""
    from ..generate import _prefill_kwargs
    ids = torch.zeros(1, prompt, dtype=torch.long, device="meta")
    return count(model, ids, kwargs=_prefill_kwargs(model), options=Options())


def decode_flops(model: nn.Module, prompt: int, output: int) -> tuple[int, int]:
    """FLOPs (``dot``: 2 × MACs) of the first and last decode steps at batch 1: positions P + 1 and
    P + N − 1 (token 1 comes from the prefill; steps feed tokens 1 … N − 1)."""
    from ..generate import decode_step
    first = decode_step(model, prompt + 1).cost.flops("dot")
    last = first if output == 2 else decode_step(model, prompt + output - 1).cost.flops("dot")
    return first, last


def untied_input_embedding(model: nn.Module) -> tuple[str, int] | None:
    """(name, elements) of the input embedding table when it is not the output head's weight: a
    decode step looks up B rows of it, it does not read it whole."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    head = model.get_output_embeddings()
    weight = getattr(emb, "weight", None)
    if weight is None or weight is getattr(head, "weight", None):
        return None
    name = next((n for n, p in model.named_parameters() if p is weight), None)
    return (name, weight.numel()) if name else None


__all__ = [
    "VOCAB_PADDING",
    "ProfileRun",
    "check_decoder",
    "check_tp",
    "decode_flops",
    "heads",
    "model_dtype",
    "prefill",
    "profile_peak",
    "rank_model",
    "text_config",
    "untied_input_embedding",
]
