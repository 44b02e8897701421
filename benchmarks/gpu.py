"""The checks that need an NVIDIA GPU, in one run: calibration against the datasheet, the
roofline against measurement, measured latency against CUDA events, and the memory peak
against ``torch.cuda.max_memory_allocated``.

Sections (all by default; name some to run only those):

  calibrate   ``flopmeter.bench.calibrate('cuda')`` (as ``flopmeter calibrate --device cuda``), saved
              as the ``local-cuda`` spec; next to the datasheet row of this GPU (matched by name):
              calibrated / datasheet per dtype and for the memory bandwidth.
  models      resnet50, vit_b_16 (torchvision) and GPT-2 (``hf:gpt2``, 128 tokens) at batch 1 and 64
              in fp16 and bf16, timed as ``flopmeter bench --device cuda --layers`` times them
              (``bench.survey.measure_row``: a converted copy, ``torch.inference_mode``, eval,
              ``torch.utils.benchmark`` ``adaptive_autorange``, CUDA synchronised by its timer): p50,
              p90, spread, and the median of 20 calls bracketed by CUDA events beside it. For fp16
              the roofline of the same call (the fake-tensor count of the converted copy) on the
              calibrated spec and on the datasheet row: predicted / measured.
  layers      resnet50 at batch 64 in fp16: the 10 layers with the most measured device time
              (torch.profiler's kernels per module range), predicted vs measured, and whether the
              predicted bound agrees with the measured one (``ModuleEstimate.measured_bound``).
  memory      ``benchmarks/memory.py --device cuda`` on a set of models: the forward's activation
              peak predicted for device cuda (512-byte blocks) against
              ``torch.cuda.max_memory_allocated`` above what was allocated before the forward.
  cli         ``flopmeter bench … --device cuda --roofline local --plot …`` and ``flopmeter roofline
              hf:gpt2 --device-spec local``, as a user runs them.

Results go to ``--out`` (default ``benchmarks/results``): ``gpu.json`` (written as each part
finishes, so a run cut short keeps what it measured) and ``gpu.md``.

    python benchmarks/gpu.py                        # everything (about 5 minutes on an H100/H200)
    python benchmarks/gpu.py calibrate models --out /tmp/gpu
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).parent
DEVICE = "cuda"          # "cpu" for a dry run (--device cpu)
SECTIONS = ("calibrate", "models", "layers", "memory", "cli")
MODELS = ("torchvision:resnet50", "torchvision:vit_b_16", "hf:gpt2")
MEMORY_MODELS = ("resnet50", "vit_b_16", "mobilenet_v2", "densenet121", "efficientnet_b0", "convnext_tiny",
                 "swin_t", "inception_v3", "hf:gpt2", "hf:bert-base-uncased", "hf:t5-small")


class Results:
    def __init__(self, out: Path):
        self.path = out / "gpu.json"
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)


def gpu_name() -> str:
    return torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (dry run)"


def datasheet_row(gpu_name: str):
    """The device-table row whose name or alias is the longest prefix of this GPU's name."""
    from flopmeter.devices import normalise, table
    name = normalise(gpu_name)
    best, best_len = None, 0
    for spec in table():
        for key in (spec.name, *spec.aliases):
            k = normalise(key)
            if name.startswith(k) and len(k) > best_len and ("pcie" in name) == ("pcie" in k):
                best, best_len = spec, len(k)
    return best


def calibrate_section(res: Results) -> None:
    from flopmeter.bench.calibrate import calibrate
    from flopmeter.devices import save_local

    start = time.perf_counter()
    dry = {} if DEVICE == "cuda" else {"max_n": 256, "max_batch": 2, "batched": 1, "copy_bytes": 1 << 20}
    spec = calibrate(DEVICE, min_run_time=0.3 if DEVICE == "cuda" else 0.05, target_s=0.1, **dry)
    path = save_local(spec, DEVICE)
    sheet = datasheet_row(gpu_name()) if DEVICE == "cuda" else datasheet_row("h100")
    rows = []
    for key, value in spec.matrix.items():
        ref = sheet.matrix.get(key) if sheet else None
        rows.append({"what": f"{key} matmul", "calibrated": value, "datasheet": ref,
                     "ratio": value / ref if ref else None, "size": spec.extra["sizes"].get(key)})
    rows.append({"what": "memory bandwidth (copy, read + write)", "calibrated": spec.bandwidth,
                 "datasheet": sheet.bandwidth if sheet else None,
                 "ratio": spec.bandwidth / sheet.bandwidth if sheet else None})
    rows.append({"what": "vector (fp32 add, in cache)", "calibrated": spec.vector,
                 "datasheet": sheet.vector if sheet else None, "ratio": spec.vector / sheet.vector if sheet else None})
    res.data["calibrate"] = {"spec": spec.to_dict(), "path": str(path), "datasheet": sheet.to_dict() if sheet else None,
                             "rows": rows, "seconds": time.perf_counter() - start}
    res.save()
    for r in rows:
        print(f"{r['what']:40} calibrated {r['calibrated'] / 1e12:10.3f} T  datasheet "
              f"{(r['datasheet'] or 0) / 1e12:10.3f} T  ratio {r['ratio'] or 0:.2f}", flush=True)
    print(f"classes: {spec.classes}; overhead {spec.overhead * 1e6:.2f} µs/op; skipped: {spec.extra['skipped']}")


def _measure(spec: str, batch: int, dtype: str, layers: bool):
    from flopmeter.bench.survey import Case, SurveyOptions, count_row, measure_row

    quick = {} if DEVICE == "cuda" else {"min_time": 0.05, "max_time": 0.2, "threads": 1}
    opts = SurveyOptions(device=DEVICE, dtype=dtype, **{"min_time": 1.0, "max_time": 3.0, **quick})
    case = Case(spec, None, batch)
    row = count_row(case, opts, catch=False)
    m = measure_row(case, opts, row, layers=layers, catch=False, layer_iterations=3, count=True)
    return row, m


def models_section(res: Results, batches=(1, 64)) -> None:
    from flopmeter.bench.roofline import roofline

    local = _local_spec()
    sheet = datasheet_row(gpu_name()) if DEVICE == "cuda" else datasheet_row("h100")
    if DEVICE == "cpu":
        batches = (1,)
    rows = res.data.setdefault("models", {})
    for spec in MODELS:
        for batch in batches:
            for dtype in ("float16", "bfloat16") if DEVICE == "cuda" else ("bfloat16",):   # fp16 is slow on CPUs
                key = f"{spec}@{batch}@{dtype}"
                if key in rows:
                    continue
                try:
                    row, m = _measure(spec, batch, dtype, layers=False)
                    r = {"model": spec, "batch": batch, "dtype": dtype, "p50_ms": 1e3 * m.p50, "p90_ms": 1e3 * m.p90,
                         "spread": m.spread, "blocks": len(m.times), "cuda_event_ms": m.cuda_event_ms,
                         "event_vs_timer": m.cuda_event_ms / (1e3 * m.p50) if m.cuda_event_ms else None,
                         "throughput": m.throughput, "gflops": m.flops / 1e9 if m.flops else None,
                         "achieved_tflops": m.achieved_flops / 1e12 if m.achieved_flops else None,
                         "warnings": m.warnings}
                    if dtype == ("float16" if DEVICE == "cuda" else "bfloat16") and m.report is not None:
                        for name, device in (("local", local), ("datasheet", sheet)):
                            if device is None:
                                continue
                            rl = roofline(m.report, device)
                            r[f"predicted_{name}_ms"] = 1e3 * rl.latency
                            r[f"ratio_{name}"] = rl.latency / m.p50
                            r[f"bound_{name}"] = rl.model.bound
                            r[f"compute_{name}_ms"] = 1e3 * rl.model.compute_s
                            r[f"memory_{name}_ms"] = 1e3 * rl.model.memory_s
                        r["ops"] = len(rl.ops)
                except Exception as exc:  # noqa: BLE001 — one failing model must not stop the rest
                    r = {"model": spec, "batch": batch, "dtype": dtype, "error": f"{type(exc).__name__}: {exc}"}
                    traceback.print_exc()
                rows[key] = r
                res.save()
                print(json.dumps(r, default=str), flush=True)


def _local_spec():
    from flopmeter.devices import get_device
    try:
        return get_device(f"local-{DEVICE}")
    except Exception:  # noqa: BLE001
        return None


def layers_section(res: Results, spec="torchvision:resnet50", batch=64) -> None:
    from flopmeter.bench.roofline import roofline

    if DEVICE == "cpu":
        spec, batch = "torchvision:resnet18", 1
    device = _local_spec()
    row, m = _measure(spec, batch, "float16", layers=True)
    measured = {p: lt.total for p, lt in m.layers.modules.items()}
    measured[""] = m.p50
    rl = roofline(m.report, device, measured=measured)
    leaves = [x for x in rl.leaves() if x.measured_s]
    top = []
    for x in rl.costliest(10, by="measured"):
        top.append({"path": x.path, "type": x.type, "intensity": x.intensity, "predicted_ms": 1e3 * x.time_s,
                    "measured_ms": 1e3 * x.measured_s, "ratio": x.ratio,
                    "achieved_tflops": x.achieved_flops / 1e12, "achieved_gb_s": x.achieved_bandwidth / 1e9,
                    "bound": x.bound, "measured_bound": x.measured_bound})
    res.data["layers"] = {"model": spec, "batch": batch, "dtype": "float16", "rows": top,
                          "p50_ms": 1e3 * m.p50, "profiled_ms": 1e3 * m.layers.profiled,
                          "sum_measured_leaves_ms": 1e3 * sum(x.measured_s for x in leaves),
                          "sum_predicted_leaves_ms": 1e3 * sum(x.time_s for x in leaves),
                          "predicted_ms": 1e3 * rl.latency, "agree": sum(t["bound"] == t["measured_bound"] for t in top)}
    res.save()
    for t in top:
        print(json.dumps(t), flush=True)


def memory_section(res: Results, out: Path) -> None:
    path = out / "gpu_memory.json"
    cmd = [sys.executable, str(HERE / "memory.py"), "--device", "cuda", "--repeat", "1", "--json", str(path),
           "--models", *MEMORY_MODELS]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    print(proc.stdout[-6000:], proc.stderr[-3000:], flush=True)
    res.data["memory"] = {"rows": json.loads(path.read_text()) if path.is_file() else [],
                          "stdout": proc.stdout[-6000:], "rc": proc.returncode}
    res.save()


def cli_section(res: Results, out: Path) -> None:
    env = dict(os.environ)
    runs = {}
    for name, cmd in {
        "bench": ["bench", "torchvision:resnet50", "--device", DEVICE, "--dtype", "float16",
                  "--batch", "64" if DEVICE == "cuda" else "1",
                  "--roofline", "local", "--top", "5", "--max-time", "3", "--plot", str(out / "resnet50_b64_roofline.png")],
        "roofline": ["roofline", "hf:gpt2", "--device-spec", "local", "--dtype", "float16", "--depth", "1"],
        "bench_bad": ["bench", "torchvision:resnet50", "--device", DEVICE, "--roofline", "h20"],
    }.items():
        proc = subprocess.run([sys.executable, "-m", "flopmeter", *cmd], capture_output=True, text=True, env=env,
                              timeout=240)
        runs[name] = {"cmd": "flopmeter " + " ".join(cmd), "rc": proc.returncode, "stdout": proc.stdout[-8000:],
                      "stderr": proc.stderr[-3000:]}
        print(f"$ flopmeter {' '.join(cmd)}  → {proc.returncode}\n{proc.stdout[-8000:]}{proc.stderr[-3000:]}", flush=True)
    res.data["cli"] = runs
    res.save()


def _f(x, digits=2):
    return "" if x is None else f"{x:.{digits}f}"


def report_md(data: dict) -> str:
    env = data.get("env", {})
    out = ["# GPU checks", "", f"Generated by `python benchmarks/gpu.py` on {env.get('gpu')} "
           f"(torch {env.get('torch')}, CUDA {env.get('cuda')}, driver-visible memory {env.get('memory_gib', 0):.0f} GiB), "
           f"{env.get('date')}.", ""]
    cal = data.get("calibrate")
    if cal:
        sheet = cal.get("datasheet") or {}
        out += ["## Calibrated vs datasheet", "", f"Datasheet row: {sheet.get('name')} ({sheet.get('source')}).", "",
                "| what | calibrated | datasheet | calibrated / datasheet | size |", "|---|---:|---:|---:|---:|"]
        for r in cal["rows"]:
            unit, scale = ("GB/s", 1e9) if "bandwidth" in r["what"] else ("TFLOP/s", 1e12)
            out.append(f"| {r['what']} | {r['calibrated'] / scale:.4g} {unit} | "
                       f"{(r['datasheet'] or 0) / scale:.4g} {unit} | {_f(r['ratio'])} | {r.get('size') or ''} |")
        spec = cal["spec"]
        out += ["", f"Other op classes (TFLOP/s): " + "; ".join(
            f"{c}: " + ", ".join(f"{k} {v / 1e12:.3g}" for k, v in p.items()) for c, p in spec["classes"].items())
            + f". Per-op overhead {spec['overhead'] * 1e6:.2f} µs. Skipped: {spec['extra'].get('skipped')}."]
    rows = list(data.get("models", {}).values())
    if rows:
        out += ["", "## Measured latency (CUDA) and the roofline", "",
                "p50/p90: `flopmeter.measure` (torch.utils.benchmark `adaptive_autorange`, CUDA synchronised); "
                "events: the median of 20 calls bracketed by CUDA events. Predicted: the roofline of the same "
                "call (fp16 rows) on the calibrated spec (`local`, with its per-op overhead) and on the datasheet row.",
                "", "| model | batch | dtype | p50 ms | p90 ms | spread | events ms | events / p50 | TFLOP/s achieved "
                "| predicted ms (calibrated) | pred / meas | bound | predicted ms (datasheet) | pred / meas |",
                "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
        for r in rows:
            if r.get("error"):
                out.append(f"| {r['model']} | {r['batch']} | {r['dtype']} | error: {r['error'][:100]} |")
                continue
            out.append(f"| {r['model']} | {r['batch']} | {r['dtype']} | {_f(r['p50_ms'], 3)} | {_f(r['p90_ms'], 3)} | "
                       f"{100 * r['spread']:.1f}% | {_f(r['cuda_event_ms'], 3)} | {_f(r['event_vs_timer'], 3)} | "
                       f"{_f(r.get('achieved_tflops'), 1)} | {_f(r.get('predicted_local_ms'), 3)} | "
                       f"{_f(r.get('ratio_local'))} | {r.get('bound_local', '')} | "
                       f"{_f(r.get('predicted_datasheet_ms'), 3)} | {_f(r.get('ratio_datasheet'))} |")
        for name in ("local", "datasheet"):
            for batch in sorted({r["batch"] for r in rows}):
                ratios = [r[f"ratio_{name}"] for r in rows if r.get(f"ratio_{name}") and r["batch"] == batch]
                if ratios:
                    inside = sum(0.75 <= x <= 1.25 for x in ratios)
                    out.append(f"\n{name}, batch {batch}: predicted / measured median {statistics.median(ratios):.2f}, "
                               f"{inside} of {len(ratios)} within ±25%.")
    lay = data.get("layers")
    if lay:
        out += ["", f"## {lay['model']}, batch {lay['batch']}, {lay['dtype']}: the 10 layers with the most measured time",
                "", f"Whole model: p50 {lay['p50_ms']:.3f} ms, predicted {lay['predicted_ms']:.3f} ms; profiled forward "
                f"{lay['profiled_ms']:.3f} ms; leaf modules measured {lay['sum_measured_leaves_ms']:.3f} ms, predicted "
                f"{lay['sum_predicted_leaves_ms']:.3f} ms. Bound classification agrees for {lay['agree']} of "
                f"{len(lay['rows'])}.", "",
                "| layer | type | FLOPs/byte | predicted ms | measured ms | pred / meas | TFLOP/s | GB/s | bound "
                "| measured bound |", "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
        for t in lay["rows"]:
            out.append(f"| {t['path']} | {t['type']} | {t['intensity']:.3g} | {t['predicted_ms']:.4f} | "
                       f"{t['measured_ms']:.4f} | {_f(t['ratio'])} | {t['achieved_tflops']:.1f} | "
                       f"{t['achieved_gb_s']:.0f} | {t['bound']} | {t['measured_bound']} |")
    mem = data.get("memory")
    if mem and mem.get("rows"):
        out += ["", "## Forward activation peak: predicted (device cuda, 512-byte blocks) vs "
                "torch.cuda.max_memory_allocated", "", "| model | predicted | measured | predicted / measured |",
                "|---|---:|---:|---:|"]
        for r in mem["rows"]:
            out.append(f"| {r['model']} | {r['predicted']:,} | {r['measured']:,} | {r['predicted'] / r['measured']:.4f} |")
    return "\n".join(out) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sections", nargs="*", default=list(SECTIONS), help=", ".join(SECTIONS))
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="cpu: a dry run of this script on a machine without a GPU (small batches, no memory section)")
    a = p.parse_args()
    unknown = [s for s in a.sections if s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    global DEVICE
    DEVICE = a.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; this benchmark needs one (--device cpu: a dry run)", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res = Results(out)
    props = torch.cuda.get_device_properties(0) if DEVICE == "cuda" else None
    res.data["env"] = {"gpu": gpu_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
                       "memory_gib": props.total_memory / 2 ** 30 if props else 0,
                       "sms": props.multi_processor_count if props else None,
                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    res.save()
    for section in a.sections:
        start = time.perf_counter()
        print(f"== {section}", flush=True)
        try:
            if section == "calibrate":
                calibrate_section(res)
            elif section == "models":
                models_section(res)
            elif section == "layers":
                layers_section(res)
            elif section == "memory" and DEVICE == "cuda":
                memory_section(res, out)
            elif section == "cli":
                cli_section(res, out)
        except Exception:  # noqa: BLE001 — the other sections still run
            traceback.print_exc()
            res.data.setdefault("failed", {})[section] = traceback.format_exc()[-3000:]
            res.save()
        print(f"== {section} took {time.perf_counter() - start:.1f} s", flush=True)
    (out / "gpu.md").write_text(report_md(res.data))
    print(report_md(res.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
