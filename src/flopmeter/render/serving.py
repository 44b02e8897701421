"""Views of a :class:`flopmeter.analyses.serving.Serving`: the header with every term written out,
the decode table (batch, TPOT, tokens/s per GPU, bound, KV used) and the plot of tokens/s and
TPOT against batch (the ``plots`` extra, matplotlib)."""

from __future__ import annotations

import io
from pathlib import Path

from .tables import Table
from .units import human_unit


def ms(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def header(s, raw: bool = False) -> list[tuple[str, str]]:
    """(name, text) pairs: each number with the terms it is made of."""
    from ..analyses.serving import VLLM
    b = lambda n: human_unit(int(n), "B", raw)
    kv, u, w = s.kv, s.kv.usable, s.weights
    dev = s.device
    tp = f" per rank of {s.tp} (tensor parallel)" if s.tp > 1 else ""
    items = [
        ("model", f"{s.model} ({s.dtype}); requests of {s.prompt:,} prompt + {s.output:,} output tokens"),
        ("device", (f"{dev.name} ({dev.memory_note or 'datasheet'}): usable {b(u.usable)} = total {b(u.total)} − "
                    f"reserve {b(u.reserve)}; {dev.bandwidth / 1e9:,.0f} GB/s")),
        ("serving as", (f"{VLLM}: max_num_batched_tokens {s.max_num_batched_tokens:,}, "
                        f"max_num_seqs {s.max_num_seqs:,}, block_size {kv.block_size}, gpu_memory_utilization "
                        f"{kv.utilization:g}, KV cache {s.kv_dtype}")),
        ("weights", f"{b(w.total)}{tp} ({w.label}; buffers {b(w.buffers)})"),
        ("profile run", (f"{s.max_num_batched_tokens:,} tokens as {s.profile_requests:,} requests, no KV cache: "
                         f"activation peak {b(kv.activation_peak)} at {s.activation_at}")),
        ("KV budget", (f"{b(kv.budget)} = usable {b(u.usable)} × {kv.utilization:g} − weights {b(w.total)} − "
                       f"activation peak {b(kv.activation_peak)}")),
        ("KV per token", f"{kv.per_token:,} B{tp} = {s.kv_terms}"),
        ("KV capacity", (f"{kv.tokens:,} tokens = ⌊{kv.budget:,} / {kv.per_token:,}⌋; {kv.blocks:,} blocks = "
                         f"⌊{kv.budget:,} / ({kv.per_token:,} × {kv.block_size})⌋ ({kv.blocks * kv.block_size:,} "
                         f"tokens paged)")),
        ("concurrency", (f"{kv.concurrency:,} requests of {s.prompt + s.output:,} tokens = min(⌊({kv.blocks:,} − 1 null "
                         f"block) / {kv.blocks_per_request:,} blocks a request⌋ = {kv.by_kv:,}, max_num_seqs "
                         f"{s.max_num_seqs:,}); vLLM logs {kv.blocks / kv.blocks_per_request:,.2f}x "
                         f"(blocks / blocks a request)")),
    ]
    t = s.ttft
    items.append(("TTFT", f"{ms(t.ttft_s)} = prefill of {t.tokens:,} tokens on the roofline {ms(t.roofline_s)} "
                          f"(Σ per op max(compute, memory); compute bound {t.flops:,} FLOPs / {t.peak / 1e12:g} "
                          f"TFLOP/s {t.peak_dtype} = {ms(t.compute_bound_s)})"
                          + (f" + all-reduces {ms(t.comm_s)}" if s.tp > 1 else "")))
    if s.steps:
        one = s.steps[0]
        items.append(("TPOT at batch 1", f"{ms(one.tpot_s)} ({one.bound}-bound): memory (weights read "
                                         f"{b(one.weight_bytes)} + KV read {b(one.kv_bytes)} at context "
                                         f"{one.context:g}) / {dev.bandwidth / 1e9:,.0f} GB/s = {ms(one.memory_s)}; "
                                         f"compute {one.flops:,.0f} FLOPs = {ms(one.compute_s)}"
                                         + (f"; all-reduces {ms(one.comm_s)}" if s.tp > 1 else "")))
    items += [("note", n) for n in s.notes]
    return items


def decode_table(s, raw: bool = False) -> Table:
    t = Table(["batch", "TPOT", "tokens/s per GPU", "bound", "memory", "compute", "KV used", "KV share"],
              [True, True, True, False, True, True, True, True])
    for st in s.steps:
        t.rows.append([st.batch, st.tpot_s if raw else ms(st.tpot_s),
                       round(st.tokens_per_s_per_gpu, 3) if raw else f"{st.tokens_per_s_per_gpu:,.0f}", st.bound,
                       st.memory_s if raw else ms(st.memory_s), st.compute_s if raw else ms(st.compute_s),
                       st.kv_used if raw else human_unit(st.kv_used, "B"),
                       round(st.kv_share, 6) if raw else f"{100 * st.kv_share:.1f}%"])
    return t


def figure(s):
    """tokens/s per GPU (left axis) and TPOT (right axis) against batch."""
    from ..bench.plot import _figure_class
    Figure = _figure_class()
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    xs = [st.batch for st in s.steps]
    ax.plot(xs, [st.tokens_per_s_per_gpu for st in s.steps], marker="o", color="tab:blue",
            label="tokens/s per GPU")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.minorticks_off()
    ax.set_xlabel("batch (concurrent requests)")
    ax.set_ylabel("output tokens/s per GPU", color="tab:blue")
    right = ax.twinx()
    right.plot(xs, [st.tpot_s * 1e3 for st in s.steps], marker="s", color="tab:red", label="TPOT")
    right.set_ylabel("TPOT (ms)", color="tab:red")
    ax.set_title(f"{s.model} on {s.tp}× {s.device.name}, {s.prompt}+{s.output} tokens (roofline)")
    ax.grid(True, alpha=0.3)
    return fig


def write_plot(s, path: str | Path) -> Path:
    """The plot to ``path`` (.png, .svg or .pdf)."""
    from ..bench.plot import check_plot_path
    from ..files import write_file
    path = check_plot_path(path)
    fig = figure(s)
    write_file(path, lambda f: fig.savefig(f, format=path.suffix[1:].lower()), example="serve.png")
    return path


def plot_block(s) -> tuple[str, object]:
    """The plot for an HTML page: an inline SVG, or a line saying why there is none."""
    from ..errors import MissingDependencyError
    from .html import Image
    try:
        buffer = io.BytesIO()
        figure(s).savefig(buffer, format="svg")
    except MissingDependencyError as exc:
        return "tokens/s and TPOT against batch", f"no plot: {exc} (pip install 'flopmeter[plots]')"
    return "tokens/s and TPOT against batch", Image("image/svg+xml", buffer.getvalue(),
                                                     f"tokens/s and TPOT of {s.model} against batch")


__all__ = ["decode_table", "figure", "header", "plot_block", "write_plot"]
