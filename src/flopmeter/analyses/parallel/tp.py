"""Tensor-parallel plans: which module of a model is split how, as PyTorch's ``parallelize_module``
takes them.

The built-in plan is for the Hugging Face Llama family (``LlamaForCausalLM`` and the models built
the same way: ``model.embed_tokens``, ``model.layers[i].self_attn.{q,k,v,o}_proj``,
``model.layers[i].mlp.{gate,up,down}_proj``, ``model.norm``, ``lm_head``; Mistral, Qwen2 and
Qwen3 are). It is Megatron-LM's split (Shoeybi et al. 2019):

- q, k, v, gate and up projections column-wise (each rank holds heads / tp heads and
  intermediate / tp columns), o and down projections row-wise: one all-reduce of the block's
  output (b·s·h elements) after attention and one after the MLP in the forward, and one of the
  block's input gradient for each in the backward (the attention and MLP inputs enter as one
  replicated DTensor, so q, k and v — and gate and up — share that one reduction);
- the embedding row-wise (vocabulary split; an all-reduce of its output), the LM head
  column-wise with its logits gathered (an all-gather of b·s·vocab).

With sequence parallelism (``sp``; Korthikanti et al. 2022) the norms run on sequence shards
(``SequenceParallel``), each all-reduce becomes a reduce-scatter (row-wise outputs ``Shard(1)``)
and an all-gather (``PrepareModuleInput`` before attention and MLP), in the forward and the
backward alike.
"""

from __future__ import annotations

from torch import nn

from ...errors import InputError, OptionsError

LAYER_PARTS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def llama_like(model: nn.Module) -> bool:
    """Whether ``model`` is built as the Llama family is (see the module docstring)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(getattr(model, "lm_head", None), nn.Linear) or layers is None or not len(layers):
        return False
    if not isinstance(getattr(inner, "embed_tokens", None), nn.Embedding):
        return False
    names = dict(layers[0].named_modules())
    return all(isinstance(names.get(p), nn.Linear) for p in LAYER_PARTS)


def check_divisible(model: nn.Module, tp: int) -> None:
    """Refuse a TP degree that does not divide the attention heads, the key/value heads, the
    hidden size, the MLP width or the vocabulary."""
    config = getattr(model, "config", None)
    sizes = {"attention heads": getattr(config, "num_attention_heads", None),
             "key/value heads": getattr(config, "num_key_value_heads", None) or getattr(config, "num_attention_heads",
                                                                                       None),
             "hidden size": getattr(config, "hidden_size", None),
             "MLP width (intermediate_size)": getattr(config, "intermediate_size", None),
             "vocabulary": getattr(config, "vocab_size", None)}
    for what, size in sizes.items():
        if isinstance(size, int) and size % tp:
            fits = [d for d in range(1, min(size, 64) + 1) if size % d == 0 and all(
                not isinstance(s, int) or s % d == 0 for s in sizes.values())]
            raise OptionsError(f"--tp {tp} does not divide the model's {what} ({size})",
                               hint=f"use a TP degree that divides every split size, e.g. {', '.join(map(str, fits[-4:]))}")


def tp_plans(model: nn.Module, sp: bool) -> list[tuple[str, dict]]:
    """[(module path, {relative path: ParallelStyle})] to give ``parallelize_module`` in order,
    for a Llama-family model; an InputError for a model without a built-in plan."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        PrepareModuleInput,
        RowwiseParallel,
        SequenceParallel,
    )
    if not llama_like(model):
        raise InputError(f"no built-in tensor-parallel plan for {type(model).__name__}",
                         hint="tensor parallelism is built in for the Llama family (Llama, Mistral, Qwen2); "
                              "plan this model with --tp 1, or give plan(tp_plan=…) from Python")
    if sp:
        top = {"model.embed_tokens": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1),
                                                     use_local_output=False),
               "model.norm": SequenceParallel(),
               "lm_head": ColwiseParallel(input_layouts=Shard(1), output_layouts=Replicate())}
        layer = {"input_layernorm": SequenceParallel(),
                 "self_attn": PrepareModuleInput(input_kwarg_layouts={"hidden_states": Shard(1)},
                                                 desired_input_kwarg_layouts={"hidden_states": Replicate()}),
                 "self_attn.o_proj": RowwiseParallel(output_layouts=Shard(1), use_local_output=False),
                 "post_attention_layernorm": SequenceParallel(),
                 "mlp": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
                 "mlp.down_proj": RowwiseParallel(output_layouts=Shard(1), use_local_output=False)}
    else:
        top = {"model.embed_tokens": RowwiseParallel(input_layouts=Replicate()),
               "lm_head": ColwiseParallel(output_layouts=Replicate())}
        layer = {"self_attn": PrepareModuleInput(input_kwarg_layouts={"hidden_states": Replicate()},
                                                 desired_input_kwarg_layouts={"hidden_states": Replicate()}),
                 "self_attn.o_proj": RowwiseParallel(),
                 "mlp": PrepareModuleInput(input_layouts=(Replicate(),), desired_input_layouts=(Replicate(),)),
                 "mlp.down_proj": RowwiseParallel()}
    for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"):
        layer[name] = ColwiseParallel()
    return [("", top)] + [(f"model.layers.{i}", dict(layer)) for i in range(len(model.model.layers))]


__all__ = ["LAYER_PARTS", "check_divisible", "llama_like", "tp_plans"]
