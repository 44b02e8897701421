"""Predicted vs measured activation peak of a forward on CPU, and the cost of memory tracking.

The prediction is flopmeter's (a fake-tensor trace, ``report.memory``). The measurement shares
none of its code: one real ``torch.no_grad()`` forward under ``torch.profiler.profile(
profile_memory=True)``, whose ``[memory]`` records are the CPU allocator's allocations
(+bytes) and frees (−bytes), each one exactly once, summed in time order. Two figures:

* ``measured``: the allocator's peak over the forward (every allocation, kernel workspaces
  included), above what was allocated before it; ``peak_in`` names the op running at that
  moment (the outermost the trace recorded, then the innermost);
* ``at_ops``: the same running sum read only at the end of each op the trace recorded (the
  profiler names the same aten ops: ``aten::convolution``, ``aten::native_batch_norm``; the
  outermost of them where they nest). Only the sampling moments come from the trace; the
  bytes are the allocator's. Allocations a kernel makes and frees inside one op (oneDNN
  weight reorders and blocked-layout copies, scratch buffers) are gone by then: they are
  workspaces, not tensors, and ``measured − at_ops`` shows them apart.

The prediction counts the ``act`` storages (created by the forward; the example inputs,
parameters and buffers existed before, as in the measurement). Lifetimes are the Python
program's (eager), so predicted = ``at_ops`` when the prediction is right, and = ``measured``
too where no kernel allocates a workspace.

Overhead: ``flopmeter.count`` with ``Options(memory=True)`` against the plain count, timed
side by side (interleaved, alternating which goes first, median of N) in the same run.

On a GPU (``--device cuda``) the forward runs there and ``measured`` is
``torch.cuda.max_memory_allocated`` above what was allocated before it, against the
prediction for device ``cuda`` (storages rounded up to the caching allocator's 512-byte blocks).

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
    measured: int                 # the allocator's peak over the forward
    at_ops: int                   # the running sum's peak at the ends of the sampled ops
    peak_in: str                  # the (recorded) op running at the allocator's peak > the innermost one


def measure_forward(model: torch.nn.Module, args: tuple, kwargs: dict | None = None,
                    sample_ops: set[str] | None = None) -> Measured:
    """The real forward's activation peak from the profiler's allocation records (see above).
    ``sample_ops``: profiler op names ("aten::convolution") whose ends are sampled for
    ``at_ops`` — the outermost of them in each nest; default: every top-level op."""
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
    ops = sorted(((e.start_ns(), e.end_ns(), e.name()) for e in events
                  if e.name() != "[memory]" and e.name().startswith("aten::")), key=lambda o: (o[0], -o[1]))
    samples, stack = [], []
    for start, end, name in ops:
        while stack and stack[-1][1] < start:
            stack.pop()
        if sample_ops is None:
            if not stack:
                samples.append(end)
        elif name in sample_ops and not any(n in sample_ops for _, _, n in stack):
            samples.append(end)
        stack.append((start, end, name))
    samples.sort()
    live = peak = at_ops = 0
    peak_t = None
    k = 0
    for t_end in samples:
        while k < len(mem) and mem[k][0] <= t_end:
            live += mem[k][1]
            if live > peak:
                peak, peak_t = live, mem[k][0]
            k += 1
        at_ops = max(at_ops, live)
    for t, b in mem[k:]:
        live += b
        if live > peak:
            peak, peak_t = live, t
    around = [o for o in ops if peak_t is not None and o[0] <= peak_t <= o[1]]     # outermost first
    names = [o[2] for o in around]
    if not names:
        return Measured(peak, at_ops, "(between ops)")
    outer = next((n for n in names if sample_ops and n in sample_ops), names[0])
    return Measured(peak, at_ops, outer if outer == names[-1] else f"{outer} > {names[-1]}")


def measure_cuda(model: torch.nn.Module, args: tuple, kwargs: dict | None = None) -> Measured:
    """On a GPU: ``torch.cuda.max_memory_allocated`` over one forward, above what was allocated
    before it (the caching allocator's blocks, 512-byte rounding included; cuBLAS/cuDNN
    workspaces that go through the allocator included, so ``at_ops`` is not known here)."""
    kwargs = kwargs or {}
    with torch.no_grad():
        model(*args, **kwargs)                         # warm-up: cuBLAS handles and workspaces
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = model(*args, **kwargs)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    del out
    return Measured(peak, -1, "")


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


def _to(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def predicted(model, args, kwargs) -> tuple[int, str, set[str]]:
    """(peak of the activations, where, the profiler names of the ops the trace recorded)."""
    import flopmeter

    r = flopmeter.count(model, *args, kwargs=kwargs, options=flopmeter.Options(memory=True))
    acts = r.memory.timeline.activations
    i = max(range(len(acts)), key=acts.__getitem__)
    ev = r.trace.events[i]
    names = {e.op.replace(".", "::", 1) for e in r.trace.events}
    return acts[i], f"{ev.module or '(root)'} {ev.op}", names


def overhead(model, args, kwargs, repeat: int) -> tuple[float, float]:
    import flopmeter

    plain, mem = flopmeter.Options(), flopmeter.Options(memory=True)
    flopmeter.count(model, *args, kwargs=kwargs, options=plain)
    times: dict[int, list[float]] = {0: [], 1: []}
    for i in range(repeat):                 # interleaved, the order alternating (ABBA) against drift
        for which in ((0, 1) if i % 2 == 0 else (1, 0)):
            t = time.perf_counter()
            flopmeter.count(model, *args, kwargs=kwargs, options=(plain, mem)[which])
            times[which].append(time.perf_counter() - t)
    return statistics.median(times[0]), statistics.median(times[1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", default=[*TORCHVISION, *TIMM, *HF])
    p.add_argument("--repeat", type=int, default=5, help="timing repeats for the overhead (median)")
    p.add_argument("--json", help="also write the rows to this file")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="cuda: the real forward on the GPU, measured with torch.cuda.max_memory_allocated, "
                        "against the prediction for device cuda (512-byte blocks)")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    rows = []
    head = (f"{'model':30} {'predicted':>12} {'at its ops':>12} {'pred/ops':>8} {'measured':>12} {'pred/meas':>9} "
            f"{'count s':>8} {'+memory s':>9} {'ratio':>6}  peak at; allocator's peak inside")
    print(head)
    for spec in a.models:
        try:
            model, args, kwargs, note = build(spec)
            if device.type == "cuda":
                model = model.to(device)
                args, kwargs = _to(args, device), _to(kwargs, device)
            pred, where, names = predicted(model, args, kwargs)
            m = measure_cuda(model, args, kwargs) if device.type == "cuda" else \
                measure_forward(model, args, kwargs, sample_ops=names)
            t_plain, t_mem = overhead(model, args, kwargs, a.repeat)
        except Exception as exc:  # noqa: BLE001 — one failing model must not stop the table
            print(f"{spec:30} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}")
            continue
        row = {"model": spec, "note": note, "predicted": pred, **asdict(m), "peak_at": where,
               "count_s": t_plain, "memory_s": t_mem}
        rows.append(row)
        print(f"{spec:30} {pred:>12,} {m.at_ops:>12,} {pred / max(m.at_ops, 1):>8.4f} {m.measured:>12,} "
              f"{pred / m.measured:>9.4f} {t_plain:>8.3f} {t_mem:>9.3f} {t_mem / t_plain:>6.2f}  {where}; "
              f"{m.peak_in}" + (f"  [{note}]" if note else ""), flush=True)
    if rows:
        ratios = [r["memory_s"] / r["count_s"] for r in rows]
        exact = sum(r["predicted"] == r["at_ops"] for r in rows)
        same = sum(r["predicted"] == r["measured"] for r in rows)
        within = sum(abs(r["predicted"] / r["measured"] - 1) <= 0.02 for r in rows)
        print(f"\n{len(rows)} models: predicted = measured at its ops for {exact}; = the allocator's peak for "
              f"{same}, within 2% of it for {within}; "
              f"memory tracking costs {statistics.median(ratios):.2f}× the plain count (median; max "
              f"{max(ratios):.2f}×); {torch.get_num_threads()} torch threads.")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
