"""How long ``flopmeter plan --search`` takes for a Llama-7B-shaped model on 256 H100s (32 nodes
of 8), and how many traces it makes for how many configurations.

The search tries tp 1, 2, 4, 8 (dp the rest), ZeRO 0/1/2 and FSDP2, sequence parallelism on and
off (tp > 1), recompute none and full, and the micro-batches given (default 1): 56 configurations
per micro-batch. ZeRO stages 0–2 of one (tp, sp, recompute, batch) share one trace, FSDP2 traces
its own. The table lists the ten fastest that fit and every rejection, and the time per trace.

    python benchmarks/plan_search.py [--batches 1,2] [--seq-len 4096]   # writes benchmarks/results/plan_search.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "plan_search.md"
sys.path.insert(0, str(Path(__file__).parents[1] / "src"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--cluster", default="8xH100:32")
    ap.add_argument("--spec", default="hf:llama-7b")
    a = ap.parse_args()
    batches = tuple(int(b) for b in a.batches.split(","))
    load = os.getloadavg()[0]
    start = time.perf_counter()
    import torch
    import transformers  # noqa: F401

    from flopmeter.analyses.parallel.search import search
    imported = time.perf_counter() - start
    started = time.perf_counter()

    def progress(done, total, what):
        print(f"[{time.perf_counter() - started:7.1f} s] {done}/{total} {what}", flush=True)

    r = search(a.spec, cluster=a.cluster, batches=batches, seq_len=a.seq_len, progress=progress)
    wall = time.perf_counter() - started
    traced = sum(c.traced for c in r.candidates)
    lines = [f"# flopmeter plan --search: {a.spec} on {a.cluster} (world {r.world})", "",
             (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs shared with other "
              f"work while measured (load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end), "
              f"Python {platform.python_version()}, torch {torch.__version__}."),
             (f"Sequence {a.seq_len}, micro-batches {', '.join(map(str, batches))}, bf16 compute, fp32 AdamW. "
              f"Import of torch, transformers and flopmeter: {imported:.1f} s (not in the search time)."), "",
             f"Re-run: `python benchmarks/plan_search.py --batches {a.batches} --seq-len {a.seq_len}`.", "",
             "| configurations | rejected before tracing | planned | traces | search wall time | per trace |",
             "|---|---|---|---|---|---|",
             (f"| {len(r.candidates)} | {len(r.candidates) - traced} | {traced} | {r.traces} | **{wall:.0f} s** "
              f"| {wall / max(r.traces, 1):.1f} s |"), "",
             (f"{traced - r.traces} of the {traced} planned configurations reuse a trace made for another one "
              "(ZeRO stages 0, 1 and 2 of one tp, sp, recompute and batch trace the same per-rank step)."), "",
             "## The ten fastest that fit", "",
             "| rank | configuration | step time | tokens/s | MFU | peak per rank | usable |", "|---|---|---|---|---|---|---|"]
    for i, c in enumerate(r.top(10), 1):
        lines.append(f"| {i} | {c.label()} | {c.step_s * 1e3:.0f} ms | {c.tokens_per_s:,.0f} | {100 * c.mfu:.1f}% "
                     f"| {c.peak / 2**30:.1f} GiB | {c.usable / 2**30:.1f} GiB |")
    lines += ["", f"## Rejected ({len(r.rejected)})", "", "| configuration | why |", "|---|---|"]
    lines += [f"| {c.label()} | {c.reason} |" for c in r.rejected]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
