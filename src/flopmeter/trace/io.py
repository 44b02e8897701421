"""Saving and loading a Trace: gzip-compressed JSON, versioned, never pickled.

The file format (``flopmeter.trace/1``) is documented in ``docs/trace-format.md``. A loaded
trace builds the same report as the live one (every convention, causal setting and registry
override) with no model code, no model-zoo package and nothing executed from the file:
the loader only reads JSON and looks up dtypes by name.
"""

from __future__ import annotations

import gc
import gzip
import json
import math
import os
import zlib
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, env_int, expect_type
from .events import OpEvent, TensorRef
from .model import TRACE_SCHEMA, ModuleInfo, ParamInfo, StorageInfo, Trace

SUFFIX = ".fmtrace"
MAX_TRACE_BYTES_ENV = "FLOPMETER_MAX_TRACE_BYTES"
# decompressed JSON: GPT-2 writes about 18 KB a layer (so a 6,000-layer stack about 110 MB), and
# parsing takes several times the text's size in memory, so 512 MiB keeps a gzip bomb to a few GB
DEFAULT_MAX_TRACE_BYTES = 512 << 20
# a tensor dimension or element count at or past 2**63 cannot exist (torch indexes with int64)
MAX_ELEMENTS = 2**63
_AGAIN = "write it again with: flopmeter SPEC --save-trace run.fmtrace"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise InputError(f"unknown dtype '{name}' in the trace file",
                         hint="the trace may come from a newer torch; load it with that version")
    return dtype


# -- encoding -------------------------------------------------------------------

def _ref(r: TensorRef) -> list:
    return [r.id, r.storage, list(r.shape), None if r.stride is None else list(r.stride), r.offset,
            _dtype_name(r.dtype), r.device, r.requires_grad, r.role]


def _enc(v: Any) -> Any:
    if isinstance(v, TensorRef):
        return {"T": _ref(v)}
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else {"float": repr(v)}
    if isinstance(v, (list, tuple)):
        return [_enc(x) for x in v]
    if isinstance(v, dict):
        return {"map": [[str(k), _enc(x)] for k, x in v.items()]}
    if isinstance(v, torch.dtype):
        return {"dtype": _dtype_name(v)}
    if isinstance(v, torch.device):
        return {"device": str(v)}
    if isinstance(v, complex):
        return {"complex": [v.real, v.imag]}
    return {"repr": repr(v)}             # memory formats, layouts, generators: shown, never read back


def _dec(v: Any) -> Any:
    if isinstance(v, list):
        return [_dec(x) for x in v]
    if not isinstance(v, dict):
        return v
    if "T" in v:
        i, s, shape, stride, offset, dtype, device, rg, role = v["T"]
        _check_shape(shape, "a tensor")         # before TensorRef multiplies the sizes
        return TensorRef(tuple(shape), _dtype(dtype), id=i, storage=s, stride=None if stride is None else tuple(stride),
                         offset=offset, device=device, requires_grad=rg, role=role)
    if "map" in v:
        return {k: _dec(x) for k, x in v["map"]}
    if "float" in v:
        return float(v["float"])
    if "dtype" in v:
        return _dtype(v["dtype"])
    if "device" in v:
        return torch.device(v["device"])
    if "complex" in v:
        return complex(*v["complex"])
    return v.get("repr")


def trace_to_dict(trace: Trace) -> dict:
    return {
        "schema": TRACE_SCHEMA, "torch_version": trace.torch_version, "model": trace.model,
        "options": _enc(trace.options), "inputs": [_ref(r) for r in trace.inputs],
        "modules": [[m.path, m.type, m.calls, _enc(m.outputs), _enc(m.inputs), m.layer, _enc(m.config)]
                    for m in trace.modules],
        "params": [[p.name, p.kind, list(p.shape), _dtype_name(p.dtype), p.requires_grad, p.tensor, p.storage,
                    list(p.aliases)] for p in trace.params],
        "events": [[e.op, e.overload, _enc(e.args), _enc(e.kwargs), _enc(e.out), e.module,
                    [list(s) for s in e.stack], e.phase] for e in trace.events],
        "storages": [[sid, s.nbytes, s.created, s.freed, s.device] for sid, s in trace.storages.items()],
        "extra": _enc(trace.extra),
    }


def trace_from_dict(d: dict) -> Trace:
    if not isinstance(d, dict) or d.get("schema") != TRACE_SCHEMA:
        found = d.get("schema") if isinstance(d, dict) else None
        raise InputError(f"not a flopmeter trace of schema {TRACE_SCHEMA}" + (f" (found '{found}')" if found else ""),
                         hint="write one with: flopmeter SPEC --save-trace run.fmtrace")
    try:
        def ref(x):
            return _dec({"T": x})

        trace = Trace(
            events=[OpEvent(op, ov, tuple(_dec(a)), _dec(k), _dec(o), mod, tuple((p, i) for p, i in stack), phase)
                    for op, ov, a, k, o, mod, stack, phase in d["events"]],
            modules=[ModuleInfo(path, kind, calls, _dec(outs), [tuple(c) for c in _dec(ins)], layer, _dec(cfg))
                     for path, kind, calls, outs, ins, layer, cfg in d["modules"]],
            params=[ParamInfo(name, kind, tuple(_check_shape(shape, f"parameter {str(name)[:80]!r}")), _dtype(dt), rg,
                              tensor, storage, tuple(aliases))
                    for name, kind, shape, dt, rg, tensor, storage, aliases in d["params"]],
            inputs=[ref(x) for x in d["inputs"]], options=_dec(d["options"]),
            storages={sid: StorageInfo(n, c, f, dev) for sid, n, c, f, dev in d["storages"]},
            model=d["model"], torch_version=d["torch_version"], extra=_dec(d.get("extra", {"map": []})))
        _check(trace)
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
        raise InputError(f"the trace file is damaged: {type(exc).__name__}: {str(exc)[:200]}",
                         hint=_AGAIN) from None
    return trace


def _check_shape(shape, what: str):
    """``shape`` if it is a list of sizes a tensor can have; else the trace is refused."""
    if not isinstance(shape, (list, tuple)):
        raise InputError(f"the trace file is damaged: {what} has shape {str(shape)[:80]}", hint=_AGAIN)
    n = 1
    for d in shape:
        if not isinstance(d, int) or isinstance(d, bool) or d < 0:
            raise InputError(f"the trace file is damaged: {what} has shape {list(shape)[:8]}, and sizes are "
                             "whole numbers of 0 or more", hint=_AGAIN)
        n *= d
        if n >= MAX_ELEMENTS:
            raise InputError(f"the trace file is damaged: {what} has more elements than a tensor can index (2^63)",
                             hint=_AGAIN)
    return shape


def _check(trace: Trace) -> None:
    """Refuse a trace whose figures cannot come from a run (shapes were checked while decoding):
    events filed under a module the trace does not list (the report would drop them), and
    storages of negative or impossible sizes."""
    paths = {m.path for m in trace.modules}
    if "" not in paths:
        raise InputError("the trace file is damaged: it lists no root module", hint=_AGAIN)
    for i, e in enumerate(trace.events):
        unknown = [str(p)[:80] for p, _ in ((e.module, 0), *e.stack) if p not in paths]
        if unknown:
            raise InputError(f"the trace file is damaged: event {i} ({str(e.op)[:80]}) runs in module "
                             f"{unknown[0]!r}, which the trace does not list",
                             hint=_AGAIN)
    for sid, st in trace.storages.items():
        if not isinstance(st.nbytes, int) or isinstance(st.nbytes, bool) or not 0 <= st.nbytes < MAX_ELEMENTS:
            raise InputError(f"the trace file is damaged: storage {sid} has {st.nbytes!r} bytes",
                             hint=_AGAIN)


# -- files ------------------------------------------------------------------------

def save_trace(trace: Trace, path: str | os.PathLike) -> Path:
    """Write ``trace`` to ``path`` (gzip'd JSON) as :func:`flopmeter.files.write_file` does: a
    regular file atomically (a failed write leaves no file), a device or FIFO as a stream."""
    from ..files import write_file

    expect_type(trace, Trace, "save_trace(trace)", "a flopmeter Trace",
                hint="a Report keeps its trace as report.trace: save_trace(report.trace, path)")
    expect_type(path, (str, os.PathLike), "save_trace(path)", "a file path (str or os.PathLike)")
    data = json.dumps(trace_to_dict(trace), separators=(",", ":")).encode()

    def write(raw):
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write(data)

    write_file(path, write, example="run.fmtrace")
    return Path(path)


def max_trace_bytes() -> int:
    return env_int(MAX_TRACE_BYTES_ENV, DEFAULT_MAX_TRACE_BYTES, "bytes", 1 << 30)


def _read_capped(path, limit: int) -> bytes:
    """The decompressed bytes of a gzip file, read in chunks and stopped past ``limit`` (a small
    file can decompress to gigabytes)."""
    chunks, size = [], 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise InputError(f"{path} decompresses to more than {limit:,} bytes, more than a trace "
                                 "flopmeter writes", hint=f"if it is a real trace, set {MAX_TRACE_BYTES_ENV} "
                                 "to a larger size in bytes")
            chunks.append(chunk)
    return b"".join(chunks)


def load_trace(path: str | os.PathLike) -> Trace:
    """Read a trace written by :func:`save_trace` (JSON only: nothing in it is executed)."""
    expect_type(path, (str, os.PathLike), "load_trace(path)", "a file path (str or os.PathLike)")
    try:
        raw = _read_capped(path, max_trace_bytes())
    except (OSError, EOFError, zlib.error) as exc:     # missing, not gzip, truncated or corrupt
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise InputError(f"cannot read trace {path}: {reason}",
                         hint="write one with: flopmeter SPEC --save-trace run.fmtrace") from None
    enabled = gc.isenabled()
    gc.disable()            # building many small objects: the cyclic collector would run thousands of times
    try:
        try:
            d = json.loads(raw)
        except (ValueError, RecursionError) as exc:     # bad JSON or UTF-8, too deep, too long an integer
            raise InputError(f"{path} is not a flopmeter trace: {type(exc).__name__}: {str(exc)[:200]}",
                             hint="write one with: flopmeter SPEC --save-trace run.fmtrace") from None
        return trace_from_dict(d)
    finally:
        if enabled:
            gc.enable()


__all__ = ["SUFFIX", "load_trace", "save_trace", "trace_from_dict", "trace_to_dict"]
