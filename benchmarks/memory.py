"""Predicted vs measured activation peak of a forward on CPU, and the cost of memory tracking.

The prediction is flopmeter's (a fake-tensor trace, ``report.memory``). The measurement shares
none of its code: one real ``torch.no_grad()`` forward under ``torch.profiler.profile(
profile_memory=True)``, whose ``[memory]`` records are the CPU allocator's allocations
(+bytes) and frees (−bytes), each one exactly once, summed in time order. Two figures:

* ``measured``: the allocator's peak over the forward (every allocation, kernel workspaces
  included), above what was allocated before it;
* ``measured_ops``: the same running sum read only at the end of each top-level op (an op
  called from Python, with no op around it): allocations a kernel makes and frees inside one
  op (oneDNN weight reorders, scratch buffers, a composite op's internal results) are gone
  by then. ``workspace`` is the bytes of such op-internal allocations alive at the measured
  peak, and ``workspace_op`` the innermost op that made the largest of them.

The prediction counts the ``act`` storages (created by the forward; the example inputs,
parameters and buffers existed before, as in the measurement). Lifetimes are the Python
program's (eager), so predicted = measured where a forward allocates nothing but the tensors
its ops return; ``measured_ops ≤ predicted ≤ measured`` otherwise.

Overhead: ``flopmeter.count`` with ``Options(memory=True)`` against the plain count, timed
side by side (interleaved, median of N) in the same run.

    python benchmarks/memory.py                       # the whole validation set
    python benchmarks/memory.py --models resnet50 timm:convnext_tiny hf:gpt2 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

TORCHVISION = ("resnet18", "resnet50", "resnet101", "resnext50_32x4d", "wide_resnet50_2", "vgg11", "vgg16_bn",
               "alexnet", "densenet121", "mobilenet_v2", "mobilenet_v3_large", "mnasnet1_0", "shufflenet_v2_x1_0",
               "squeezenet1_0", "googlenet", "inception_v3", "efficientnet_b0", "regnet_y_400mf", "convnext_tiny",
               "vit_b_16", "swin_t", "maxvit_t")
TIMM = ("timm:resnet50d", "timm:efficientnet_b0", "timm:convnext_tiny", "timm:deit_small_patch16_224",
        "timm:mobilevitv2_050")
# the shipped Hugging Face configs; the 7B/70B ones cut to 2 layers and 1/8 of their width (same code paths:
# grouped-query attention, sliding window) — a real run of the full ones does not fit this machine
HF = ("hf:gpt2", "hf:bert-base-uncased", "hf:t5-small", "hf:vit-base-patch16-224", "hf:llama-7b", "hf:llama-70b",
      "hf:mistral-7b")
SHRINK = {"num_hidden_layers": 2, "hidden_size": 8, "intermediate_size": 8, "num_attention_heads": 8,
          "num_key_value_heads": 8}   # divide these by …; layers set to 2


@dataclass
class Measured:
    measured: int                 # allocator peak over the forward
    measured_ops: int             # at top-level op ends only
    workspace: int                # op-internal allocations alive at the measured peak
    workspace_op: str


def measure_forward(model: torch.nn.Module, args: tuple, kwargs: dict | None = None) -> Measured:
    """The real forward's activation peak from the profiler's allocation records (see above)."""
    from torch.profiler import ProfilerActivity, profile

    kwargs = kwargs or {}
    with torch.no_grad():
        model(*args, **kwargs)                         # warm-up: lazy initialisation, oneDNN caches
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                out = model(*args, **kwargs)
    del out
    events = prof.profiler.kineto_results.events()
    mem = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    ops = sorted((e.start_ns(), e.end_ns(), e.name()) for e in events
                 if e.name() != "[memory]" and not e.is_user_annotation() and e.name().startswith("aten::"))
    top: list[tuple[int, int, str]] = []               # ops with no op around them
    for start, end, name in ops:
        if not top or start >= top[-1][1]:
            top.append((start, end, name))

    def top_of(t: int) -> int:
        lo, hi = 0, len(top)
        while lo < hi:
            mid = (lo + hi) // 2
            if top[mid][0] <= t:
                lo = mid + 1
            else:
                hi = mid
        i = lo - 1
        return i if i >= 0 and top[i][0] <= t <= top[i][1] else -1

    def innermost(t: int) -> str:
        inner = [o for o in ops if o[0] <= t <= o[1]]
        return max(inner)[2] if inner else "(between ops)"

    # pair each allocation with its free (LIFO per size is enough to tell op-internal ones)
    open_allocs: dict[int, list[int]] = {}
    internal = [False] * len(mem)
    for k, (t, b) in enumerate(mem):
        if b > 0:
            open_allocs.setdefault(b, []).append(k)
        elif b < 0 and open_allocs.get(-b):
            j = open_allocs[-b].pop()
            op = top_of(mem[j][0])
            internal[j] = op >= 0 and op == top_of(t)
    live = peak = 0
    peak_at = -1
    for k, (_, b) in enumerate(mem):
        live += b
        if live > peak:
            peak, peak_at = live, k
    # workspace alive at the peak: op-internal allocations made before it and not yet freed
    ws, ws_op, ws_size = 0, "", 0
    stacks: dict[int, list[int]] = {}
    for k, (_, b) in enumerate(mem[: peak_at + 1]):
        if b > 0:
            stacks.setdefault(b, []).append(k)
        elif stacks.get(-b):
            stacks[-b].pop()
    for size, ks in stacks.items():
        for k in ks:
            if internal[k]:
                ws += size
                if size > ws_size:
                    ws_size, ws_op = size, innermost(mem[k][0])
    # the running sum at the end of each top-level op
    op_peak = live = 0
    k = 0
    for start, end, _ in top:
        while k < len(mem) and mem[k][0] <= end:
            live += mem[k][1]
            k += 1
        op_peak = max(op_peak, live)
    return Measured(peak, op_peak, ws, ws_op)


# -- models ---------------------------------------------------------------------------

def build(spec: str):
    """(model with random weights in eval mode, args, kwargs, note) for a benchmark spec."""
    from flopmeter.frontends import InputRequest, resolve

    if ":" not in spec:
        spec = f"torchvision:{spec}"
    note = ""
    if spec in ("hf:llama-7b", "hf:llama-70b", "hf:mistral-7b"):
        return _shrunk_hf(spec)
    resolved = resolve(spec, InputRequest())
    torch.manual_seed(0)
    model = resolved.rebuild() if resolved.rebuild else resolved.model
    model = model.eval()
    args, kwargs = resolved.make_inputs(torch.device("cpu"))
    return model, args, kwargs, note


def _shrunk_hf(spec: str):
    import transformers

    from flopmeter.frontends.hf import CONFIGS

    raw = json.loads((CONFIGS / f"{spec[3:]}.json").read_text())
    raw.pop("torch_dtype", None)
    for key, div in SHRINK.items():
        if key == "num_hidden_layers":
            raw[key] = 2
        elif key in raw:
            raw[key] = max(1, raw[key] // div)
    raw["vocab_size"] = 4096
    if "head_dim" in raw:
        raw["head_dim"] = raw["hidden_size"] // raw["num_attention_heads"]
    model_type = raw.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **raw)
    torch.manual_seed(0)
    model = getattr(transformers, config.architectures[0])(config).eval()
    ids = torch.zeros(1, 128, dtype=torch.long)
    return model, (ids,), {}, "2 layers, 1/8 width, vocab 4096"


def predicted(model, args, kwargs) -> tuple[int, str, int]:
    import flopmeter

    r = flopmeter.count(model, *args, kwargs=kwargs, options=flopmeter.Options(memory=True))
    peak = r.memory.timeline
    i = max(range(len(peak.activations)), key=peak.activations.__getitem__)
    ev = r.trace.events[i]
    return peak.activations[i], f"{ev.module or '(root)'} {ev.op}", r.memory.peak.activations


def overhead(model, args, kwargs, repeat: int) -> tuple[float, float]:
    import flopmeter

    plain, mem = flopmeter.Options(), flopmeter.Options(memory=True)
    flopmeter.count(model, *args, kwargs=kwargs, options=plain)
    a, b = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        flopmeter.count(model, *args, kwargs=kwargs, options=plain)
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        flopmeter.count(model, *args, kwargs=kwargs, options=mem)
        b.append(time.perf_counter() - t)
    return statistics.median(a), statistics.median(b)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", default=[*TORCHVISION, *TIMM, *HF])
    p.add_argument("--repeat", type=int, default=5, help="timing repeats for the overhead (median)")
    p.add_argument("--json", help="also write the rows to this file")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    head = (f"{'model':34} {'predicted':>12} {'measured':>12} {'pred/meas':>9} {'at op ends':>12} "
            f"{'workspace':>11}  {'count s':>8} {'+memory s':>9} {'ratio':>6}  peak at / largest workspace")
    print(head)
    for spec in a.models:
        try:
            model, args, kwargs, note = build(spec)
            pred, where, _ = predicted(model, args, kwargs)
            m = measure_forward(model, args, kwargs)
            t_plain, t_mem = overhead(model, args, kwargs, a.repeat)
        except Exception as exc:  # noqa: BLE001 — one failing model must not stop the table
            print(f"{spec:34} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}")
            continue
        row = {"model": spec, "note": note, "predicted": pred, **asdict(m), "peak_at": where,
               "count_s": t_plain, "memory_s": t_mem}
        rows.append(row)
        print(f"{spec:34} {pred:>12,} {m.measured:>12,} {pred / m.measured:>9.4f} {m.measured_ops:>12,} "
              f"{m.workspace:>11,}  {t_plain:>8.3f} {t_mem:>9.3f} {t_mem / t_plain:>6.2f}  {where}"
              + (f" / {m.workspace_op}" if m.workspace else "") + (f"  [{note}]" if note else ""), flush=True)
    if rows:
        ratios = [r["memory_s"] / r["count_s"] for r in rows]
        exact = sum(r["predicted"] == r["measured"] for r in rows)
        within = sum(abs(r["predicted"] / r["measured"] - 1) <= 0.02 for r in rows)
        print(f"\n{len(rows)} models: predicted = measured exactly for {exact}, within 2% for {within}; "
              f"memory tracking costs {statistics.median(ratios):.2f}× the plain count (median; max "
              f"{max(ratios):.2f}×). Machine shared with other jobs: {torch.get_num_threads()} threads.")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
