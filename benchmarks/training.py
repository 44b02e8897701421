"""What does counting a training step cost, next to a forward-only count and a real step?

For each model (torchvision resnet18 and vit_b_16 at 2x3x224x224, a GPT-2 built from
``GPT2Config()`` defaults with input_ids of shape (2, 128)), on CPU, side by side in the same
run, interleaved (every repeat runs each in turn, so load drift hits all alike):

  * ``flopmeter.count(model, x)``: forward-only count on fake tensors;
  * ``flopmeter.count(model, x, options=Options(training=True, optimizer="adam"))``: the whole
    step (forward, loss, backward, Adam) on fake tensors;
  * a real CPU forward + ``sum().backward()`` of the same model and input (train mode).

One warm-up each, then the median of N; ratios to the forward-only count and to the real step.

    python benchmarks/training.py                 # N=3
    python benchmarks/training.py --repeat 5 --models resnet18
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics

import torch

import flopmeter
from counters import timed

MODELS = ("resnet18", "vit_b_16", "gpt2")


def build(name: str):
    if name == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel
        model = GPT2LMHeadModel(GPT2Config())
        return model.eval(), (torch.randint(0, model.config.vocab_size, (2, 128)),)
    import torchvision
    return getattr(torchvision.models, name)(weights=None).eval(), (torch.randn(2, 3, 224, 224),)


def real_step(model, inputs):
    out = model(*inputs)
    out = out.logits if hasattr(out, "logits") else out
    out.sum().backward()
    model.zero_grad(set_to_none=True)


def measure(name: str, repeat: int) -> dict:
    model, inputs = build(name)
    trainable = copy.deepcopy(model).train()
    train = flopmeter.Options(training=True, optimizer="adam")
    runs = {
        "count": lambda: flopmeter.count(model, *inputs),
        "train": lambda: flopmeter.count(model, *inputs, options=train),
        "real": lambda: real_step(trainable, inputs),
    }
    results = {key: fn() for key, fn in runs.items()}      # warm-up
    times: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(repeat):
        for key, fn in runs.items():
            ms, _ = timed(fn)
            times[key].append(ms)
    med = {key: statistics.median(v) for key, v in times.items()}
    report = results["train"]
    return {"model": name, **med, "phases": {p: c.flops("dot") for p, c in report.by_phase.items()},
            "events": len(report.ops)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; median of {args.repeat}")
    print(f"{'model':10} {'count ms':>9} {'train ms':>9} {'real f+b ms':>12} {'train/count':>12} {'train/real':>11}"
          f"  phases (dot FLOPs)")
    for name in args.models:
        r = measure(name, args.repeat)
        phases = ", ".join(f"{p} {v / 1e9:.1f}G" for p, v in r["phases"].items())
        print(f"{name:10} {r['count']:9.0f} {r['train']:9.0f} {r['real']:12.0f} {r['train'] / r['count']:12.2f}"
              f" {r['train'] / r['real']:11.2f}  {phases}")


if __name__ == "__main__":
    main()
