"""Sizing switches, applied to a copy of the model: LoRA and QLoRA adapters (the real ``peft``
library) and activation checkpointing.

- The user's model is never changed. The switches go on a copy whose parameters and buffers
  are meta tensors of the same shapes, dtypes and ``requires_grad`` (no weight is copied; fake
  mode counts the copy as it would the model).
- **LoRA** (``Lora(r, targets)``): ``peft.LoraConfig(r=r, target_modules=targets or peft's
  default for the architecture)`` and ``peft.get_peft_model``: the base frozen, the adapters
  trainable, peft's other defaults (``lora_alpha`` 8; adapters in float32 on a 16-bit base,
  ``autocast_adapter_dtype``). What is counted is ``get_base_model()``: the model's own module
  tree with the LoRA layers in it (``….q_proj.base_layer``, ``….q_proj.lora_A.default``).
- **QLoRA** (``qlora=True``): the same adapters in the compute dtype (the base's own dtype;
  ``autocast_adapter_dtype=False``), and the frozen base weights of every ``Linear`` but the
  output head named for the ``nf4`` weight format (:mod:`flopmeter.memory.weights`), as
  bitsandbytes' 4-bit loading quantises them.
- **Checkpointing**: the model's own ``activation_checkpointing_enable()`` (or
  ``gradient_checkpointing_enable``) with ``use_reentrant=False`` where it has one; otherwise
  ``torch.utils.checkpoint`` (non-reentrant) around each block of the longest ``ModuleList`` or
  ``Sequential`` of two or more modules of one class.
"""

from __future__ import annotations

import contextlib
import copy
import re
import warnings
from dataclasses import dataclass
from types import MethodType

import torch
from torch import nn

from ..errors import InputError, MissingDependencyError, OptionsError


@dataclass(frozen=True)
class Lora:
    """LoRA of rank ``r`` on the modules named ``targets`` (None: peft's default for the
    architecture; ``("all-linear",)``: every Linear but the output head)."""

    r: int
    targets: tuple[str, ...] | None = None

    def __post_init__(self):
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            raise OptionsError(f"a LoRA rank is a positive integer, not {self.r!r}", hint="e.g. --lora 16")


def parse_lora(text: str) -> Lora:
    """'16' → rank 16 on peft's default targets; '16:q_proj,v_proj' → on those modules;
    '16:all-linear' → on every Linear but the head."""
    rank, _, targets = text.strip().partition(":")
    if not re.fullmatch(r"[0-9]+", rank) or int(rank) < 1:
        raise OptionsError(f"cannot read the LoRA rank in '{text}'",
                           hint="write R or R:TARGETS, e.g. --lora 16 or --lora 16:q_proj,v_proj")
    names = tuple(n.strip() for n in targets.split(",") if n.strip()) if targets else None
    if targets and not names:
        raise OptionsError(f"no target modules after ':' in '{text}'", hint="e.g. --lora 16:q_proj,v_proj")
    return Lora(int(rank), names)


@dataclass(frozen=True)
class Adapters:
    """What the adapters are, as peft made them."""

    kind: str                          # "lora" or "qlora"
    r: int
    alpha: float
    targets: tuple[str, ...]           # the module names peft matched (last path component)
    layers: int                        # LoRA layers inserted
    trainable: int                     # their parameters
    dtype: str                         # the adapters' dtype
    quantised: frozenset = frozenset()  # QLoRA: names of the parameters counted in nf4
    peft_version: str = ""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "r": self.r, "alpha": self.alpha, "targets": list(self.targets),
                "layers": self.layers, "trainable": self.trainable, "dtype": self.dtype,
                "quantised_tensors": len(self.quantised), "peft_version": self.peft_version}


@dataclass(frozen=True)
class Checkpointing:
    how: str                           # "model": the model's own method; "blocks": per block
    where: str                         # what was called, in words
    blocks: int = 0


@dataclass
class Prepared:
    """The copy to count and what was done to it."""

    model: nn.Module
    adapters: Adapters | None = None
    checkpointing: Checkpointing | None = None


def meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are meta tensors (same shape,
    dtype, strides and ``requires_grad``; tied tensors stay tied); nothing of the model changes."""
    memo: dict[int, object] = {}
    for t in (*model.parameters(), *model.buffers()):
        if id(t) in memo:
            continue
        meta = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")
        memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
    try:
        return copy.deepcopy(model, memo)
    except Exception as exc:  # noqa: BLE001  (a model holding something that cannot be copied)
        raise InputError(f"cannot copy the model to add the sizing switches to it ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''})",
                         hint="flopmeter adds adapters and checkpointing to a copy, never to your model; "
                              "build them into the model yourself and count it with --train") from None


@contextlib.contextmanager
def _quiet():
    import logging
    loggers = [logging.getLogger(n) for n in ("peft", "transformers")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def prepare(model: nn.Module, *, lora: Lora | None = None, qlora: bool = False,
            checkpointing: bool = False) -> Prepared:
    """A copy of ``model`` with the switches on (see the module docstring)."""
    if qlora and lora is None:
        raise OptionsError("QLoRA is LoRA on a 4-bit base: it needs the adapters' rank",
                           hint="add --lora R (e.g. --qlora --lora 16)")
    out = Prepared(meta_copy(model))
    with _quiet():
        if checkpointing:
            out.checkpointing = _checkpoint(out.model)
        if lora is not None:
            out.model, out.adapters = _lora(out.model, lora, qlora)
    return out


def _lora(model: nn.Module, lora: Lora, qlora: bool) -> tuple[nn.Module, Adapters]:
    try:
        import peft
    except ImportError:
        raise MissingDependencyError("peft", "lora") from None
    targets = None
    if lora.targets is not None:
        targets = "all-linear" if lora.targets == ("all-linear",) else list(lora.targets)
    linears = sorted({name.rpartition(".")[2] for name, m in model.named_modules() if isinstance(m, nn.Linear)})
    hint = (f"name them after the colon, e.g. --lora {lora.r}:{','.join(linears[:2]) or 'fc1'} "
            f"(this model's Linear layers: {', '.join(linears[:12]) or 'none'})")
    try:
        config = peft.LoraConfig(r=lora.r, target_modules=targets)
        wrapped = peft.get_peft_model(model, config, autocast_adapter_dtype=not qlora)
    except Exception as exc:  # noqa: BLE001  (peft's own refusals: no such module, a layer type it cannot adapt, …)
        first = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else type(exc).__name__
        raise OptionsError(f"peft cannot add LoRA adapters to this model: {first}", hint=hint) from None
    base = wrapped.get_base_model()
    layers = [(name, m) for name, m in base.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer)]
    trainable = sum(p.numel() for p in base.parameters() if p.requires_grad)
    dtypes = {p.dtype for p in base.parameters() if p.requires_grad}
    found = tuple(sorted({name.rpartition(".")[2] for name, _ in layers}))
    quantised: frozenset = frozenset()
    if qlora:
        quantised = _base_linear_weights(base)
    used = wrapped.peft_config["default"]
    return base, Adapters("qlora" if qlora else "lora", lora.r, float(used.lora_alpha), found, len(layers), trainable,
                          ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes)), quantised,
                          getattr(peft, "__version__", ""))


def _base_linear_weights(model: nn.Module) -> frozenset:
    """Names of the frozen weights of every Linear but the output head: what bitsandbytes'
    4-bit loading quantises (it keeps the output embeddings, and the adapters are not its)."""
    head = None
    get_head = getattr(model, "get_output_embeddings", None)
    if callable(get_head):
        with contextlib.suppress(Exception):
            head = get_head()
    names = set()
    for path, m in model.named_modules():
        if type(m) is nn.Linear and m is not head and path.rpartition(".")[2] != "lm_head" \
                and not m.weight.requires_grad:
            names.add(f"{path}.weight" if path else "weight")
    return frozenset(names)


def _checkpoint(model: nn.Module) -> Checkpointing:
    for method in ("activation_checkpointing_enable", "gradient_checkpointing_enable"):
        enable = getattr(model, method, None)
        if callable(enable) and getattr(model, "supports_gradient_checkpointing", False):
            options = {"use_reentrant": False}
            kwargs = ({"activation_checkpointing_kwargs": options}
                      if method.startswith("activation") else {"gradient_checkpointing_kwargs": options})
            try:
                enable(**kwargs)
            except (ValueError, TypeError):
                break
            return Checkpointing("model", f"{type(model).__name__}.{method}(use_reentrant=False), the model's own")
    path, blocks = _repeated_blocks(model)
    if not blocks:
        raise OptionsError(f"--checkpointing: {type(model).__name__} has no gradient_checkpointing_enable() and no "
                           "repeated blocks (a ModuleList or Sequential of two or more modules of one class) "
                           "to checkpoint", hint="call torch.utils.checkpoint in the model's forward and count it "
                                                 "with --train (the recompute is traced as it runs)")
    for block in blocks:
        block.forward = MethodType(_checkpointed_forward, block)     # on the copy only
    return Checkpointing("blocks", f"torch.utils.checkpoint (use_reentrant=False) around each of the {len(blocks)} "
                                   f"{type(blocks[0]).__name__} blocks of {path or '(root)'}", len(blocks))


def _checkpointed_forward(self, *args, **kwargs):
    from torch.utils.checkpoint import checkpoint
    return checkpoint(type(self).forward, self, *args, use_reentrant=False, **kwargs)



def _repeated_blocks(model: nn.Module) -> tuple[str, list[nn.Module]]:
    """The longest ModuleList or Sequential whose children are two or more modules of one class
    that have submodules of their own (first found on ties)."""
    best: tuple[str, list[nn.Module]] = ("", [])
    for path, m in model.named_modules():
        if not isinstance(m, (nn.ModuleList, nn.Sequential)):
            continue
        kids = list(m.children())
        if len(kids) >= 2 and len({type(k) for k in kids}) == 1 and any(True for _ in kids[0].children()) \
                and len(kids) > len(best[1]):
            best = (path, kids)
    return best


__all__ = ["Adapters", "Checkpointing", "Lora", "Prepared", "meta_copy", "parse_lora", "prepare"]
