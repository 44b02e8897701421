"""How much does counting cost, compared with one plain forward?

For each model (torchvision resnet50 and vit_b_16 at 1x3x224x224, a randomly initialised
GPT-2 built from ``GPT2Config()`` defaults with input_ids of shape (1, 128)), on CPU, this
times, side by side and in the same run:

  * a plain ``torch.no_grad()`` forward (eval mode, 2 warm-ups, median of N),
  * ``flopmeter.count(model, *inputs)`` in fake mode (the default) and in real mode,
  * PyTorch's ``torch.utils.flop_counter.FlopCounterMode`` around a no_grad forward,
  * ptflops / fvcore / thop / torchprofile / calflops, if importable (each skipped with a
    note otherwise).

Each counter gets one warm-up, then N repeats interleaved with the forward (forward,
fake, real, FlopCounterMode, ... in every repeat) so load drift hits all alike; the
table shows medians and the ratio to the forward. It also checks that flopmeter's FLOPs
('dot' convention = 2 x MACs) equal FlopCounterMode's ``get_total_flops()``.

    python benchmarks/overhead.py                    # all models, N=5
    python benchmarks/overhead.py --repeat 3 --models resnet50 gpt2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch

import flopmeter
from counters import flop_counter_mode, optional_tools, plain_forward, timed

MODELS = ("resnet50", "vit_b_16", "gpt2")


def build(name: str):
    """Return (model in eval mode, tuple of example inputs)."""
    if name == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel
        model = GPT2LMHeadModel(GPT2Config())          # config only: no hub download
        return model.eval(), (torch.randint(0, model.config.vocab_size, (1, 128)),)
    import torchvision
    model = getattr(torchvision.models, name)(weights=None)
    return model.eval(), (torch.randn(1, 3, 224, 224),)


def measure(name: str, repeat: int, extra: dict) -> dict:
    model, inputs = build(name)
    fake_opts, real_opts = flopmeter.Options(mode="fake"), flopmeter.Options(mode="real")
    counters = {
        "forward": plain_forward,
        "fake": lambda m, x: flopmeter.count(m, *x, options=fake_opts),
        "real": lambda m, x: flopmeter.count(m, *x, options=real_opts),
        "fcm": flop_counter_mode,
        **extra,
    }
    plain_forward(model, inputs)                       # second forward warm-up
    results = {}
    for key, fn in list(counters.items()):            # warm-up of each; a counter that fails is dropped
        try:
            results[key] = fn(model, inputs)
        except Exception as exc:                       # noqa: BLE001 — other tools' failures are data
            if key not in extra:
                raise
            print(f"{key} failed on {name}: {type(exc).__name__}")
            del counters[key]
    times: dict[str, list[float]] = {key: [] for key in counters}
    for _ in range(repeat):                            # interleaved
        for key, fn in counters.items():
            ms, results[key] = timed(fn, model, inputs)
            times[key].append(ms)
    return {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "report": results["fake"],
        "real_report": results["real"],
        "fcm_by_op": results["fcm"],
        "fcm_flops": sum(results["fcm"].values()),
        "extra": {key: results[key] for key in extra if key in results},
        "ms": {key: statistics.median(v) for key, v in times.items()},
    }


def render(rows: list[dict], extra: dict) -> None:
    """Two tables: flopmeter against the forward and FlopCounterMode, then the other counters."""
    cols = ["model", "params (M)", "MACs (G)", "forward ms", "fake ms", "fake/fwd", "real ms",
            "real/fwd", "FCM ms", "FCM/fwd", "flopmeter FLOPs", "FCM FLOPs", "agree"]
    main, others = [], []
    for r in rows:
        ms, rep = r["ms"], r["report"]
        agree = "yes" if rep.flops == r["fcm_flops"] else f"NO ({rep.flops / r['fcm_flops'] - 1:+.2%})"
        main.append([r["model"], f"{r['params'] / 1e6:.1f}", f"{rep.macs / 1e9:.3f}", f"{ms['forward']:.1f}",
                     f"{ms['fake']:.1f}", f"{ms['fake'] / ms['forward']:.2f}x", f"{ms['real']:.1f}",
                     f"{ms['real'] / ms['forward']:.2f}x", f"{ms['fcm']:.1f}", f"{ms['fcm'] / ms['forward']:.2f}x",
                     f"{rep.flops:,}", f"{r['fcm_flops']:,}", agree])
        line = [r["model"], f"{rep.macs / 1e9:.3f}"]
        for key in extra:
            line += ([f"{ms[key] / ms['forward']:.2f}x", f"{r['extra'][key] / 1e9:.3f}"]
                     if key in r["extra"] else ["err"] * 2)
        others.append(line)
    print_table(cols, main)
    if extra:
        print_table(["model", "flopmeter MACs (G)", *(f"{key} {suffix}" for key in extra
                                                       for suffix in ("/fwd", "MACs (G)"))], others)


def print_table(cols: list[str], table: list[list[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
        t = Table(*cols)
        for line in table:
            t.add_row(*line)
        Console(width=max(160, Console().width)).print(t)
    except ImportError:
        widths = [max(len(c), *(len(line[i]) for line in table)) for i, c in enumerate(cols)]
        for line in [cols, ["-" * w for w in widths], *table]:
            print("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed repeats per measurement (default 5)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    args = parser.parse_args()

    warnings.filterwarnings("ignore")
    extra, notes = optional_tools()
    print(f"torch {torch.__version__}, flopmeter {flopmeter.__version__}, "
          f"torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}, repeat {args.repeat}")
    for note in notes:
        print(f"note: {note}")

    rows = []
    for name in args.models:
        start = time.perf_counter()
        rows.append(measure(name, args.repeat, extra))
        print(f"measured {name} in {time.perf_counter() - start:.1f} s", flush=True)
    render(rows, extra)

    for r in rows:
        rep, real = r["report"], r["real_report"]
        if rep.unsupported:
            print(f"{r['model']}: ops without a flopmeter formula: {rep.unsupported}")
        if (real.macs, real.flops) != (rep.macs, rep.flops):
            print(f"{r['model']}: fake and real mode disagree: {rep.flops:,} vs {real.flops:,} FLOPs")
        ours = {op: cost.flops("dot") for op, (_, cost) in rep.by_op().items()}
        for op in sorted(set(ours) | set(r["fcm_by_op"])):
            a, b = ours.get(op, 0), r["fcm_by_op"].get(op, 0)
            if a != b:
                print(f"{r['model']}: {op}: flopmeter {a:,} FLOPs, FlopCounterMode {b:,}")


if __name__ == "__main__":
    main()
