"""The HTML report's sizing section, from the report dict's ``memory``, ``training`` and
``assumptions``: the answer (peak and its make-up, budget as total − reserve = usable, fits,
the largest batch or context), the assumptions, one table of weight formats × {params,
buffers, scales, total}, the timeline (live bytes with the peak marked; activations in a panel
of their own, on their own axis), each search's traces with the fitted curve drawn only where
every trace lies on it, and a training step's memory. Every cell is words or numbers — no
field names, no ``None``; every string is escaped. Partial dicts (a section another tool wrote)
show what they have."""

from __future__ import annotations

import html

from .units import human

ROLE_WORDS = {"param": "weights", "buffer": "buffers", "input": "inputs", "master": "fp32 master weights",
              "grad": "gradients", "state": "optimizer state", "const": "constants", "act": "activations"}
TRAINING_WORDS = (("saved_bytes", "saved for backward"), ("grad_bytes", "gradients"),
                  ("master_bytes", "fp32 master weights"), ("master_grad_bytes", "fp32 gradients of the masters"),
                  ("optimizer_state_bytes", "optimizer state"), ("autocast_copy_bytes", "autocast weight copies"),
                  ("peak_bytes", "peak of the step"))


def _e(value) -> str:
    from .escape import visible
    return html.escape(visible(value), quote=True)


def _b(n) -> str:
    return f"{human(n)}B" if isinstance(n, (int, float)) and not isinstance(n, bool) else "—"


def _binary(n) -> str:
    """A device size as its datasheet gives it (80 GiB), else in decimal units."""
    if isinstance(n, int) and n >= 2**30 and n % 2**20 == 0:
        return f"{n / 2**30:g} GiB"
    return _b(n)


def _int(d: dict, key: str):
    v = d.get(key) if isinstance(d, dict) else None
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _facts(rows: list[tuple[str, str]], ident: str = "") -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows if v)
    attr = f' id="{ident}"' if ident else ""
    return f'<table class="facts"{attr}>{body}</table>' if body else ""


def _table(columns: list[str], rows: list[list], ident: str) -> str:
    from .html import html_table
    numeric = [isinstance(c, int) and not isinstance(c, bool) for c in (rows[0] if rows else [])]
    return html_table(columns, rows, numeric, raw=True).replace('<table class="plain">',
                                                               f'<table class="plain" id="{ident}">', 1)


def _peak(memory: dict) -> str:
    peak = ((memory.get("timeline") or {}).get("peak")) or {}
    if not isinstance(peak, dict) or _int(peak, "bytes") is None:
        return ""
    where = peak.get("module") or "(root)"
    op = f" ({peak['op']})" if peak.get("op") else ""
    roles = peak.get("by_role") if isinstance(peak.get("by_role"), dict) else {}
    parts = " + ".join(f"{ROLE_WORDS.get(k, k)} {_b(v)}" for k, v in roles.items() if isinstance(v, int) and v)
    total = _int(memory, "total")
    head = f"{_b(total if total is not None else peak['bytes'])} at {where}{op}"
    return head + (f" = {parts} (weights as stored)" if parts else "") + " — eager lifetimes"


def _budget(fits: dict) -> str:
    b = fits.get("budget_detail") if isinstance(fits.get("budget_detail"), dict) else {}
    usable = _int(fits, "budget")
    if not b.get("device"):
        return f"{_b(usable)} as given (no reserve)" if usable is not None else ""
    note = "given with --reserve" if b.get("reserve_note") == "given" else "the device table's default"
    return (f"{b['device']}: {_binary(_int(b, 'total'))} total − {_binary(_int(b, 'reserve'))} reserve ({note}) = "
            f"{_binary(usable)} usable ({_b(usable)})")


def _fits(fits: dict) -> str:
    if not isinstance(fits.get("fits"), bool):
        return ""
    head = _int(fits, "headroom") or 0
    return (f"{'yes' if fits['fits'] else 'no'}: {_b(_int(fits, 'total'))} of {_b(_int(fits, 'budget'))}, "
            f"{'headroom' if fits['fits'] else 'short by'} {_b(abs(head))}")


def _answer(s: dict) -> str:
    answer = _int(s, "answer")
    if answer is None:
        return ""
    fixed = ", ".join(f"{k} {v:,}" for k, v in (s.get("fixed") or {}).items() if isinstance(v, int))
    text = "none fits" if answer == 0 else f"{answer:,}" + (" (the model's limit)" if answer == s.get("limit") else "")
    x = "b" if s.get("variable") == "batch" else "n"
    how = (f"every trace on {s['form'].replace('x', x)} bytes") if s.get("on_curve") and s.get("form") \
        else "from the traces: not one curve here"
    return text + (f" at {fixed}" if fixed else "") + f" ({how})"


def _kv(kv) -> str:
    if not isinstance(kv, dict) or _int(kv, "bytes") is None:
        return ""
    per = f"{_b(kv['per_token'])} per token; " if _int(kv, "per_token") is not None else ""
    return f"{per}{_b(kv['bytes'])} at {kv.get('context', 0):,} tokens × batch {kv.get('batch', 0):,}"


def _formats(memory: dict) -> str:
    formats = memory.get("weights_by_format")
    if not isinstance(formats, dict) or not formats:
        return ""
    used = (memory.get("weights") or {}).get("format")
    rows = []
    for name, w in formats.items():
        if isinstance(w, dict):
            mark = name == used or (used or "").split(":")[0] == name and name in ("int4", "nf4")
            rows.append([name + ("  (used)" if mark else ""), *[(_int(w, k) or 0) for k in ("params", "buffers",
                                                                                        "scales", "total")]])
    return ("<h3>weights by format (bytes)</h3>"
            + _table(["weights as", "params", "buffers", "scales", "total"], rows, "memory-formats"))


def _search(name: str, s: dict) -> str:
    from .plot import search_svg
    traces = [t for t in s.get("traces") or [] if isinstance(t, dict) and _int(t, "x") is not None]
    if not traces:
        return ""
    rows = [[t["x"], _int(t, "bytes") or 0, "yes" if t.get("fits") else "no", str(t.get("why", ""))]
            for t in sorted(traces, key=lambda t: t["x"])]
    points = s.get("fit_points") if isinstance(s.get("fit_points"), list) else []
    curve = [tuple(p) for p in points if isinstance(p, list) and len(p) == 2] if s.get("on_curve") else None
    return (f'<h3>largest {_e(name)}: {_e(_answer(s))}</h3>'
            + search_svg([(t["x"], _int(t, "bytes") or 0, bool(t.get("fits"))) for t in traces],
                         _int(s, "budget"), curve, name)
            + _table([name, "bytes", "fits", "taken as"], rows, f"search-{name}"))


def _training(training: dict, phases, unsupported) -> str:
    rows = [(words, f"{_b(_int(training, key))} ({_int(training, key):,} bytes)") for key, words in TRAINING_WORDS
            if _int(training, key)]
    if training.get("peak_phase"):
        rows.append(("peak in", str(training["peak_phase"])))
    out = "<h3>training step</h3>" + _facts(rows, "training-memory")
    if isinstance(phases, dict) and phases:
        out += _table(["phase", "MACs", "FLOPs"], [[str(p), _int(c, "macs") or 0, _int(c, "flops") or 0]
                                                   for p, c in phases.items() if isinstance(c, dict)], "phases")
    rows = [[str(p), str(op), n] for p, ops in (unsupported or {}).items() if isinstance(ops, dict)
            for op, n in ops.items() if isinstance(n, int)]
    if rows:
        out += "<h4>ops without a cost formula, by phase</h4>" + _table(["phase", "op", "calls"], rows,
                                                                       "unsupported-by-phase")
    return out


def sizing_section(d: dict) -> str:
    """The section, or "" when the dict has no memory, training or assumptions."""
    from .plot import timeline_panels_svg
    memory = d.get("memory") if isinstance(d.get("memory"), dict) else None
    training = d.get("training") if isinstance(d.get("training"), dict) else None
    assumptions = d.get("assumptions") if isinstance(d.get("assumptions"), dict) else None
    if memory is None and training is None and assumptions is None:
        return ""
    out = ['<section class="extra" id="section-memory"><h2>Memory and sizing</h2>']
    if memory is not None:
        fits = memory.get("fits") if isinstance(memory.get("fits"), dict) else {}
        largest = memory.get("largest") if isinstance(memory.get("largest"), dict) else {}
        w = memory.get("weights") if isinstance(memory.get("weights"), dict) else {}
        rows = [("peak", _peak(memory)),
                ("weights", f"{_b(_int(w, 'total'))} ({w.get('label', '')})" if _int(w, "total") is not None else ""),
                ("KV cache", _kv(memory.get("kv_cache"))), ("budget", _budget(fits)), ("fits", _fits(fits))]
        rows += [(f"max {k}", _answer(v)) for k, v in largest.items() if isinstance(v, dict)]
        out.append(_facts(rows, "sizing-answer"))
    if assumptions:
        from ..analyses.assumptions import LABELS
        rows = [[LABELS.get(k, k), str(v.get("text", ""))] for k, v in assumptions.items() if isinstance(v, dict)]
        out.append("<h3>assumptions</h3>" + _table(["assumption", "what the answer assumes"], rows, "assumptions"))
    if memory is not None:
        out.append(_formats(memory))
        timeline = memory.get("timeline") if isinstance(memory.get("timeline"), dict) else {}
        live, acts = timeline.get("live"), timeline.get("activations")
        if isinstance(live, list) and live:
            peak = timeline.get("peak") if isinstance(timeline.get("peak"), dict) else {}
            out.append('<h3>timeline</h3><div id="memory-timeline">'
                       + timeline_panels_svg(live, acts if isinstance(acts, list) else [], _int(peak, "event"))
                       + "</div>")
        for name, s in (memory.get("largest") or {}).items():
            if isinstance(s, dict):
                out.append(_search(str(name), s))
    if training is not None:
        out.append(_training(training, d.get("totals_by_phase"), d.get("unsupported_by_phase")))
    out.append("</section>")
    return "".join(out)


__all__ = ["sizing_section"]
