"""The sizing view in the format-neutral tables: the header's memory lines (weights, the peak and
what it is made of, the KV cache, the budget as total − reserve = usable, fits, the largest batch
or context, the assumptions), the memory column of the tree and Keras views, and the ``memory``
view: per-module peaks, one table of weight formats × {params, buffers, scales, total}, the
timeline (live bytes with the peak marked, activations on their own axis) and the search's
traces. A fitted form is shown only where every trace lies on it; otherwise the traces are."""

from __future__ import annotations

from .units import human_unit

COLUMN = "act. peak"       # the memory column: activations alive at the module's peak
GiB, MiB = 2**30, 2**20
# role → its words in the peak's make-up, in this order (parameters and buffers are "weights")
PARTS = (("master", "fp32 masters"), ("grad", "gradients"), ("state", "optimizer state"), ("input", "inputs"),
         ("const", "constants"), ("act", "activations"))
DEFAULT_RESERVE = ("the device table's default: the driver's share, the CUDA context with its libraries, workspaces "
                   "and allocator slack (--reserve sets yours)")


def _b(n: int, raw: bool) -> str:
    return human_unit(n, "B", raw)


def _binary(n: int, raw: bool) -> str:
    """A device size as its datasheet gives it (GiB), or exact bytes with ``raw``."""
    if raw:
        return f"{n:,} B"
    if n % MiB == 0 and n >= GiB:
        return f"{n / GiB:g} GiB"
    return _b(n, raw)


def budget_line(budget, raw: bool = False) -> str:
    """'H100 SXM: 80 GiB total (80 GB HBM3) − 2 GiB reserve (…) = 78 GiB usable (83.8 GB)'."""
    if budget.device is None:
        return f"{_b(budget.bytes, raw)} as given (a size: no reserve taken off)"
    note = "given with --reserve" if budget.reserve_note == "given" else DEFAULT_RESERVE
    memory = f" ({budget.device.memory_note})" if budget.device.memory_note else ""
    return (f"{budget.device.name}: {_binary(budget.total, raw)} total{memory} − {_binary(budget.reserve, raw)} "
            f"reserve ({note}) = {_binary(budget.bytes, raw)} usable" + ("" if raw else f" ({_b(budget.bytes, raw)})"))


def fit_line(fit, raw: bool = False) -> str:
    return (f"{'yes' if fit.fits else 'no'}: {_b(fit.total, raw)} of {_b(fit.budget.bytes, raw)} usable, "
            f"{'headroom' if fit.fits else 'short by'} {_b(abs(fit.headroom), raw)}")


def peak_parts(mem, raw: bool = False) -> list[str]:
    role = mem.peak.by_role
    others = sum(role.get(k, 0) for k, _ in PARTS)
    parts = [f"weights {_b(mem.total - others, raw)}"]
    parts += [f"{name} {_b(role[key], raw)}" for key, name in PARTS if role.get(key)]
    return parts


def header_lines(report, raw: bool = False) -> list[tuple[str, str]]:
    mem = report.memory
    if mem is None:
        return assumption_lines(report)
    peak = mem.peak
    w = mem.weights
    weights = f"{_b(w.total, raw)} ({w.label}" + (f"; as stored {_b(mem.stored.total, raw)})" if w.format != "stored" else ")")
    where = f" at {peak.module or '(root)'} ({peak.op})" if peak.event >= 0 else ""
    rounding = f"; {mem.timeline.rounding}-byte blocks" if mem.timeline.rounding else ""
    lines = [("weights", weights),
             ("peak", f"{_b(mem.total, raw)}{where} = {' + '.join(peak_parts(mem, raw))}  [eager lifetimes{rounding}]")]
    if mem.kv is not None:
        kv = mem.kv
        per = f"{_b(kv.per_token, raw)} per token; " if kv.per_token is not None else ""
        lines.append(("KV cache", (f"{per}{_b(kv.bytes, raw)} at {kv.context:,} tokens × batch {kv.batch} "
                                   f"({len(kv.layers)} layers, {_kinds(kv)})")))
    if mem.fit is not None:
        lines += [("budget", budget_line(mem.fit.budget, raw)), ("fits", fit_line(mem.fit, raw))]
    for name, s in mem.search.items():
        lines.append((f"max {name}", search_line(s, raw)))
    return lines + assumption_lines(report)


def assumption_lines(report) -> list[tuple[str, str]]:
    a = getattr(report, "assumptions", None)
    return a.lines() if a is not None else []


def _kinds(kv) -> str:
    from collections import Counter
    kinds = Counter(f"{layer.kind}" + (" (cross)" if layer.attention == "cross" else "") for layer in kv.layers)
    return ", ".join(f"{n} × {k}" for k, n in kinds.items())


def search_line(s, raw: bool = False) -> str:
    """The answer, what stayed fixed, and its evidence: the fitted form where every trace lies on
    it, else the traces (the answer's own trace fits, the next one does not)."""
    fixed = ", ".join(f"{k} {v:,}" for k, v in s.fixed.items())
    if s.answer == 0:
        head = f"none fits (even {s.variable} {s.probes[0].x:,} needs {_b(s.probes[0].bytes, raw)})"
    else:
        head = f"{s.answer:,}" + (" (the model's limit)" if s.at_limit else "")
    exact = {s.answer, s.answer + 1}          # the verification: exact bytes, which units would round alike
    traces = ", ".join(f"{p.x:,} → {f'{p.bytes:,} B' if p.x in exact else _b(p.bytes, raw)} {'✓' if p.fits else '✗'}"
                       for p in s.probes)
    x = "b" if s.variable == "batch" else "n"
    if s.on_curve:
        evidence = f"every trace on {s.form.replace('x', x)} bytes"
    else:
        evidence = f"not one {'line' if len(s.fit_points) < 3 else 'parabola'} in the {s.variable}: the traces decide"
    return (f"{head}{' at ' + fixed if fixed else ''}  [budget {s.budget:,} B; {len(s.probes)} traces: {traces}; "
            f"{evidence}]")


def column(report, path: str) -> int | str:
    m = report.memory.timeline.modules.get(path) if report.memory else None
    return m.peak_activations if m else 0


def formats_table(mem):
    """Weight formats × {params, buffers, scales, total}; the format the answer uses is marked."""
    from .tables import Table
    t = Table(["weights as", "params (B)", "buffers (B)", "scales (B)", "total (B)"], [False, True, True, True, True])
    chosen = mem.weights.format
    for name, w in mem.formats.items():
        used = name == chosen or (name == "int4" and chosen == "int4:128") or (name == "nf4" and chosen == "nf4:64")
        t.rows.append([name + ("  ← used" if used else ""), w.params, w.buffers, w.scales, w.total])
    if chosen not in mem.formats and not any(r[0].endswith("← used") for r in t.rows):
        w = mem.weights
        t.rows.append([w.format + "  ← used", w.params, w.buffers, w.scales, w.total])
    return t


def timeline_lines(mem, width: int = 60) -> list[tuple[str, str]]:
    """Live bytes and activations as two bars of characters, each on its own axis from 0, with
    a marker under the op of the peak."""
    tl = mem.timeline
    n = len(tl.live)
    if not n:
        return [("timeline", "no ops ran")]
    live_top, act_top = max(tl.live), max(tl.activations, default=0)
    width = min(width, n)
    col = min(width - 1, tl.peak.event * width // n) if tl.peak.event >= 0 else 0
    return [("live bytes", f"{bars(tl.live, width)}  0 … {human_unit(live_top, 'B')}"),
            ("", " " * col + f"▲ the peak, op {tl.peak.event:,} of {n:,}"),
            ("activations", f"{bars(tl.activations, width)}  0 … {human_unit(act_top, 'B')} (own axis)")]


def bars(values, width: int = 60) -> str:
    """``values`` squeezed to ``width`` columns (each the max of its bucket), scaled from 0."""
    blocks = " ▁▂▃▄▅▆▇█"
    n = len(values)
    if not n:
        return ""
    width = min(width, n)
    top = max(values) or 1
    out = []
    for i in range(width):
        v = max(values[i * n // width: max((i + 1) * n // width, i * n // width + 1)])
        out.append(blocks[min(len(blocks) - 1, -(-v * (len(blocks) - 1) // top))])
    return "".join(out)


def search_table(s):
    """One row per trace of a search: the size, its bytes, whether it fits, and why it was taken."""
    from .tables import Table
    t = Table([s.variable, "bytes", "fits", "taken as"], [True, True, False, False], exact=True)
    for p in sorted(s.probes, key=lambda p: p.x):
        t.rows.append([p.x, p.bytes, "yes" if p.fits else "no", p.why])
    return t


def memory_table(report, depth: int | None):
    """The ``memory`` view: per module (to ``depth``) the live total at its peak, the activations
    in it, and what one call leaves alive; then the formats table, the timeline, and the
    traces of each search (in ``sections``)."""
    from .tables import Table

    mem = report.memory
    if mem is None:
        from ..errors import OptionsError
        raise OptionsError("this report has no memory analysis", hint="count with --memory (Options(memory=True))")
    t = Table(["module", "type", "calls", "peak: live total (B)", COLUMN + " (B)", "leaves alive (B)"],
              [False, False, True, True, True, True])
    t.keys = []
    root_label = report.root.type if ".py:" in report.model else report.model.rsplit(":", 1)[-1]
    for node in report.modules():
        if depth is not None and node.depth > depth:
            continue
        m = mem.timeline.modules.get(node.path)
        t.keys.append(node.path)
        t.rows.append(["  " * node.depth + (node.name or root_label), node.type, node.calls,
                       m.peak if m else 0, m.peak_activations if m else 0, m.leaves if m else 0])
    tl = mem.timeline
    t.footer = timeline_lines(mem)
    t.footer.append(("before the run", ", ".join(f"{k} {human_unit(v, 'B')}" for k, v in tl.fixed.items()) or "nothing"))
    if mem.kv is not None:
        for layer in mem.kv.layers[:1] + mem.kv.layers[-1:] if len(mem.kv.layers) > 1 else mem.kv.layers:
            t.footer.append((f"KV layer {layer.index}" + (" (cross)" if layer.attention == "cross" else ""),
                             (f"{layer.kind} k{list(layer.key_shape)} v{list(layer.value_shape)} {layer.dtype}: "
                              f"{human_unit(layer.bytes, 'B')}")))
    t.sections = [("weights by format", formats_table(mem))]
    t.sections += [(f"largest {name}: the traces", search_table(s)) for name, s in mem.search.items()]
    return t


__all__ = ["COLUMN", "budget_line", "column", "fit_line", "formats_table", "header_lines", "memory_table",
           "search_line", "search_table", "timeline_lines"]
