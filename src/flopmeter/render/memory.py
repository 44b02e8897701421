"""Memory in the format-neutral tables: header lines, the memory column of the tree and Keras
views, and the ``memory`` view (per-module peaks, the live-bytes sparkline, weights by format,
the KV cache and the largest-batch searches)."""

from __future__ import annotations

from .units import human_unit

COLUMN = "act. peak"       # the memory column: activations alive at the module's peak


def _b(n: int, raw: bool) -> str:
    return human_unit(n, "B", raw)


def header_lines(report, raw: bool = False) -> list[tuple[str, str]]:
    mem = report.memory
    if mem is None:
        return []
    peak = mem.peak
    role = peak.by_role
    w = mem.weights
    weights = f"{_b(w.total, raw)} ({w.label}" + (f"; as stored {_b(mem.stored.total, raw)})" if w.format != "stored" else ")")
    others = sum(role.get(k, 0) for k in ("input", "const", "act"))
    parts = [f"weights {_b(mem.total - others, raw)}"]
    parts += [f"{name} {_b(role[key], raw)}" for key, name in (("input", "inputs"), ("const", "constants"),
                                                                ("act", "activations")) if role.get(key)]
    where = f" at {peak.module or '(root)'} ({peak.op})" if peak.event >= 0 else ""
    rounding = f"; {mem.timeline.rounding}-byte blocks" if mem.timeline.rounding else ""
    lines = [("weights", weights),
             ("peak", f"{_b(mem.total, raw)}{where} = {' + '.join(parts)}  [eager lifetimes{rounding}]")]
    if mem.kv is not None:
        kv = mem.kv
        per = f"{_b(kv.per_token, raw)} per token; " if kv.per_token is not None else ""
        lines.append(("KV cache", f"{per}{_b(kv.bytes, raw)} at {kv.context:,} tokens × batch {kv.batch} "
                                  f"({len(kv.layers)} layers, {_kinds(kv)})"))
    if mem.fit is not None:
        f = mem.fit
        verdict = "yes" if f.fits else "no"
        lines.append(("fits", f"{verdict}: {_b(f.total, raw)} of {_b(f.budget.bytes, raw)} [{f.budget.label}], "
                              f"{'headroom' if f.fits else 'short by'} {_b(abs(f.headroom), raw)}"))
    for name, s in mem.search.items():
        lines.append((f"max {name}", search_line(s, raw)))
    return lines


def _kinds(kv) -> str:
    from collections import Counter
    kinds = Counter(f"{layer.kind}" + (" (cross)" if layer.attention == "cross" else "") for layer in kv.layers)
    return ", ".join(f"{n} × {k}" for k, n in kinds.items())


def search_line(s, raw: bool = False) -> str:
    fixed = ", ".join(f"{k} {v:,}" for k, v in s.fixed.items())
    if s.answer == 0:
        head = f"none fits (even {s.variable} {s.probes[0].x:,} needs {_b(s.probes[0].bytes, raw)})"
    else:
        head = f"{s.answer:,}" + (" (the model's limit)" if s.at_limit else "")
    exact = {s.answer, s.answer + 1}          # the verification: exact bytes, which units would round alike
    traces = ", ".join(f"{p.x:,} → {f'{p.bytes:,} B' if p.x in exact else _b(p.bytes, raw)} {'✓' if p.fits else '✗'}"
                       for p in s.probes)
    form = f"; fit {s.form}" if s.form else ""
    return f"{head}{' at ' + fixed if fixed else ''}  [budget {s.budget:,} B; {len(s.probes)} traces: {traces}{form}]"


def column(report, path: str) -> int | str:
    m = report.memory.timeline.modules.get(path) if report.memory else None
    return m.peak_activations if m else 0


def memory_table(report, depth: int | None):
    """The ``memory`` view: per module (to ``depth``) the live total at its peak, the activations
    in it, and what one call leaves alive; the footer has the timeline and the weight formats."""
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
    t.footer = [("activations", f"{sparkline(tl.activations)}  over {len(tl.activations):,} ops, "
                                f"peak {human_unit(max(tl.activations, default=0), 'B')}"),
                ("before the run", ", ".join(f"{k} {human_unit(v, 'B')}" for k, v in tl.fixed.items()) or "nothing")]
    t.footer += [("weights as " + name, f"{human_unit(w.total, 'B')}" + (f" (scales {human_unit(w.scales, 'B')})"
                                                                         if w.scales else ""))
                 for name, w in mem.formats.items()]
    if mem.kv is not None:
        for layer in mem.kv.layers[:1] + mem.kv.layers[-1:] if len(mem.kv.layers) > 1 else mem.kv.layers:
            t.footer.append((f"KV layer {layer.index}" + (" (cross)" if layer.attention == "cross" else ""),
                             f"{layer.kind} k{list(layer.key_shape)} v{list(layer.value_shape)} {layer.dtype}: "
                             f"{human_unit(layer.bytes, 'B')}"))
    return t


def sparkline(values, width: int = 60) -> str:
    from ..memory.timeline import sparkline as spark
    return spark(values, width)


__all__ = ["COLUMN", "column", "header_lines", "memory_table", "search_line"]
