"""The roofline checked against measurement on this machine.

1. Calibrate this machine (``flopmeter.bench.calibrate``, as ``flopmeter calibrate`` does) or
   load the saved spec (``--spec local``). By default on one thread and by the process's CPU
   time (``--clock cpu``): on a 2-core machine shared with other jobs, wall-clock timings
   mostly measure the wait for a core, and two OpenMP threads on two busy cores wait for each
   other at every parallel region (an elementwise op 60× slower than on one thread, measured).
2. For the torchvision classification models at batch 1 and 32 (at the crop size of their
   default weights; ``--max-gmacs`` leaves out the models whose forward takes too long on a
   small CPU, per batch, in GMACs per sample): the roofline's predicted latency (a fake-tensor
   count) and the measured latency of the whole model (random weights, eval,
   ``torch.inference_mode``; ``torch.utils.benchmark`` ``blocked_autorange``, median), and
   their ratio predicted / measured; per batch the median and the 10th and 90th percentiles.
3. resnet50 at batch 32: every leaf module timed by hooks on this script's own copy of the
   model (the process's CPU time around each call) and by ``torch.profiler`` (a
   ``record_function`` range per call, wall clock), the 10 costliest layers predicted vs
   measured, and whether the predicted bound agrees with the measured one: a layer is
   *measured* compute- (memory-) bound when its achieved FLOP/s (bytes/s) reaches at least
   half of the roof the estimate used, *neither* when it reaches half of neither.

Results go to a JSON file as they come (``--json``, resumable: models already there are not
measured again) and to a Markdown report (``--out``).

    python benchmarks/roofline.py                                  # calibrate, then everything
    python benchmarks/roofline.py --spec local --batch 32 --models resnet50 mobilenet_v2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.utils import benchmark

import flopmeter
from flopmeter.bench.calibrate import calibrate
from flopmeter.devices import DeviceSpec, get_device, save_local
from flopmeter.bench.roofline import roofline
from flopmeter.frontends import InputRequest, resolve

HERE = Path(__file__).parent


def gmacs_per_sample() -> dict[str, float]:
    """Published GMACs of each torchvision classification model (its default weights' _ops)."""
    import torchvision
    from torchvision.models import get_model_weights
    return {n: get_model_weights(n).DEFAULT.meta["_ops"] for n in torchvision.models.list_models(module=torchvision.models)}


def build(name: str, batch: int):
    """(resolved spec, model with random weights in eval mode, inputs on the CPU)."""
    spec = resolve(f"torchvision:{name}", InputRequest(batch=batch))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = spec.rebuild().eval()
    return spec, model, spec.make_inputs(torch.device("cpu"))[0]


def predict(spec, device):
    args, kwargs = spec.make_inputs(torch.device("meta"))
    report = flopmeter.count(spec.model, *args, kwargs=kwargs)
    return report, roofline(report, device), roofline(report, device, overhead=False)


def measure_whole(model, inputs, threads: int, min_run_time: float, clock: str) -> tuple[float, float]:
    """(median, fastest) seconds per forward over blocked_autorange's blocks, by the wall clock
    or by the process's CPU time."""
    timer = {"timer": time.process_time} if clock == "cpu" else {}
    t = benchmark.Timer("with torch.inference_mode(): model(*inputs)",
                        globals={"torch": torch, "model": model, "inputs": inputs}, num_threads=threads, **timer)
    m = t.blocked_autorange(min_run_time=min_run_time)
    return m.median, min(m.times)


def measure_layers(model, inputs, iterations: int = 3) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per forward of every leaf module: (CPU time, wall time). Hooks on this script's
    own copy of the model read the process's CPU time around every leaf module's call over
    ``iterations`` forwards, then open a ``record_function`` range per call over ``iterations``
    forwards under ``torch.profiler`` (wall time). Per module: the sum of its calls in one
    forward, the least over the forwards (the one the other jobs disturbed least)."""
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile

    stack: list = []
    cpu_calls: list[tuple[str, float]] = []
    profiling = [False]
    handles = []
    for path, module in model.named_modules():
        if path and not any(True for _ in module.children()):
            def pre(m, a, path=path):
                r = record_function(f"module::{path}") if profiling[0] else None
                if r is not None:
                    r.__enter__()
                stack.append((r, time.process_time()))

            def post(m, a, out, path=path):
                r, start = stack.pop()
                cpu_calls.append((path, time.process_time() - start))
                if r is not None:
                    r.__exit__(None, None, None)
            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        with torch.inference_mode():
            model(*inputs)                                   # warm-up
            per_forward = []
            for _ in range(iterations):
                cpu_calls.clear()
                model(*inputs)
                sums: dict[str, float] = {}
                for path, seconds in cpu_calls:
                    sums[path] = sums.get(path, 0.0) + seconds
                per_forward.append(sums)
            profiling[0] = True
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(iterations):
                    model(*inputs)
    finally:
        for h in handles:
            h.remove()
    cpu = {path: min(f[path] for f in per_forward) for path in per_forward[0]}
    calls: dict[str, list] = {}
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        if e.name.startswith("module::"):
            calls.setdefault(e.name.removeprefix("module::"), []).append(e.time_range.elapsed_us() * 1e-6)
    wall = {}
    for path, times in calls.items():
        k = len(times) // iterations                         # calls per forward
        wall[path] = min(sum(times[i * k:(i + 1) * k]) for i in range(iterations))
    return cpu, wall


def probes(threads: int, clock: str) -> list[tuple[str, float]]:
    """GFLOP/s of a few convolutions and their GEMM twin, to show how much a convolution's
    shape and memory layout move oneDNN's throughput (the roofline has one figure per class)."""
    F = torch.nn.functional
    timer = {"timer": time.process_time} if clock == "cpu" else {}

    def rate(stmt, g, flops):
        t = benchmark.Timer(stmt, globals={**g, "torch": torch, "F": F}, num_threads=threads, **timer)
        return flops / t.blocked_autorange(min_run_time=1.0).median / 1e9

    x, w = torch.randn(32, 64, 56, 56), torch.randn(256, 64, 1, 1)
    f1 = 2 * 32 * 256 * 56 * 56 * 64                        # 2·N·C_out·H·W·C_in
    cl = torch.channels_last
    x3, w3 = torch.randn(32, 128, 28, 28), torch.randn(128, 128, 3, 3)
    rows = [
        ("1×1 conv 64 → 256 on 32×56×56 (resnet50 layer1), NCHW", rate("F.conv2d(x, w)", {"x": x, "w": w}, f1)),
        ("the same, channels_last", rate("F.conv2d(x, w)", {"x": x.contiguous(memory_format=cl),
                                                             "w": w.contiguous(memory_format=cl)}, f1)),
        ("the same as one GEMM, (100352 × 64) @ (64 × 256)",
         rate("torch.mm(a, b)", {"a": x.permute(0, 2, 3, 1).reshape(-1, 64).contiguous(), "b": torch.randn(64, 256)}, f1)),
        ("3×3 conv 128 → 128 on 32×28×28 (the calibration's conv), NCHW",
         rate("F.conv2d(x, w, padding=1)", {"x": x3, "w": w3}, 2 * 32 * 128 * 28 * 28 * 128 * 9)),
    ]
    for n, c, hw in ((1, 256, 14), (8, 256, 14), (1, 128, 28), (8, 128, 28), (32, 128, 28), (1, 96, 56), (16, 96, 56)):
        rows.append((f"3×3 depthwise conv, {c} channels on {n}×{hw}×{hw}, NCHW",
                     rate("F.conv2d(x, w, padding=1, groups=g)",
                          {"x": torch.randn(n, c, hw, hw), "w": torch.randn(c, 1, 3, 3), "g": c}, 2 * n * c * hw * hw * 9)))
    return rows


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def load_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"models": {}}


def save_results(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def zoo(args, device, data, json_path) -> None:
    published = gmacs_per_sample()
    names = args.models or sorted(published, key=published.get)
    for batch, cap in zip(args.batch, args.max_gmacs):
        for name in names:
            key = f"{name}@{batch}"
            if key in data["models"]:
                continue
            if name not in published:
                print(f"unknown model {name}", file=sys.stderr)
                continue
            if published[name] > cap and not args.models and name != "resnet50":
                continue
            spec, model, inputs = build(name, batch)
            report, rl, rl_bare = predict(spec, device)
            start = time.perf_counter()
            measured, fastest = measure_whole(model, inputs, device.threads or torch.get_num_threads(),
                                              args.min_run_time, args.clock)
            row = {"model": name, "batch": batch, "gmacs": report.macs / 1e9, "ops": len(rl.ops),
                   "predicted_s": rl.latency, "predicted_no_overhead_s": rl_bare.latency,
                   "overhead_share": 1 - rl_bare.latency / rl.latency, "bound": rl.model.bound,
                   "compute_s": rl.model.compute_s, "memory_s": rl.model.memory_s,
                   "measured_s": measured, "ratio": rl.latency / measured,
                   "fastest_s": fastest, "ratio_fastest": rl.latency / fastest}
            data["models"][key] = row
            save_results(json_path, data)
            print(f"{name:>22} b{batch:<3} predicted {rl.latency * 1e3:9.2f} ms  measured {measured * 1e3:9.2f} ms  "
                  f"ratio {row['ratio']:.2f}  ({time.perf_counter() - start:.0f} s)", flush=True)
            del model


def layers(args, device, data, json_path) -> None:
    if "layers" in data:
        return
    spec, model, inputs = build(args.layers_model, args.layers_batch)
    cpu, wall = measure_layers(model, inputs)
    measured = cpu if args.clock == "cpu" else wall
    report, _, _ = predict(spec, device)
    rl = roofline(report, device, measured=measured)
    rows = []
    for m in rl.costliest(10, by="measured"):
        rows.append({"path": m.path, "type": m.type, "flops": m.flops, "bytes": m.bytes, "intensity": m.intensity,
                     "predicted_s": m.time_s, "measured_s": m.measured_s, "ratio": m.ratio, "bound": m.bound,
                     "profiler_wall_s": wall.get(m.path),
                     "achieved_flops": m.achieved_flops, "achieved_bytes_s": m.achieved_bandwidth,
                     # fractions of the roofs the estimate used (the layer's peak, the bandwidth)
                     "flops_fraction": m.compute_s / m.measured_s, "bandwidth_fraction": m.memory_s / m.measured_s,
                     "measured_bound": m.measured_bound})
    leaves = [m for m in rl.leaves() if m.measured_s]
    data["layers"] = {"model": args.layers_model, "batch": args.layers_batch, "clock": args.clock,
                      "sum_profiler_wall_s": sum(wall.values()), "rows": rows, "layers_measured": len(leaves),
                               "sum_measured_s": sum(m.measured_s for m in leaves),
                               "sum_predicted_s": sum(m.time_s for m in leaves)}
    save_results(json_path, data)


def ms(s: float) -> str:
    return f"{s * 1e3:.3g}"


def report_md(device, data, load: str) -> str:
    d = device
    out = ["# Roofline vs measurement on this machine", "",
           f"Generated by `python benchmarks/roofline.py`. Device spec: {d.source}; "
           f"matmul GFLOP/s " + ", ".join(f"{k} {v / 1e9:.3g}" for k, v in d.matrix.items())
           + f"; vector {d.vector / 1e9:.3g} GFLOP/s; bandwidth {d.bandwidth / 1e9:.3g} GB/s; "
           f"overhead {d.overhead * 1e6:.3g} µs per op. {load}", ""]
    rows = list(data["models"].values())
    out += ["## Predicted / measured latency, whole model", "",
            "Measured: the median of `blocked_autorange`'s blocks (and, apart, the fastest block, which the "
            "other jobs on the machine disturb least).", "",
            "| batch | measured as | models | median | 10th pct | 90th pct | within 0.7–1.4 |",
            "|---:|---|---:|---:|---:|---:|---:|"]
    for batch in sorted({r["batch"] for r in rows}):
        for label, key in (("median", "ratio"), ("fastest", "ratio_fastest")):
            ratios = [r[key] for r in rows if r["batch"] == batch]
            inside = sum(0.7 <= x <= 1.4 for x in ratios)
            out.append(f"| {batch} | {label} | {len(ratios)} | {statistics.median(ratios):.2f} | "
                       f"{percentile(ratios, 10):.2f} | {percentile(ratios, 90):.2f} | {inside} |")
    out += ["", "| model | batch | GMACs | ops | predicted ms | of which overhead | bound | measured ms (median) "
            "| predicted / measured | measured ms (fastest) | predicted / fastest |",
            "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["batch"], r["gmacs"])):
        out.append(f"| {r['model']} | {r['batch']} | {r['gmacs']:.3g} | {r['ops']} | {ms(r['predicted_s'])} | "
                   f"{100 * r['overhead_share']:.0f}% | {r['bound']} | {ms(r['measured_s'])} | {r['ratio']:.2f} | "
                   f"{ms(r['fastest_s'])} | {r['ratio_fastest']:.2f} |")
    lay = data.get("layers")
    if lay:
        out += ["", f"## {lay['model']}, batch {lay['batch']}: the 10 costliest layers (by measured time, torch.profiler)", "",
                f"Measured by the {lay['clock']} clock around each leaf module (hooks on the benchmark's own model), "
                f"the least of 3 forwards; torch.profiler's wall-clock ranges beside it. All "
                f"{lay['layers_measured']} leaf modules: measured {ms(lay['sum_measured_s'])} ms in total "
                f"(profiler wall clock {ms(lay['sum_profiler_wall_s'])} ms), predicted {ms(lay['sum_predicted_s'])} ms. "
                "Achieved rates are against the roofs the estimate used (the calibrated peak of the layer's op class, "
                "the bandwidth); a layer is *measured* compute- (memory-) bound when it reaches at least half of "
                "that roof, and *neither* when it reaches half of neither (overhead, or a kernel far from the roofs).",
                "",
                "| layer | type | FLOPs/byte | predicted ms | measured ms | predicted / measured | profiler wall ms "
                "| achieved GFLOP/s (of peak) | achieved GB/s (of bandwidth) | predicted bound | measured bound |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for r in lay["rows"]:
            out.append(f"| {r['path']} | {r['type']} | {r['intensity']:.3g} | {ms(r['predicted_s'])} | "
                       f"{ms(r['measured_s'])} | {r['ratio']:.2f} | {ms(r['profiler_wall_s'] or 0)} | "
                       f"{r['achieved_flops'] / 1e9:.3g} "
                       f"({100 * r['flops_fraction']:.0f}%) | {r['achieved_bytes_s'] / 1e9:.3g} "
                       f"({100 * r['bandwidth_fraction']:.0f}%) | {r['bound']} | {r['measured_bound']} |")
        agree = sum(r["bound"] == r["measured_bound"] for r in lay["rows"])
        out += ["", f"Bound classification agrees for {agree} of {len(lay['rows'])} layers."]
    if data.get("probes"):
        out += ["", "## Convolution throughput by shape and layout (same clock and threads)", "",
                "| kernel | GFLOP/s |", "|---|---:|"] + [f"| {k} | {v:.3g} |" for k, v in data["probes"]]
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--spec", help="a device spec instead of calibrating now (e.g. local)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    p.add_argument("--max-gmacs", type=float, nargs="+", default=[12.0, 1.7],
                   help="per batch: leave out models above this many published GMACs per sample (resnet50 is kept)")
    p.add_argument("--models", nargs="+", help="only these torchvision models")
    p.add_argument("--min-run-time", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=1,
                   help="threads for calibration and every measurement (default 1: on a CPU shared with other "
                        "jobs, 2 OpenMP threads on 2 busy cores wait for each other at every parallel region)")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                   help="cpu (default): the process's CPU time, for calibration and whole-model timings, so that "
                        "waiting for a core that other jobs hold does not count (needs --threads 1); wall: wall clock")
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer comparison")
    p.add_argument("--layers-model", default="resnet50", help="model of the per-layer comparison (default resnet50)")
    p.add_argument("--layers-batch", type=int, default=32, help="its batch (default 32)")
    p.add_argument("--json", default=str(HERE / "results" / "roofline_cpu.json"))
    p.add_argument("--out", default=str(HERE / "results" / "roofline_cpu.md"))
    args = p.parse_args()
    if len(args.max_gmacs) == 1:
        args.max_gmacs *= len(args.batch)
    torch.set_num_threads(args.threads)
    json_path = Path(args.json)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    data = load_results(json_path)
    if args.spec:
        device = get_device(args.spec)
    else:       # the spec of an interrupted run, so that its results stay comparable
        device = DeviceSpec.from_dict(data["device"]) if "device" in data else None
    if device is None:
        device = calibrate("cpu", threads=args.threads, clock=args.clock)
        data["device_path"] = str(save_local(device, "cpu"))
    data["device"] = device.to_dict()
    print(f"device: {device.source}: " + ", ".join(f"{k} {v / 1e9:.3g} GFLOP/s" for k, v in device.matrix.items())
          + f"; {device.bandwidth / 1e9:.3g} GB/s; vector {device.vector / 1e9:.3g} GFLOP/s; "
          f"{device.overhead * 1e6:.3g} µs per op", flush=True)
    load_before = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else []
    zoo(args, device, data, json_path)
    if not args.no_layers:
        layers(args, device, data, json_path)
    if "probes" not in data:
        data["probes"] = probes(args.threads, args.clock)
        save_results(json_path, data)
    load_after = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else []
    load = (f"Timed on {args.threads} thread(s) by the {args.clock} clock"
            + (" (the process's CPU time)" if args.clock == "cpu" else "")
            + "; per-layer times by the same clock and by torch.profiler (wall clock), the least of 3 forwards. "
            f"The machine has {os.cpu_count()} cores and was shared with other engineers' jobs: "
            f"load average (1, 5, 15 min) {' '.join(load_before)} at the start of this run, "
            f"{' '.join(load_after)} at its end.")
    data.setdefault("load", []).append(load)
    save_results(json_path, data)
    Path(args.out).write_text(report_md(device, data, " ".join(data["load"])))
    print(report_md(device, data, load))


if __name__ == "__main__":
    main()
