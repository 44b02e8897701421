"""Device kernels: a fake run for a CUDA device takes the kernels that device would take.

PyTorch picks some kernels in C++ from the device it runs on, and a fake CUDA tensor without
a GPU gets the fallbacks (``scaled_dot_product_attention`` takes the math path: the full L×S
scores, ``_safe_softmax``, fp32 copies). :class:`DeviceKernels`, a ``TorchFunctionMode`` active
for the run only, takes those choices for the named device instead:

- every ``F.scaled_dot_product_attention`` call: the backend :func:`.sdpa_rules.select` gives
  for that device, emitted as PyTorch's composite emits it — unbatched inputs given a batch
  dimension, a boolean mask made additive, the head dims padded to a multiple of 8 for flash,
  the mask padded and expanded for the memory-efficient kernel — then the backend's own op
  (``aten._scaled_dot_product_flash_attention``, ``_efficient_attention``, ``_cudnn_attention``,
  with their real outputs, logsumexp included, and their backward ops in training) or
  ``aten._scaled_dot_product_attention_math``;
- with ``cuda_dropout`` (a run on CPU fake tensors standing in for CUDA ones: a training step
  without a GPU, whose autograd engine would need the device): ``F.dropout`` takes
  ``aten.native_dropout`` with its 1-byte mask where CUDA's dispatcher does (training,
  0 < p < 1, not in place, not empty); on fake CUDA tensors PyTorch does that itself. On that
  route the ops whose fake results depend on the device (:data:`CUDA_RESULTS`: the float32
  statistics of layer and batch norm over half inputs) get CUDA's results from the recorder.

Without a target it only watches: each call runs as PyTorch dispatches it and the backend is
read off the ops it recorded. Each decision is kept with the index of its first event;
:func:`summary` counts them over the trace, replayed module calls included.
"""

from __future__ import annotations

import math
import os
import re
import types

import torch
import torch.nn.functional as F
from torch.overrides import (
    TorchFunctionMode,
    _get_current_function_mode,
    _pop_mode_temporarily,
)

from .fastpath import candidates, takes_fast_path
from .sdpa_rules import Call, CudaTarget, Flags, T, prefer_cudnn, select

aten = torch.ops.aten
_SDPA = F.scaled_dot_product_attention
_DROPOUTS = (F.dropout, torch.dropout)
# While a function mode handles a call it is off; a backward (where a checkpoint recomputes its
# forward) runs again under this mode so that the recompute takes the forward's kernels.
_BACKWARDS = (torch.Tensor.backward, torch.autograd.backward, torch.autograd.grad)
OPS = {"flash": "aten._scaled_dot_product_flash_attention", "efficient": "aten._scaled_dot_product_efficient_attention",
       "cudnn": "aten._scaled_dot_product_cudnn_attention", "math": "aten._scaled_dot_product_attention_math",
       "flash (cpu)": "aten._scaled_dot_product_flash_attention_for_cpu"}
_BY_OP = {op: backend for backend, op in OPS.items() if backend != "math"}
RULES = "PyTorch 2.14's select_sdp_backend (aten/src/ATen/native/transformers/cuda/sdp_utils.cpp), in sdpa_rules"


def _sdpa_args(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    return query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa


def _dropout_args(input, p=0.5, training=True, inplace=False):
    return input, p, training, inplace


def _torch_dropout_args(input, p, train):
    return input, p, train, False


class DeviceKernels(TorchFunctionMode):
    """See the module docstring. ``events``: the recording's event list (read, never written)."""

    def __init__(self, target: CudaTarget | None, events: list, *, cuda_dropout: bool = False):
        super().__init__()
        self.target, self.events, self.cuda_dropout = target, events, cuda_dropout
        self.decisions: list[tuple[int, dict]] = []       # (index of the call's first event, what it took)
        self.math_dropout_on_cpu = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _SDPA:
            return self._sdpa(func, args, kwargs)
        if self.cuda_dropout and func in _DROPOUTS:
            return self._dropout(func, args, kwargs)
        if func in _WRAPPERS:              # a Python function that calls attention (and dropout) inside
            with self:
                return _unchecked(func)(*args, **kwargs)
        if func in _BACKWARDS:             # a checkpoint's recompute runs inside the backward: keep the choices
            with self:
                return _backward(func, args, kwargs)
        return func(*args, **kwargs)

    def around(self, modules) -> dict:
        """For :attr:`.modules.ModuleStack.around`: each call of a module with a fused inference
        path runs with this mode off when PyTorch would take that path (:mod:`.fastpath`)."""
        def wrapper(module):
            def run(forward, args, kwargs):
                if _get_current_function_mode() is self and takes_fast_path(module, args, kwargs):
                    with _pop_mode_temporarily():
                        return forward(*args, **kwargs)
                return forward(*args, **kwargs)
            return run
        return {path: wrapper(m) for path, m in candidates(modules).items()}

    # -- attention -----------------------------------------------------------------------------
    def _sdpa(self, func, args, kwargs):
        try:
            q, k, v, mask, p, causal, scale, gqa = _sdpa_args(*args, **kwargs)
        except TypeError:
            return func(*args, **kwargs)              # PyTorch's own error
        start = len(self.events)
        if self.target is None or not _plain(q, k, v, mask, p):
            out = func(*args, **kwargs)
            self._observed(start, q, k, v, mask, p, causal)
            return out
        unbatched = q.dim() == k.dim() == v.dim() == 3
        if unbatched:                                 # normalize_unbatched_input
            q, k, v = q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0)
            while mask is not None and mask.dim() < 4:
                mask = mask.unsqueeze(0)
        call = Call(T.of(q), T.of(k), T.of(v), None if mask is None else T.of(mask), float(p), bool(causal),
                    bool(gqa), torch.is_grad_enabled())
        chosen = select(call, self.target, Flags.current())
        out = _EMIT[chosen.backend](q, k, v, mask, float(p), bool(causal), scale, bool(gqa), call.requires_grad)
        if chosen.backend == "math" and p > 0 and q.device.type == "cpu":
            self.math_dropout_on_cpu = True
        self.decisions.append((start, _decision(chosen.backend, call, chosen.refused, self.target)))
        return out.squeeze(0) if unbatched else out

    def _observed(self, start: int, q, k, v, mask, p, causal) -> None:
        """The backend a call took as PyTorch dispatched it, read off the ops it recorded."""
        ops = {ev.op for ev in self.events[start:]}
        backend = next((b for op, b in _BY_OP.items() if op in ops), "math")
        if not all(isinstance(t, torch.Tensor) for t in (q, k, v)):
            return
        call = Call(T.of(q), T.of(k), T.of(v), None if not isinstance(mask, torch.Tensor) else T.of(mask),
                    float(p or 0.0), bool(causal), False, torch.is_grad_enabled())
        self.decisions.append((start, _decision(backend, call, {}, None)))

    # -- dropout -------------------------------------------------------------------------------
    def _dropout(self, func, args, kwargs):
        try:
            x, p, train, inplace = (_dropout_args if func is F.dropout else _torch_dropout_args)(*args, **kwargs)
        except TypeError:
            return func(*args, **kwargs)
        if (isinstance(x, torch.Tensor) and train and not inplace and isinstance(p, (int, float)) and 0 < p < 1
                and x.numel() > 0 and x.layout == torch.strided):
            return aten.native_dropout(x, float(p), True)[0]       # is_fused_kernel_acceptable on CUDA
        return func(*args, **kwargs)


# Python functions of torch that call scaled_dot_product_attention or dropout inside. A mode's
# handler runs with the mode off, so the calls inside would not come to it: the function runs
# instead as a copy of itself (its code with its module's names, but for ``has_torch_function``,
# which is False), with the mode on; torch's own function is not changed.
_WRAPPERS = (F.multi_head_attention_forward,)
_UNCHECKED: dict = {}               # function → its copy (process-wide, one per function of _WRAPPERS)


def _backward(func, args, kwargs):
    """``func`` (a backward) without its own torch-function check, which would hand it back to the mode."""
    if func is torch.Tensor.backward:
        tensor, *rest = args
        names = ("gradient", "retain_graph", "create_graph", "inputs")
        bound = {**dict(zip(names, rest)), **kwargs}
        return _unchecked(torch.autograd.backward)(tensor, bound.get("gradient"), bound.get("retain_graph"),
                                                   bound.get("create_graph", False), inputs=bound.get("inputs"))
    return _unchecked(func)(*args, **kwargs)


def _unchecked(fn):
    copy = _UNCHECKED.get(fn)
    if copy is None:
        names = dict(fn.__globals__)
        names["has_torch_function"] = lambda *_: False
        copy = types.FunctionType(fn.__code__, names, fn.__name__, fn.__defaults__, fn.__closure__)
        copy.__kwdefaults__ = fn.__kwdefaults__
        _UNCHECKED[fn] = copy
    return copy


def _plain(q, k, v, mask, p) -> bool:
    """Arguments PyTorch's composite would accept as they are (dense strided tensors of one dtype
    and device, at least 2-d, a bool/float/q-dtype mask); anything else runs as PyTorch runs it."""
    tensors = (q, k, v) if mask is None else (q, k, v, mask)
    if not all(isinstance(t, torch.Tensor) and t.layout == torch.strided and not t.is_nested for t in tensors):
        return False
    if not (q.dtype == k.dtype == v.dtype and q.device == k.device == v.device and min(q.dim(), k.dim(), v.dim()) >= 2):
        return False
    if not isinstance(p, (int, float)):
        return False
    return mask is None or (mask.dtype in (torch.bool, torch.float32, q.dtype) and mask.device == q.device)


# -- what each backend emits (PyTorch's scaled_dot_product_attention composite) -------------------

def _additive(mask, dtype, low: float):
    """A boolean mask as an additive one (True keeps a pair: 0, False drops it: ``low``)."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    zero = torch.scalar_tensor(0.0, dtype=dtype, device=mask.device)
    return torch.where(mask, zero, torch.scalar_tensor(low, dtype=dtype, device=mask.device))


def _flash(q, k, v, mask, p, causal, scale, gqa, lse):
    og = q.size(-1)

    def pad(t):                                    # pad_last_dim<8, false>
        r = t.size(-1) % 8
        return t if r == 0 else F.pad(t, (0, 8 - r))
    scale = scale if scale is not None else 1.0 / math.sqrt(og)
    out = aten._scaled_dot_product_flash_attention(pad(q), pad(k), pad(v), p, causal, False, scale=scale)[0]
    return out if out.size(-1) == og else out[..., :og]


def _efficient(q, k, v, mask, p, causal, scale, gqa, lse):
    mask = _additive(mask, q.dtype, -math.inf)
    if mask is not None:                           # preprocess_mask: 8-aligned strides, expanded to (B, H, L, S)
        aligned = all(mask.stride(i) % 8 == 0 for i in range(mask.dim() - 1)) and mask.stride(-1) == 1
        if not aligned:
            last = mask.size(-1)
            mask = F.pad(mask, (0, 8 - last % 8))[..., :last]
        mask = mask.expand(q.size(0), q.size(1), q.size(2), k.size(2))
    return aten._scaled_dot_product_efficient_attention(q, k, v, mask, lse, p, causal, scale=scale)[0]


def _cudnn(q, k, v, mask, p, causal, scale, gqa, lse):
    mask = _additive(mask, q.dtype, -65504.0)      # convert_boolean_attn_mask_cudnn
    return aten._scaled_dot_product_cudnn_attention(q, k, v, mask, lse, p, causal, False, scale=scale)[0]


def _math(q, k, v, mask, p, causal, scale, gqa, lse):
    mask = _additive(mask, q.dtype, -math.inf)
    return aten._scaled_dot_product_attention_math(q, k, v, mask, p, causal, None, scale=scale, enable_gqa=gqa)[0]


_EMIT = {"flash": _flash, "efficient": _efficient, "cudnn": _cudnn, "math": _math}


def _decision(backend: str, c: Call, refused: dict, target: CudaTarget | None) -> dict:
    dims = {c.q.shape[-1], c.v.shape[-1]}
    return {"backend": backend, "op": OPS[backend], "dtype": str(c.q.dtype).removeprefix("torch."),
            "head_dim": "/".join(map(str, sorted(dims))), "causal": c.is_causal, "mask": c.mask is not None,
            "dropout": c.dropout > 0, "gqa": c.enable_gqa or c.q.shape[-3] != c.k.shape[-3],
            "training": c.requires_grad, "refused": dict(refused),
            "cudnn_first": bool(target is not None and prefer_cudnn(target, Flags.current()))}


# -- results that depend on the device, for CPU fakes standing in for CUDA tensors -----------------

def _stats(mode, args, out, indices, shape):
    """``out`` with its outputs at ``indices`` made as CUDA's kernels make them: float32 for a
    half or bfloat16 input (the accumulation type), of ``shape`` (None: the CPU result's)."""
    x = args[0]
    out = list(out)
    for i in indices:
        t = out[i]
        dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else t.dtype
        size = t.shape if shape is None else shape(x)
        meta = torch.empty(size, dtype=dtype, device="meta")
        out[i] = mode.fake(meta, t.device)
    return tuple(out)


def _layer_norm(mode, args, out):
    return _stats(mode, args, out, (1, 2), None)


def _batch_norm(mode, args, out):
    return _stats(mode, args, out, (1, 2), lambda x: (x.shape[1],))


CUDA_RESULTS = {aten.native_layer_norm.default: _layer_norm, aten.native_batch_norm.default: _batch_norm,
                aten._native_batch_norm_legit.default: _batch_norm, aten._native_batch_norm_legit.no_stats: _batch_norm,
                aten._native_batch_norm_legit_no_training.default: _batch_norm,
                aten._batch_norm_with_update.default: _batch_norm}


# -- the record the trace keeps ------------------------------------------------------------------

def cublas_workspace(target: CudaTarget) -> dict:
    """PyTorch's cuBLAS workspace per (handle, stream), which cuBLASLt shares by default:
    ``CUBLAS_WORKSPACE_CONFIG`` (':SIZE_KiB:COUNT' pairs), else 32 MiB on sm 9.x, 10.x and 12.x
    and 4096·2 + 16·8 KiB elsewhere (CublasHandlePool.cpp, parseChosenWorkspaceSize)."""
    config = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    pairs = re.findall(r":([0-9]+):([0-9]+)", config or "")
    if pairs:
        size, how = sum(int(s) * 1024 * int(n) for s, n in pairs), f"CUBLAS_WORKSPACE_CONFIG={config}"
    elif target.capability[0] in (9, 10, 12):
        size, how = 4096 * 8 * 1024, f"PyTorch's default on sm{target.capability[0]}x: 4096 KiB × 8"
    else:
        size, how = 4096 * 1024 * 2 + 16 * 1024 * 8, "PyTorch's default: 4096 KiB × 2 + 16 KiB × 8"
    return {"cublas_bytes": size, "per": "stream (one for a single-stream program)", "how": how,
            "counted": "in the device's reserve, not in the trace (cuBLAS allocates it at the first matmul)"}


def summary(decisions: list[tuple[int, dict]], spans, events, *, target: CudaTarget | None, route: str,
            device: str, notes: list[str] | None = None) -> dict:
    """The kernels record of a run: the attention calls grouped by what they took (counted over
    the trace: a replayed module call (start, length, source) repeats the decisions of its
    source), the dropout kernel, and for a CUDA device the cuBLAS workspace."""
    counts: dict[tuple, list] = {}
    index = sorted(decisions, key=lambda d: d[0])
    all_decisions = list(index)
    for start, length, src in spans or ():
        all_decisions += [(i - src + start, d) for i, d in index if src <= i < src + length]
    for _, d in all_decisions:
        key = tuple((k, tuple(sorted(v.items())) if isinstance(v, dict) else v) for k, v in d.items())
        counts.setdefault(key, [d, 0])[1] += 1
    attention = [{**d, "calls": n} for d, n in counts.values()]
    record = {"device": device, "route": route, "attention": attention, "dropout": _dropout_summary(events),
              "notes": list(notes or []) + list(target.notes if target is not None else ())}
    if target is not None:
        record["target"] = target.to_dict()
        record["rules"] = RULES
        record["workspace"] = cublas_workspace(target)
    else:
        record["rules"] = "as this run's PyTorch dispatched them"
    return record


_FUSED = {**_BY_OP, "aten._scaled_dot_product_fused_attention_overrideable": "overrideable"}
_MASK_ARG = {"flash (cpu)": "attn_mask", "efficient": "attn_bias", "cudnn": "attn_bias", "overrideable": "attn_bias"}


def observed(events) -> list[tuple[int, dict]]:
    """The attention calls of a run without a target, read off its events: one fused kernel op,
    or one ``aten._safe_softmax`` (only the math path of scaled_dot_product_attention calls it) each."""
    found = []
    for i, ev in enumerate(events):
        if ev.phase not in ("forward", "recompute"):
            continue
        backend = _FUSED.get(ev.op)
        if backend is None and ev.op == "aten._safe_softmax":
            x = ev.arg("self")
            found.append((i, {"backend": "math", "op": OPS["math"], "dtype": _dtype(x.dtype), "head_dim": "?",
                              "causal": False, "mask": False, "dropout": False, "gqa": False,
                              "training": False, "refused": {}, "cudnn_first": False}))
        elif backend is not None:
            q, k, v = ev.arg("query"), ev.arg("key"), ev.arg("value")
            mask = ev.arg(_MASK_ARG[backend]) if backend in _MASK_ARG else None
            found.append((i, {"backend": backend, "op": ev.op, "dtype": _dtype(q.dtype),
                              "head_dim": "/".join(map(str, sorted({q.shape[-1], v.shape[-1]}))),
                              "causal": bool(ev.arg("is_causal")), "mask": mask is not None,
                              "dropout": (ev.arg("dropout_p") or 0) > 0, "gqa": q.shape[-3] != k.shape[-3],
                              "training": bool(q.requires_grad), "refused": {}, "cudnn_first": False}))
    return found


def _dtype(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def kernel_notes(device_kernels: DeviceKernels | None, as_cuda: bool, autocast) -> list[str]:
    """What a run on CPU fake tensors standing in for CUDA ones does not take from CUDA."""
    notes = []
    if as_cuda:
        notes.append("traced on CPU fake tensors standing in for CUDA ones (a training step's autograd engine "
                     "needs a GPU for CUDA tensors): attention, dropout, the norms' statistics and the optimizer's "
                     "foreach take CUDA's choices; other ops dispatch as on the CPU")
        if autocast is not None:
            notes.append("autocast follows the CPU's op lists on this route, not CUDA's")
        if device_kernels is not None and device_kernels.math_dropout_on_cpu:
            notes.append("the math attention path's own dropout keeps its mask in the compute dtype on this route "
                         "(CUDA's keeps a 1-byte mask)")
    return notes


def _dropout_summary(events) -> dict | None:
    fused = [ev for ev in events if ev.op == "aten.native_dropout"]
    if fused:
        masks = {str(ev.outputs[1].dtype).removeprefix("torch.") for ev in fused if len(ev.outputs) > 1}
        return {"kernel": "aten.native_dropout", "mask_dtype": "/".join(sorted(masks)) or "bool", "calls": len(fused)}
    drawn = [ev for ev in events if ev.op == "aten.bernoulli_" and ev.phase in ("forward", "recompute")]
    if drawn:
        dtypes = {str(ev.outputs[0].dtype).removeprefix("torch.") for ev in drawn if ev.outputs}
        return {"kernel": "aten.bernoulli_ (then mul)", "mask_dtype": "/".join(sorted(dtypes)), "calls": len(drawn)}
    return None


__all__ = ["CUDA_RESULTS", "OPS", "RULES", "DeviceKernels", "cublas_workspace", "kernel_notes", "observed", "summary"]
