"""A checkpoint as a Report, and a checkpoint set beside the model its config builds.

- :func:`checkpoint_report`: a Trace with no events — modules from the tensor names' dotted
  paths, one parameter per unique tensor at its stored bytes — built by the usual
  ``build_report``; ``mode`` is ``"checkpoint"``; ``trace.extra["checkpoint"]`` holds the
  tensors and totals (the JSON report's ``checkpoint`` section).
- :func:`compare_with_model`: where a checkpoint and the model built from its config disagree:
  tensors the model has and the checkpoint lacks, tensors the checkpoint has and the model
  lacks, shapes that differ, weights the model ties that the checkpoint stores twice. The
  tensors of a quantization (``qweight``, ``scales``, ``weight_scale_inv``, …) are folded into
  the weight they quantize, as its stored bytes.
- :func:`with_checkpoint`: a Report of that model whose parameters carry the checkpoint's
  stored formats and bytes, with the comparison in ``trace.extra["checkpoint"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...report import build_report
from ...trace.model import ModuleInfo, ParamInfo, Trace
from .formats import Format
from .model import Checkpoint, layer_group

# names a quantization stores beside (or instead of) "<module>.weight"
QUANT_SUFFIXES = ("qweight", "qzeros", "scales", "g_idx", "weight_scale", "weight_scale_inv", "input_scale",
                  "weight_zero_point", "weight_packed", "weight_shape", "weight_global_scale", "SCB", "weight_format")


class CheckpointParam(ParamInfo):
    """A parameter at the bytes and format the checkpoint stores it in."""

    stored: int = 0

    @property
    def nbytes(self) -> int:
        return self.stored


def _param(name: str, shape, fmt, nbytes: int, aliases=()) -> CheckpointParam:
    p = CheckpointParam(name, "param", tuple(shape), fmt.dtype or fmt, True, aliases=tuple(aliases))
    p.stored = nbytes
    return p


def _modules(names) -> list[ModuleInfo]:
    paths = {""}
    for name in names:
        module = name.rpartition(".")[0]
        while module not in paths:
            paths.add(module)
            module = module.rpartition(".")[0]
    return [ModuleInfo(p, "Checkpoint" if not p else "Group", calls=1) for p in sorted(paths, key=_order)]


def _order(path: str):
    """Parents before children, numbered parts in numeric order (layers.2 before layers.10)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.split(".")) if path else ()


def checkpoint_report(ckpt: Checkpoint, name: str | None = None):
    params = [_param(t.name, t.shape, t.format, t.nbytes, t.aliases) for t in ckpt.tensors]
    trace = Trace(events=[], modules=_modules(p.name for p in params), params=params, inputs=[],
                  options={"mode": "checkpoint", "device": "none", "inference": True}, model=name or ckpt.path,
                  torch_version=torch.__version__, extra={"frontend": "checkpoint", "checkpoint": summary(ckpt),
                                                          "notes": list(ckpt.notes)})
    return build_report(trace)


def summary(ckpt: Checkpoint) -> dict:
    d = ckpt.to_dict()
    d["by_layer"] = {k: {"params": p, "bytes": b} for k, (p, b) in ckpt.by_layer().items()}
    return d


@dataclass
class Comparison:
    """Where a checkpoint and the model of its config disagree (empty lists: they agree)."""

    missing: list[str] = field(default_factory=list)            # in the model, not in the checkpoint
    extra: list[str] = field(default_factory=list)              # in the checkpoint, not in the model
    shapes: list[tuple[str, tuple, tuple]] = field(default_factory=list)   # name, checkpoint shape, model shape
    stored_twice: list[tuple[list[str], int]] = field(default_factory=list)  # tied names stored apart, extra bytes
    quantized: dict[str, list[str]] = field(default_factory=dict)  # model weight → the checkpoint tensors holding it

    @property
    def agrees(self) -> bool:
        return not (self.missing or self.extra or self.shapes or self.stored_twice)

    def to_dict(self) -> dict:
        return {"agrees": self.agrees, "missing": self.missing, "extra": self.extra,
                "shape_mismatches": [{"name": n, "checkpoint": list(c), "model": list(m)} for n, c, m in self.shapes],
                "tied_stored_twice": [{"names": names, "extra_bytes": b} for names, b in self.stored_twice],
                "quantized": self.quantized}

    def lines(self) -> list[tuple[str, str]]:
        """(heading, text) lines of the comparison section."""
        if self.agrees:
            return [("checkpoint vs config", ("they agree: every tensor of the model is in the checkpoint, "
                                             "with its shape, and nothing more"))]
        out = []
        for key, names in (("missing in checkpoint", self.missing), ("not in the model", self.extra)):
            if names:
                out.append((key, f"{len(names)} tensor(s): {_few(names)}"))
        if self.shapes:
            out.append(("shape mismatch", f"{len(self.shapes)} tensor(s): " + "; ".join(
                f"{n} checkpoint {list(c)} vs model {list(m)}" for n, c, m in self.shapes[:3])
                + ("; …" if len(self.shapes) > 3 else "")))
        for names, extra in self.stored_twice:
            out.append(("tied, stored twice", (f"{' = '.join(names)}: the model ties them, the checkpoint stores "
                                              f"{len(names)} copies ({extra:,} bytes more than needed)")))
        return out


def _few(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f", … ({len(names) - n} more)" if len(names) > n else "")


def model_tensors(model: torch.nn.Module) -> tuple[dict[str, tuple], list[list[str]]]:
    """The tensors a checkpoint of ``model`` holds (its state dict: parameters and persistent
    buffers) by name → shape, and the groups of names that are one tensor (tied)."""
    shapes, groups = {}, {}
    for name, t in model.state_dict(keep_vars=True).items():
        shapes[name] = tuple(t.shape)
        groups.setdefault(id(t), []).append(name)
    return shapes, [g for g in groups.values() if len(g) > 1]


def compare_with_model(ckpt: Checkpoint, model: torch.nn.Module) -> Comparison:
    shapes, ties = model_tensors(model)
    stored = ckpt.names()
    tied_to = {n: g for g in ties for n in g}
    c = Comparison()
    for name in list(stored):
        if name in shapes:
            continue
        module, _, suffix = name.rpartition(".")
        owner = next((f"{p}.weight" for p in (module, name.partition(".weight.")[0]) if f"{p}.weight" in shapes
                      and (suffix in QUANT_SUFFIXES or name.startswith(f"{p}.weight."))), None)
        if owner is not None:
            c.quantized.setdefault(owner, []).append(name)
        else:
            c.extra.append(name)
    for name, shape in shapes.items():
        if name in stored:
            t = stored[name]
            if t.shape != shape and not (name in c.quantized or not t.format.is_floating_point):
                c.shapes.append((name, t.shape, shape))
            elif t.shape != shape:
                c.quantized.setdefault(name, []).insert(0, name)
        elif name not in c.quantized and not any(n in stored for n in tied_to.get(name, ())):
            c.missing.append(name)
    for group in ties:
        held = {id(stored[n]): stored[n] for n in group if n in stored}
        if len(held) > 1:
            copies = sorted(held.values(), key=lambda t: t.name)
            c.stored_twice.append(([t.name for t in copies], sum(t.nbytes for t in copies[1:])))
    return c


def _quant_label(config: dict | None) -> str:
    q = (config or {}).get("quantization_config") or {}
    method, bits = q.get("quant_method"), q.get("bits") or q.get("weight_bits")
    return f"{method or 'quantized'}{f'-{bits}bit' if bits else ''}"


def stored_params(trace_params: list[ParamInfo], ckpt: Checkpoint, c: Comparison,
                  config: dict | None = None) -> list[ParamInfo]:
    """The model's parameters at the checkpoint's stored format and bytes, where it holds them."""
    stored = ckpt.names()
    out = []
    for p in trace_params:
        if p.kind != "param":
            out.append(p)
            continue
        names = [n for n in (p.name, *p.aliases) if n in stored or n in c.quantized]
        if not names:
            out.append(p)                          # missing: at the model's dtype (the comparison says so)
            continue
        name = names[0]
        parts = c.quantized.get(name, [])
        main = stored.get(name)
        if main is not None and main.shape != p.shape and name not in parts:
            out.append(p)                          # a shape mismatch: the model's own size
            continue
        if parts:
            nbytes = sum(stored[n].nbytes for n in dict.fromkeys(parts + ([name] if main is not None else [])))
            fmt = main.format if main is not None and main.shape == p.shape else Format(_quant_label(config), 1, 1)
        else:
            nbytes, fmt = main.nbytes, main.format
        out.append(replace_param(p, fmt, nbytes))
    return out


def replace_param(p: ParamInfo, fmt: Format, nbytes: int) -> CheckpointParam:
    q = CheckpointParam(p.name, p.kind, p.shape, fmt.dtype or fmt, p.requires_grad, p.tensor, p.storage, p.aliases)
    q.stored = nbytes
    return q


def with_checkpoint(report, ckpt: Checkpoint, model: torch.nn.Module, config: dict | None = None):
    """``report`` (of the model the checkpoint's config builds) rebuilt with the stored formats
    and bytes of its parameters, and the comparison as ``trace.extra["checkpoint"]``."""
    c = compare_with_model(ckpt, model)
    trace = report.trace
    trace.params = stored_params(trace.params, ckpt, c, config)
    trace.extra["checkpoint"] = {**summary(ckpt), "comparison": c.to_dict()}
    trace.extra["checkpoint_lines"] = c.lines()
    if c.quantized:
        trace.extra.setdefault("notes", []).append(
            f"{len(c.quantized)} weight(s) stored quantized ({_quant_label(config)}): counted at the bytes of their "
            "quantized tensors")
    rebuilt = build_report(trace, registry=report.registry, convention=report.convention, strict=report.strict,
                           causal=report.causal)
    rebuilt.model, rebuilt.memory = report.model, report.memory
    return rebuilt


def dominant_dtype(ckpt: Checkpoint) -> torch.dtype | None:
    """The floating-point dtype that holds most of the checkpoint's bytes (None: no float tensor)."""
    totals: dict[torch.dtype, int] = {}
    for t in ckpt.tensors:
        if t.format.is_floating_point and not t.format.quantized:
            totals[t.format.dtype] = totals.get(t.format.dtype, 0) + t.nbytes
    return max(totals, key=totals.__getitem__) if totals else None


def layer_depth(names) -> int:
    """The tree depth at which layers sit (``model.layers.7`` → 3, ``blk.7`` → 2), for the default view."""
    depths = [layer_group(n).count(".") + 1 for n in names if any(p.isdigit() for p in n.split("."))]
    return max(1, min(depths)) if depths else 2


__all__ = ["CheckpointParam", "Comparison", "checkpoint_report", "compare_with_model", "dominant_dtype",
           "layer_depth", "model_tensors", "stored_params", "summary", "with_checkpoint"]
