"""Analysis time over the model zoo, as a multiple of a bare no_grad CPU forward.

For every torchvision classification model (at the crop size of its default weights) and the
Hugging Face models of the zoo tests (BERT-base, GPT-2, T5-small, ViT-base; the 7B Llama has
no CPU forward to compare with), at the batch sizes asked for, this times side by side, in
one process: a bare ``torch.no_grad()`` forward, ``flopmeter.count`` (fake mode), PyTorch's
FlopCounterMode and the other counters that are installed (ptflops, fvcore, thop,
torchprofile, calflops). Each gets one warm-up, then ``--repeat`` rounds in which every one
runs once in turn (load drift hits all alike); per model the medians' ratios to the forward
are kept, and the summary prints their median and worst case per counter. A counter that
fails on a model is marked ``err`` there and left out of its summary.

    python benchmarks/speed.py                              # batch 1 and 32, all counters
    python benchmarks/speed.py --batch 1 --counters flopmeter --models resnet50 vit_b_16
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch

import flopmeter
from flopmeter.frontends import InputRequest, resolve
from counters import flop_counter_mode, flopmeter_macs, optional_tools, plain_forward, timed

HF = ("bert_base", "gpt2", "t5_small", "vit_base")


def torchvision_names() -> list[str]:
    import torchvision
    return torchvision.models.list_models(module=torchvision.models)


def build(name: str, batch: int):
    """(model in eval mode with random weights, tuple of inputs)."""
    if name in HF:
        import transformers as t
        if name == "vit_base":
            return t.ViTForImageClassification(t.ViTConfig(num_labels=1000)).eval(), (torch.randn(batch, 3, 224, 224),)
        cls, cfg = {"bert_base": (t.BertModel, t.BertConfig), "gpt2": (t.GPT2LMHeadModel, t.GPT2Config),
                    "t5_small": (t.T5ForConditionalGeneration, t.T5Config)}[name]
        model = cls(cfg()).eval()
        ids = torch.randint(0, model.config.vocab_size, (batch, 128))
        return model, ((ids, None, ids[:, :32]) if name == "t5_small" else (ids,))   # T5: decoder ids 3rd
    spec = resolve(f"torchvision:{name}", InputRequest(batch=batch))    # crop of the default weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = spec.rebuild()                                          # random weights on the CPU
    return model, spec.make_inputs(torch.device("cpu"))[0]


def measure(name: str, batch: int, counters: dict, repeat: int, max_gmacs: float) -> dict:
    model, inputs = build(name, batch)
    macs = flopmeter_macs(model, inputs)
    if macs > max_gmacs * 1e9:
        return {"model": name, "macs": macs, "skipped": True}
    plain_forward(model, inputs)
    failed = {}
    for key, fn in counters.items():              # warm-up; a counter that fails is dropped here
        try:
            if fn(model, inputs) is None:
                failed[key] = "returned no count"
        except Exception as exc:                   # noqa: BLE001 — other tools' failures are data
            failed[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
    live = {k: fn for k, fn in counters.items() if k not in failed}
    times: dict[str, list[float]] = {key: [] for key in ("forward", *live)}
    for _ in range(repeat):
        times["forward"].append(timed(plain_forward, model, inputs)[0])
        for key, fn in live.items():
            times[key].append(timed(fn, model, inputs)[0])
    ms = {key: statistics.median(v) for key, v in times.items()}
    return {"model": name, "macs": macs, "skipped": False, "ms": ms, "failed": failed,
            "ratio": {key: ms[key] / ms["forward"] for key in live}}


def render(rows: list[dict], keys: list[str], batch: int) -> None:
    done = [r for r in rows if not r["skipped"]]
    head = ["model", "GMACs", "forward ms", *(f"{k} /fwd" for k in keys)]
    table = [[r["model"], f"{r['macs'] / 1e9:.2f}", f"{r['ms']['forward']:.1f}",
              *(f"{r['ratio'][k]:.2f}" if k in r["ratio"] else "err" for k in keys)] for r in done]
    for label, agg in (("median", statistics.median), ("worst", max)):
        table.append([label, "", "", *(f"{agg(v):.2f}" if (v := [r["ratio"][k] for r in done if k in r["ratio"]])
                                       else "-" for k in keys)])
    widths = [max(len(h), *(len(line[i]) for line in table)) for i, h in enumerate(head)]
    print(f"\nbatch {batch}: analysis time / bare no_grad CPU forward ({len(done)} models)")
    rule = ["-" * w for w in widths]
    for line in [head, rule, *table[:-2], rule, *table[-2:]]:
        print("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(line, widths))))
    for r in rows:
        if r["skipped"]:
            print(f"skipped {r['model']}: {r['macs'] / 1e9:.0f} GMACs per forward is over --max-gmacs")
        for key, why in r.get("failed", {}).items():
            print(f"{key} failed on {r['model']}: {why}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds per model (default 3)")
    parser.add_argument("--models", nargs="+", help="default: the torchvision classification zoo and " + ", ".join(HF))
    parser.add_argument("--counters", nargs="+", help="default: all installed (flopmeter fcm ptflops fvcore thop "
                                                      "torchprofile calflops)")
    parser.add_argument("--max-gmacs", type=float, default=100.0,
                        help="skip models whose forward (at that batch) exceeds this many GMACs (default 100)")
    args = parser.parse_args()

    warnings.filterwarnings("ignore")
    tools, notes = optional_tools()
    counters = {"flopmeter": flopmeter_macs, "fcm": lambda m, x: sum(flop_counter_mode(m, x).values()) // 2, **tools}
    if args.counters:
        counters = {k: v for k, v in counters.items() if k in args.counters}
    names = args.models or [*torchvision_names(), *HF]
    print(f"torch {torch.__version__}, flopmeter {flopmeter.__version__}, torch threads {torch.get_num_threads()}, "
          f"CPUs {os.cpu_count()}, repeat {args.repeat}, counters: {', '.join(counters)}")
    for note in notes:
        print(f"note: {note}")
    for batch in args.batch:
        start, rows = time.perf_counter(), []
        for name in names:
            rows.append(measure(name, batch, counters, args.repeat, args.max_gmacs))
            print(f"  {name} ({time.perf_counter() - start:.0f} s)", flush=True)
        render(rows, list(counters), batch)


if __name__ == "__main__":
    main()
