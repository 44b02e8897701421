"""How long ``flopmeter plan`` takes on this machine for Llama-shaped models at TP 8 × FSDP2.

Each configuration runs in a fresh process (``python benchmarks/plan_speed.py --one SPEC CLUSTER
SEQ``), so the times include PyTorch's first-use costs (DTensor's sharding propagation caches,
FakeTensor's dispatch cache) but not Python's import of torch and transformers, which is timed
apart. The plan's own split is reported: build (the model on the meta device), parallelize
(mesh, parallelize_module, fully_shard), trace (fake storage, the optimizer's warm-up, the
recorded step) and cost (formulas, memory timeline, collectives, step time). The table also
shows what each plan predicts.

    python benchmarks/plan_speed.py            # writes benchmarks/results/plan_speed.md
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = [("hf:llama-7b", "8xH100:8", 4096), ("hf:llama-7b", "8xH100:128", 4096), ("hf:llama-70b", "8xH100:16", 4096)]
OUT = Path(__file__).parent / "results" / "plan_speed.md"


def one(spec: str, cluster: str, seq: int) -> dict:
    start = time.perf_counter()
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import flopmeter
    imported = time.perf_counter() - start
    start = time.perf_counter()
    p = flopmeter.plan(spec, cluster=cluster, tp=8, fsdp=True, batch=1, seq_len=seq)
    wall = time.perf_counter() - start
    return {"spec": spec, "cluster": cluster, "seq": seq, "import_s": imported, "plan_s": wall, "split": p.seconds,
            "events": len(p.report.trace.events), "world": p.world, "dp": p.dp,
            "peak_gib": p.memory.peak / 2**30, "fits": p.memory.fits, "step_s": p.step_s,
            "no_overlap_s": p.time.no_overlap, "mfu": p.mfu, "tokens_per_s": p.tokens_per_s}


def main() -> None:
    if sys.argv[1:2] == ["--one"]:
        spec, cluster, seq = sys.argv[2], sys.argv[3], int(sys.argv[4])
        print(json.dumps(one(spec, cluster, seq)))
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    rows, load = [], os.getloadavg()[0]
    for spec, cluster, seq in CONFIGS:
        done = subprocess.run([sys.executable, __file__, "--one", spec, cluster, str(seq)], env=env, check=False,
                              capture_output=True, text=True, timeout=1800)
        if done.returncode:
            raise SystemExit(done.stderr)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    import torch
    lines = ["# flopmeter plan: time to plan Llama-shaped models at TP 8 × FSDP2", "",
             (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs "
             f"shared with other work while measured (load average {load:.1f} at the start, "
             f"{os.getloadavg()[0]:.1f} at the end), Python {platform.python_version()}, torch {torch.__version__}."),
             ("One fresh process per row; `plan` is the wall time of `flopmeter.plan(...)` (import of torch, "
             "transformers and flopmeter apart, in `import`). Batch 1 per data-parallel rank, tp 8, "
             "`fsdp=True` (fully_shard per decoder layer and the root), bf16 compute, fp32 AdamW."), "",
             "Re-run: `python benchmarks/plan_speed.py`.", "",
             ("| model | cluster | world (dp × tp) | seq | events | import | plan | build | parallelize | trace | cost "
             "| peak / rank | step (scheduled) | step (no overlap) | MFU | tokens/s |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["split"]
        lines.append(f"| {r['spec']} | {r['cluster']} | {r['world']} ({r['dp']} × 8) | {r['seq']} | {r['events']:,} "
                     f"| {r['import_s']:.1f} s | **{r['plan_s']:.1f} s** | {s['build']:.1f} s | {s['parallelize']:.1f} s "
                     f"| {s['trace']:.1f} s | {s['cost']:.1f} s | {r['peak_gib']:.1f} GiB"
                     f"{'' if r['fits'] else ' (does not fit)'} | {r['step_s'] * 1e3:.0f} ms "
                     f"| {r['no_overlap_s'] * 1e3:.0f} ms | {100 * r['mfu']:.1f}% | {r['tokens_per_s']:,.0f} |")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
