"""Notes on module-tree rows: a module that never ran as a module shows no output and 0 MACs.
Under ``nn.MultiheadAttention`` (which uses ``out_proj``'s weights directly in one fused call)
or the fused fast path of ``nn.TransformerEncoderLayer``/``DecoderLayer``, its work is counted
in that parent; the row's output cell says so ("fused into 'self_attn'") instead of looking like a free layer. Any other module that
did not run says "not called"."""

from __future__ import annotations

FUSED = ("MultiheadAttention", "TransformerEncoderLayer", "TransformerDecoderLayer")


def call_note(report, node) -> str:
    """What the output column says for a module that never ran ('' for one that did)."""
    if node.calls or not node.path:
        return ""
    ran = {n.path: n for n in report.modules() if n.calls}
    parts = node.path.split(".")
    for i in range(len(parts) - 1, -1, -1):
        parent = ran.get(".".join(parts[:i]))
        if parent is not None:
            if parent.type in FUSED:
                return f"fused into '{parent.name}'" if parent.path else "fused into the root"
            break
    return "not called"
