"""Analysis time over the model zoo, as a multiple of a bare no_grad CPU forward.

For every torchvision classification model (at the crop size of its default weights) and the
Hugging Face models of the zoo tests (BERT-base, GPT-2, T5-small, ViT-base; the 7B Llama has
no CPU forward to compare with), at the batch sizes asked for, this times side by side, in
one process: a bare ``torch.no_grad()`` forward, ``flopmeter.count`` (fake mode), PyTorch's
FlopCounterMode and the other counters that are installed (ptflops, fvcore, thop,
torchprofile, calflops). Each gets one warm-up, then ``--repeat`` rounds in which every one
runs in turn, twice, the second call timed (so none pays for the caches the one before it
evicted; load drift hits all alike); per model the medians' ratios to the forward
are kept, and the summary prints their median and worst case per counter. A counter that
fails on a model is marked ``err`` there and left out of its summary.

The floor: the same forward on the meta device (a copy of the model moved to ``meta``, meta
inputs; no kernels run, only shapes are computed — what any fake-tensor analysis must at least
do), timed in the same rounds. The table shows flopmeter ÷ meta forward next to the ratios to
the bare forward, and a closing line counts the models on which flopmeter is below
FlopCounterMode and within 1.1× the meta forward. ``--baseline SRC`` also times the flopmeter
found under the folder ``SRC`` (another checkout's ``src``) side by side, as ``baseline``.

    python benchmarks/speed.py                              # batch 1 and 32, all counters
    python benchmarks/speed.py --batch 1 --counters flopmeter --models resnet50 vit_b_16
    python benchmarks/speed.py --batch 1 --counters flopmeter fcm --max-gmacs 20 --baseline /tmp/old/src
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import flopmeter
from flopmeter.errors import did_you_mean
from flopmeter.frontends import InputRequest, resolve
from counters import flop_counter_mode, flopmeter_macs, optional_tools, plain_forward, timed

HF = ("bert_base", "gpt2", "t5_small", "vit_base")
COUNTERS = ("flopmeter", "fcm", "ptflops", "fvcore", "thop", "torchprofile", "calflops")   # fcm: FlopCounterMode


def torchvision_names() -> list[str]:
    import torchvision
    return torchvision.models.list_models(module=torchvision.models)


def check_names(parser: argparse.ArgumentParser, names: list[str]) -> None:
    """Stop with the argparse error (and close names) for a model this script cannot build."""
    known = [*torchvision_names(), *HF]
    for name in names:
        if name not in known:
            hint = did_you_mean(name, known, n=3, otherwise="known: the torchvision classification names and "
                                                            + ", ".join(HF))
            parser.error(f"unknown model '{name}' ({hint})")


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


def meta_copy(model, inputs):
    """(a copy of ``model`` on the meta device, ``inputs`` on the meta device)."""
    return copy.deepcopy(model).to("meta"), tuple(x.to("meta") if isinstance(x, torch.Tensor) else x for x in inputs)


class PassThrough(TorchDispatchMode):
    """Hands every op to Python and runs it unchanged."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def mode_forward(model, inputs):
    """A no_grad forward with every op going through :class:`PassThrough`."""
    with PassThrough():
        plain_forward(model, inputs)


def baseline_counter(src: str):
    """flopmeter_macs with the flopmeter package under ``src``, imported as ``flopmeter_baseline``."""
    root = Path(src) / "flopmeter"
    spec = importlib.util.spec_from_file_location("flopmeter_baseline", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["flopmeter_baseline"] = module
    spec.loader.exec_module(module)
    return lambda model, inputs: module.count(model, *inputs).macs


def warm_timed(fn, *args) -> float:
    """Milliseconds of ``fn(*args)`` run right after an untimed call of the same: a large
    model's real forward evicts the caches, and whatever ran next paid for refilling them (a
    meta forward timed right after the real forward took 1.4-1.8x as long as one timed after
    another meta forward on alexnet, vgg16 and squeezenet1_1)."""
    fn(*args)
    return timed(fn, *args)[0]


def measure(name: str, batch: int, counters: dict, repeat: int, max_gmacs: float, stat=statistics.median) -> dict:
    model, inputs = build(name, batch)
    macs = flopmeter_macs(model, inputs)
    if macs > max_gmacs * 1e9:
        return {"model": name, "macs": macs, "skipped": True}
    plain_forward(model, inputs)
    failed = {}
    meta_model, meta_inputs = meta_copy(model, inputs)
    try:
        plain_forward(meta_model, meta_inputs)
    except Exception as exc:                       # noqa: BLE001 — data-dependent forwards fail on meta
        failed["meta"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
    for key, fn in counters.items():              # warm-up; a counter that fails is dropped here
        try:
            if fn(model, inputs) is None:
                failed[key] = "returned no count"
        except Exception as exc:                   # noqa: BLE001 — other tools' failures are data
            failed[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
    live = {k: fn for k, fn in counters.items() if k not in failed}
    floors = () if "meta" in failed else ("meta", "mode")
    times: dict[str, list[float]] = {key: [] for key in ("forward", *floors, *live)}
    for _ in range(repeat):
        times["forward"].append(warm_timed(plain_forward, model, inputs))
        if "meta" in times:
            times["meta"].append(warm_timed(plain_forward, meta_model, meta_inputs))
            times["mode"].append(warm_timed(mode_forward, meta_model, meta_inputs))
        for key, fn in live.items():
            times[key].append(warm_timed(fn, model, inputs))
    ms = {key: stat(v) for key, v in times.items()}
    ratio = {key: ms[key] / ms["forward"] for key in live}
    if "meta" in ms:
        ratio["meta"] = ms["meta"] / ms["forward"]
        ratio["mode/meta"] = ms["mode"] / ms["meta"]
        for key in ("flopmeter", "baseline"):
            if key in live:
                ratio[f"{key}/meta"] = ms[key] / ms["meta"]
    return {"model": name, "macs": macs, "skipped": False, "ms": ms, "failed": failed, "ratio": ratio}


def render(rows: list[dict], counters: list[str], batch: int) -> None:
    done = [r for r in rows if not r["skipped"]]
    keys = ["meta", *counters, "mode/meta", *(f"{k}/meta" for k in ("flopmeter", "baseline") if k in counters)]
    head = ["model", "GMACs", "forward ms", *(k if k.endswith("/meta") else f"{k} /fwd" for k in keys)]
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
    goals(done)


def goals(done: list[dict]) -> None:
    """The closing line: on how many models flopmeter is below FlopCounterMode and within 1.1×
    the meta forward (and which models miss)."""
    for key in ("flopmeter", "baseline"):
        both = [r for r in done if key in r["ratio"] and "fcm" in r["ratio"]]
        if both:
            slower = [r["model"] for r in both if r["ratio"][key] >= r["ratio"]["fcm"]]
            print(f"{key} below FlopCounterMode on {len(both) - len(slower)} of {len(both)} models"
                  + (f" (not on: {', '.join(slower)})" if slower else ""))
        floor = [r for r in done if f"{key}/meta" in r["ratio"]]
        if floor:
            over = [f"{r['model']} {r['ratio'][key + '/meta']:.2f} (pass-through mode {r['ratio']['mode/meta']:.2f})"
                    for r in floor if r["ratio"][f"{key}/meta"] > 1.1]
            print(f"{key} within 1.1x the meta forward on {len(floor) - len(over)} of {len(floor)} models"
                  + (f" (not on: {', '.join(over)})" if over else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds per model (default 3)")
    parser.add_argument("--models", nargs="+", help="default: the torchvision classification zoo and " + ", ".join(HF))
    parser.add_argument("--counters", nargs="+", help=f"default: all installed ({' '.join(COUNTERS)})")
    parser.add_argument("--max-gmacs", type=float, default=100.0,
                        help="skip models whose forward (at that batch) exceeds this many GMACs (default 100)")
    parser.add_argument("--baseline", metavar="SRC", help="also time the flopmeter package under SRC (another "
                                                          "checkout's src folder), as 'baseline'")
    parser.add_argument("--best", action="store_true", help="per model the best round of each, not the median "
                                                            "(steadier on a machine shared with other jobs)")
    parser.add_argument("--torchvision", action="store_true", help="the torchvision classification zoo only")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own); 1 on a shared machine, "
                                                    "where a multi-threaded forward waits for busy cores")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    tools, notes = optional_tools()
    counters = {"flopmeter": flopmeter_macs, "fcm": lambda m, x: sum(flop_counter_mode(m, x).values()) // 2, **tools}
    if args.counters:
        unknown = set(args.counters) - set(COUNTERS)
        if unknown:
            parser.error(f"unknown counter {', '.join(sorted(unknown))}; choose from {' '.join(COUNTERS)}")
        counters = {k: v for k, v in counters.items() if k in args.counters}
    if args.baseline:
        counters = {"baseline": baseline_counter(args.baseline), **counters}
    names = args.models or [*torchvision_names(), *(() if args.torchvision else HF)]
    check_names(parser, names)
    print(f"torch {torch.__version__}, flopmeter {flopmeter.__version__}, torch threads {torch.get_num_threads()}, "
          f"CPUs {os.cpu_count()}, repeat {args.repeat} ({'best' if args.best else 'median'}), "
          f"counters: {', '.join(counters)}")
    for note in notes:
        print(f"note: {note}")
    for batch in args.batch:
        start, rows = time.perf_counter(), []
        for name in names:
            rows.append(measure(name, batch, counters, args.repeat, args.max_gmacs, min if args.best else statistics.median))
            print(f"  {name} ({time.perf_counter() - start:.0f} s)", flush=True)
        render(rows, list(counters), batch)


if __name__ == "__main__":
    main()
