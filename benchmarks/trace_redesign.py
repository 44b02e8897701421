"""The trace redesign's cost: count time of this checkout against an older commit, and the
size and save/load time of trace files.

Each model is counted in fake mode by two fresh worker processes, one importing flopmeter from
this checkout and one from ``--old`` (a source tree of the older commit, e.g. made with
``git worktree add /tmp/old <commit>``), alternating, ``--rounds`` times; each worker times a
bare ``no_grad`` forward and the count (best of ``--repeat``) and prints the ratio. The table
gives both ratios per model and their medians, measured side by side in one run.

    git worktree add /tmp/flopmeter-old dc626a0
    python benchmarks/trace_redesign.py --old /tmp/flopmeter-old/src
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEW_SRC = HERE.parent / "src"
MODELS = ("resnet50", "vit_b_16", "mobilenet_v3_small", "efficientnet_b0", "swin_t", "densenet121",
          "convnext_tiny", "regnet_y_800mf", "resnet18", "shufflenet_v2_x1_0", "mnasnet1_0", "squeezenet1_1")

WORKER = r"""
import json, sys, time, warnings, torch, flopmeter
from flopmeter.frontends import InputRequest, resolve
torch.set_num_threads(int(sys.argv[3]))
spec = resolve("torchvision:" + sys.argv[1], InputRequest(batch=1))
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = spec.rebuild().eval()
x = spec.make_inputs(torch.device("cpu"))[0]
def best(fn, n):
    fn()
    t = []
    for _ in range(n):
        s = time.perf_counter(); fn(); t.append(time.perf_counter() - s)
    return min(t)
n = int(sys.argv[2])
with torch.no_grad():
    fwd = best(lambda: model(*x), n)
cnt = best(lambda: flopmeter.count(model, *x), n)
print(json.dumps({"forward": fwd, "count": cnt, "macs": flopmeter.count(model, *x).macs}))
"""


def run_worker(src: Path, name: str, repeat: int, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, "-c", WORKER, name, str(repeat), str(threads)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed(old: Path, models, rounds: int, repeat: int, threads: int) -> None:
    print(f"count ÷ bare no_grad forward, batch 1, fake mode, best of {repeat}, {rounds} alternating rounds, "
          f"{threads} thread(s)")
    print(f"{'model':<22}{'old':>8}{'new':>8}{'new/old':>9}")
    olds, news = [], []
    for name in models:
        o, n = [], []
        for _ in range(rounds):
            a = run_worker(old, name, repeat, threads)
            b = run_worker(NEW_SRC, name, repeat, threads)
            assert a["macs"] == b["macs"], (name, a["macs"], b["macs"])
            o.append(a["count"] / a["forward"])
            n.append(b["count"] / b["forward"])
        ro, rn = statistics.median(o), statistics.median(n)
        olds.append(ro)
        news.append(rn)
        print(f"{name:<22}{ro:>8.2f}{rn:>8.2f}{rn / ro:>9.2f}", flush=True)
    mo, mn = statistics.median(olds), statistics.median(news)
    print(f"{'median':<22}{mo:>8.2f}{mn:>8.2f}{mn / mo:>9.2f}")


def files() -> None:
    import torch

    import flopmeter
    from flopmeter.api import report_from_trace
    from flopmeter.frontends import InputRequest, resolve
    from flopmeter.trace.io import load_trace, save_trace

    print("\ntrace files (gzip'd JSON)")
    print(f"{'model':<28}{'events':>8}{'size':>12}{'save s':>9}{'load s':>9}{'report s':>10}")
    for spec in ("torchvision:resnet50", "hf:llama-7b"):
        r = resolve(spec, InputRequest())
        args, kwargs = r.make_inputs(torch.device("meta"))
        trace = flopmeter.count(r.model, *args, kwargs=kwargs).trace
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "t.fmtrace"
            t0 = time.perf_counter()
            save_trace(trace, path)
            t1 = time.perf_counter()
            loaded = load_trace(path)
            t2 = time.perf_counter()
            report_from_trace(loaded)
            t3 = time.perf_counter()
            size = path.stat().st_size
        print(f"{spec:<28}{len(trace.events):>8}{size / 1e3:>10.1f}kB{t1 - t0:>9.3f}{t2 - t1:>9.3f}{t3 - t2:>10.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", type=Path, help="src/ folder of the older commit (skip the speed part when absent)")
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    if a.old:
        speed(a.old, a.models, a.rounds, a.repeat, a.threads)
    files()


if __name__ == "__main__":
    main()
