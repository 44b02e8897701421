"""The weights one tensor-parallel rank holds: in a flopmeter weight format, or as a checkpoint
stores them.

- A **format** (:func:`flopmeter.memory.parse_format`: ``stored``, ``float16``, ``bfloat16``,
  ``float8``, ``int8``, ``int4``, ``int4:64``) applies to the rank's own tensors.
- A **checkpoint** (a file, an index or a folder, read by its headers alone:
  :func:`flopmeter.frontends.checkpoint.read_checkpoint`) gives each parameter the bytes it is
  stored in; the tensors of a quantization (``qweight``, ``scales``, ``weight_scale_inv``, …)
  count as the weight they quantize, as the checkpoint front end matches them
  (:func:`~flopmeter.frontends.checkpoint.report.compare_with_model`). A folder spec with its
  config.json is read as its own checkpoint.
- **{tensor name: bytes}** (from Python) is the same with the bytes given; a module's tensors the
  model does not name count as its ``weight``.

A rank holds its share of each parameter's bytes: the rank's elements over the whole tensor's,
rounded up. Parameters the checkpoint does not hold count at the model's dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..errors import InputError, OptionsError, expect_type
from ..memory.weights import parse_format, tensors_of_model, weight_bytes
from . import serving_model as sm


@dataclass(frozen=True)
class RankWeights:
    """The weights one rank holds: parameters and buffers in one format (scales included)."""
    format: str
    label: str
    params: int
    buffers: int
    embedding: int = 0              # bytes of an input embedding table not tied to the output head
    fp8: bool = False               # matrix products in fp8 (weights stored as float8)
    notes: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        return self.params + self.buffers

    def to_dict(self) -> dict:
        return {"format": self.format, "label": self.label, "params": self.params, "buffers": self.buffers,
                "total": self.total, "untied_input_embedding": self.embedding, "fp8_matmul": self.fp8}


def resolve_weights(weights, spec) -> tuple[str, object]:
    """("format", name) or ("checkpoint", Checkpoint) or ("bytes", mapping), checked before any
    model is built; a folder spec with its checkpoint is its own unless a format is given."""
    from ..frontends.checkpoint import Checkpoint, read_checkpoint
    if isinstance(weights, Checkpoint):
        return "checkpoint", weights
    if isinstance(weights, Mapping):
        for name, nbytes in weights.items():
            expect_type(nbytes, int, f"serve(weights[{name!r}])", "a number of bytes")
        return "bytes", weights
    expect_type(weights, (str, Path), "serve(weights)", "a weight format, a checkpoint path or {tensor name: bytes}")
    if isinstance(weights, str):
        try:
            parse_format(weights)
        except OptionsError:
            if not Path(weights).expanduser().exists():
                raise
        else:
            if weights.strip().lower() in ("stored", "as-stored") and isinstance(spec, str):
                from ..frontends.checkpoint.folder import has_config
                if has_config(spec):
                    return "checkpoint", read_checkpoint(spec)
            return "format", weights
    return "checkpoint", read_checkpoint(weights)


def checkpoint_bytes(checkpoint: Mapping[str, int], names) -> dict[str, int]:
    """Bytes by the model's tensor names from bytes by a checkpoint's names: a name the model has
    is its own; the tensors of a module whose names the model does not have (a GPTQ or AWQ
    module's ``qweight``, ``qzeros``, ``scales``, ``g_idx``) are together its ``weight``."""
    out: dict[str, int] = {}
    for name, nbytes in checkpoint.items():
        if name in names:
            out[name] = out.get(name, 0) + nbytes
        else:
            key = f"{name.rpartition('.')[0]}.weight"
            if key in names and key not in checkpoint:
                out[key] = out.get(key, 0) + nbytes
    return out


def stored_bytes(ckpt, model: nn.Module) -> tuple[dict[str, int], list[str]]:
    """Bytes by the model's parameter names as ``ckpt`` stores them, and notes."""
    from ..frontends.checkpoint.report import compare_with_model
    c = compare_with_model(ckpt, model)
    stored = ckpt.names()
    groups: dict[int, list[str]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(t), []).append(name)
    out = {}
    for first, p in model.named_parameters():
        held = [n for n in groups.get(id(p), [first]) if n in stored or n in c.quantized]
        if not held:
            continue
        name = held[0]
        parts, main = c.quantized.get(name, []), stored.get(name)
        if parts:
            out[first] = sum(stored[n].nbytes for n in dict.fromkeys(parts + ([name] if main is not None else [])))
        elif main is not None and main.shape == tuple(p.shape):
            out[first] = main.nbytes
    if not out:
        raise InputError(f"none of the checkpoint's {len(ckpt.tensors):,} tensor names is one of the model's "
                         "parameters", hint="give the checkpoint of this model (Hugging Face names, as "
                                            "save_pretrained writes them), or a weight format: --weights int4")
    notes = []
    missing = [n for n, _ in model.named_parameters() if n not in out]
    if missing:
        notes.append(f"{len(missing)} parameter(s) not in the checkpoint counted at the model's dtype: "
                     + ", ".join(missing[:3]) + (", …" if len(missing) > 3 else ""))
    return out, notes


def rank_weights(model: nn.Module, rank: nn.Module, weights: tuple[str, object]) -> RankWeights:
    """The weights of ``rank`` (one rank's model of ``model``) as :func:`resolve_weights` gave them."""
    kind, value = weights
    emb = sm.untied_input_embedding(rank)
    tensors = tensors_of_model(rank)
    if kind == "format":
        fmt = parse_format(value)
        w = weight_bytes(tensors, fmt)
        return RankWeights(w.format, w.label, w.params, w.buffers, w.by_tensor.get(emb[0], 0) if emb else 0,
                           fp8=fmt.name == "float8")
    full = {t.name: t.numel for t in tensors_of_model(model)}
    if kind == "checkpoint":
        stored, notes = stored_bytes(value, model)
        formats = sorted(value.by_format(), key=lambda f: -value.by_format()[f][1])
        label = f"as {Path(value.path).name} stores them: {', '.join(formats)}"
        fp8 = bool(formats) and formats[0].startswith("float8")
    else:
        stored, notes = checkpoint_bytes(value, full), []
        label, fp8 = f"as the checkpoint stores them ({len(value)} tensors)", False
    share = {t.name: (t.nbytes if t.name not in stored or not full.get(t.name)
                      else -(-stored[t.name] * t.numel // full[t.name])) for t in tensors}
    params = sum(share[t.name] for t in tensors if t.role == "parameter")
    buffers = sum(share[t.name] for t in tensors if t.role != "parameter")
    return RankWeights("checkpoint", label, params, buffers, share.get(emb[0], 0) if emb else 0, fp8, tuple(notes))


__all__ = ["RankWeights", "checkpoint_bytes", "rank_weights", "resolve_weights", "stored_bytes"]
