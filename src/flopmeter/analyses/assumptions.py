"""What a sizing answer assumes, as one typed record made from the run itself.

Every sizing answer (a memory total, "does it fit", the largest batch or context) depends on
choices a reader cannot see in the number: which attention kernel ran, whether the LM head ran
for every position or only the last, the loss, where the optimizer keeps its state, master
weights, autocast, checkpointing, adapters, the memory reserve, lifetimes. :func:`assumptions`
reads them from the trace (what ran) and from what the caller did to the model (a
:class:`.switches.Prepared`) and the budget; each renderer shows the same record (terminal,
Markdown, JSON under ``memory.assumptions``, HTML).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

NAMES = ("kernels", "logits", "loss", "optimizer", "master_weights", "autocast", "checkpointing", "adapters",
         "reserve", "lifetimes")
LABELS = {"kernels": "kernels", "logits": "logits kept", "loss": "loss", "optimizer": "optimizer state",
          "master_weights": "master weights", "autocast": "autocast", "checkpointing": "checkpointing",
          "adapters": "adapters", "reserve": "reserve", "lifetimes": "lifetimes"}
_LOSSES = {"sum": "the sum of every output (--loss sum; no softmax buffers)",
           "cross-entropy": "cross-entropy of the logits against class 0 at every position (--loss cross-entropy)"}
_STATES = {"sgd": 0, "sgd-momentum": 1, "adam": 2, "adamw": 2}
_STATE_NAMES = {"sgd-momentum": "momentum_buffer", "adam": "exp_avg, exp_avg_sq", "adamw": "exp_avg, exp_avg_sq"}


@dataclass(frozen=True)
class Assumption:
    name: str                      # one of NAMES
    value: str | int | None        # short, for machines: "last", "adamw", "fp32", a reserve in bytes
    text: str                      # the sentence a person reads

    @property
    def label(self) -> str:
        return LABELS[self.name]


@dataclass(frozen=True)
class Assumptions:
    """One :class:`Assumption` per name in :data:`NAMES`, in that order."""

    items: tuple[Assumption, ...]

    def __getitem__(self, name: str) -> Assumption:
        for a in self.items:
            if a.name == name:
                return a
        raise KeyError(name)

    def lines(self) -> list[tuple[str, str]]:
        return [(a.label, a.text) for a in self.items]

    def to_dict(self) -> dict:
        return {a.name: {"value": a.value, "text": a.text} for a in self.items}


def _dtype(name) -> str:
    return str(name).removeprefix("torch.")


def _weight_dtypes(trace, trainable_only: bool = False) -> list[str]:
    found = Counter()
    for p in trace.params:
        if p.kind == "param" and (p.requires_grad or not trainable_only):
            found[_dtype(p.dtype)] += p.numel
    return [d for d, _ in found.most_common()]


def kernels(trace) -> Assumption:
    """The attention kernel: as the report says the device chose it, else the ops the trace ran."""
    chosen = trace.extra.get("kernels")
    if isinstance(chosen, dict) and isinstance(chosen.get("attention"), list):
        return _kernels_chosen(chosen, trace.options.get("device", "cpu"))
    ops = Counter(ev.op for ev in trace.events if "attention" in ev.op and ev.phase in ("forward", ""))
    device = trace.options.get("device", "cpu")
    if not ops:
        return Assumption("kernels", "none", f"as traced on {device}: no fused attention kernel ran "
                                              "(attention, if any, as matmuls and softmax)")
    names = ", ".join(f"{op.removeprefix('aten.')} ×{n}" for op, n in ops.most_common())
    return Assumption("kernels", ",".join(op.removeprefix("aten.") for op in ops),
                      f"as traced on {device}: {names} (the kernel PyTorch picks there for these shapes and dtypes)")


def _kernels_chosen(chosen: dict, device: str) -> Assumption:
    """The kernels record a run for a named device keeps (``trace.extra["kernels"]``): each group
    of attention calls with the backend the device's rules chose, and dropout's kernel."""
    target = chosen.get("target") if isinstance(chosen.get("target"), dict) else {}
    where = target.get("name") or chosen.get("device") or device
    groups = [a for a in chosen["attention"] if isinstance(a, dict)]
    parts = [f"{a.get('backend', '?')} attention ({str(a.get('op', '?')).removeprefix('aten.')}) ×{a.get('calls', 1)}"
             for a in groups]
    dropout = chosen.get("dropout")
    if isinstance(dropout, dict) and dropout.get("kernel"):
        parts.append(f"dropout {dropout['kernel']} with a {dropout.get('mask_dtype', '?')} mask")
    backends = ",".join(dict.fromkeys(str(a.get("backend", "?")) for a in groups)) or "none"
    return Assumption("kernels", backends, f"as {where} takes them: {'; '.join(parts) or 'no attention kernel'}")


def logits(trace, generation: bool = False) -> Assumption:
    from ..memory.kvcache import root_output
    if generation:
        return Assumption("logits", "last", "the prefill keeps the last position's logits (logits_to_keep=1, as "
                                            "generate() calls it); each decode step makes one position's")
    out = root_output(trace)
    logit = out.get("logits") if isinstance(out, dict) else None
    ids = next((t for t in trace.inputs if t.ndim == 2 and not t.dtype.is_floating_point), None)
    if logit is None or ids is None or len(logit.shape) != 3:
        return Assumption("logits", "output", "the model's own output (not a language model's per-position logits)")
    kept, positions = logit.shape[1], ids.shape[1]
    if kept == positions:
        what = "every position's logits ("
        if trace.options.get("training"):
            what += "a training step's loss reads them all"
        else:
            what += "--logits all; generate() keeps only the last"
        return Assumption("logits", "all", f"{what}): {list(logit.shape)} in {_dtype(logit.dtype)}")
    return Assumption("logits", "last" if kept == 1 else str(kept),
                      f"the last {'position' if kept == 1 else f'{kept} positions'} only (logits_to_keep={kept}, as "
                      f"generate()'s prefill; --logits all for every position): {list(logit.shape)}")


def loss(trace) -> Assumption:
    if not trace.options.get("training"):
        return Assumption("loss", "none", "none: an inference forward (no loss, no backward)")
    name = trace.options.get("loss", "sum")
    return Assumption("loss", name, _LOSSES.get(name, f"the callable {name}"))


def optimizer(trace, info: dict) -> Assumption:
    if not trace.options.get("training"):
        return Assumption("optimizer", "none", "none: an inference forward")
    name = trace.options.get("optimizer")
    if not name:
        return Assumption("optimizer", "none", "no optimizer step (--optimizer adamw adds one)")
    dtypes = info.get("optimizer_state_dtypes") or {}
    big = max(dtypes, key=dtypes.get) if dtypes else None
    per = _STATES.get(name, 0)
    state = (f"{per} state{'s' if per != 1 else ''} per parameter ({_STATE_NAMES[name]}) in {big}"
             if per and big else "no state")
    where = "the float32 masters'" if trace.options.get("master_weights") else "the trainable weights'"
    text = f"{name}: {state}, {where} dtype"
    if name.startswith("adam"):
        text += "; a float32 step count per tensor"
    text += f"; {info.get('optimizer_state_bytes', 0):,} bytes, made in this (first) step and held through later steps"
    return Assumption("optimizer", f"{name}:{big}" if big else name, text)


def master_weights(trace, info: dict) -> Assumption:
    if not trace.options.get("training") or not trace.options.get("optimizer"):
        return Assumption("master_weights", "none", "none: no optimizer step")
    if trace.options.get("master_weights"):
        return Assumption("master_weights", "fp32",
                          f"fp32: a float32 copy of every 16-bit trainable weight ({info.get('master_bytes', 0):,} "
                          "bytes); 16-bit gradients copied into float32 ones, the optimizer steps the copies and "
                          "writes them back (mixed precision)")
    dtypes = _weight_dtypes(trace, trainable_only=True)
    if dtypes and all(d in ("bfloat16", "float16") for d in dtypes):
        return Assumption("master_weights", "none",
                          f"none: the optimizer updates the {'/'.join(dtypes)} weights themselves, its state in "
                          f"{'/'.join(dtypes)} (pure 16-bit training; --master-weights fp32 for mixed precision)")
    return Assumption("master_weights", "none", f"none needed: the trainable weights are {'/'.join(dtypes) or 'none'}")


def autocast(trace, info: dict) -> Assumption:
    dtype = trace.options.get("autocast")
    if not dtype:
        return Assumption("autocast", "off", "off: every op in its inputs' dtype")
    copies = info.get("autocast_copy_bytes", 0)
    text = f"torch.autocast({dtype}): matmuls and convolutions in {dtype}"
    if trace.options.get("training"):
        text += f" from per-op copies of the weights ({copies:,} bytes in this step)"
    return Assumption("autocast", dtype, text)


def checkpointing(trace, prepared=None) -> Assumption:
    recomputed = sum(1 for ev in trace.events if ev.phase == "recompute")
    how = getattr(prepared, "checkpointing", None)
    if how is not None:
        return Assumption("checkpointing", how.how, f"on: {how.where}; {recomputed:,} ops run again in backward")
    if recomputed:
        return Assumption("checkpointing", "traced", f"on, in the model's own code: {recomputed:,} ops run again in "
                                                     "backward")
    if trace.options.get("training"):
        return Assumption("checkpointing", "off", "off: every tensor saved for backward is kept (--checkpointing)")
    return Assumption("checkpointing", "off", "off (an inference forward keeps nothing for backward)")


def adapters(trace, prepared=None) -> Assumption:
    a = getattr(prepared, "adapters", None)
    if a is None:
        frozen = sum(p.numel for p in trace.params if p.kind == "param" and not p.requires_grad)
        total = sum(p.numel for p in trace.params if p.kind == "param")
        if trace.options.get("training") and frozen:
            return Assumption("adapters", "none", f"none added; {frozen:,} of {total:,} parameters frozen by the model")
        what = "full fine-tuning: every parameter trainable" if trace.options.get("training") else "the model as given"
        return Assumption("adapters", "none", f"none ({what})")
    text = (f"{'QLoRA' if a.kind == 'qlora' else 'LoRA'} r={a.r}, alpha {a.alpha:g} on {', '.join(a.targets)} "
            f"({a.layers} layers, peft {a.peft_version}): {a.trainable:,} trainable parameters in {a.dtype}, "
            "the base frozen")
    if a.kind == "qlora":
        text += (f"; the base Linear weights ({len(a.quantised)} tensors, all but the output head) counted in nf4 "
                 f"(the {a.dtype} copy bitsandbytes dequantises for one matmul at a time is not in the total)")
    return Assumption("adapters", a.kind, text)


def _reserve(budget) -> Assumption:
    if budget is None:
        return Assumption("reserve", None, "no budget given (--fits): nothing held back")
    if budget.device is None:
        return Assumption("reserve", 0, "none: the budget is a size as given (a device name takes off the "
                                        "device's reserve)")
    why = ("given with --reserve" if budget.reserve_note == "given" else
           "the device table's default for the driver's share, the CUDA context with its libraries, workspaces and "
           "allocator slack; measure yours with torch.cuda.mem_get_info() and pass --reserve")
    return Assumption("reserve", budget.reserve, f"{budget.reserve:,} bytes of {budget.device.name}'s "
                                                 f"{budget.total:,} held back ({why})")


def lifetimes(trace) -> Assumption:
    text = "eager: a tensor lives until the program drops its last reference (not until its last use)"
    if trace.options.get("training"):
        text += "; one step from zero gradients"
    return Assumption("lifetimes", "eager", text)


def assumptions(report, *, budget=None, prepared=None, generation: bool = False) -> Assumptions:
    """The :class:`Assumptions` of a counted run (``report`` or its trace)."""
    trace = report.trace if hasattr(report, "trace") else report
    info = trace.extra.get("training") or {}
    return Assumptions((kernels(trace), logits(trace, generation), loss(trace), optimizer(trace, info),
                        master_weights(trace, info), autocast(trace, info), checkpointing(trace, prepared),
                        adapters(trace, prepared), _reserve(budget), lifetimes(trace)))


__all__ = ["LABELS", "NAMES", "Assumption", "Assumptions", "assumptions"]
