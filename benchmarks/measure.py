"""Measured speed: is ``flopmeter.measure`` honest, stable, and do its per-layer times add up?
And how much does ``--jobs 2`` save a count-only sweep of the torchvision zoo?

Sections (all by default; name some to run only those):

  timer       resnet50 at 1x3x224x224: our p50 next to ``Timer.blocked_autorange()``'s median
              for the same call, alternating, three rounds each, same thread count.
  layers      resnet50 at 1x3x224x224: the per-layer profile: profiled forward vs unprofiled p50
              (profiler overhead), leaf modules' sum, time in container forwards outside leaves.
  stability   ``flopmeter bench torchvision:resnet50 --batch 8 --max-time 30`` three times in a row (three
              processes): the three p50s, their spread around their mean, the tool's own spread.
  survey      ``flopmeter bench torchvision:resnet50 timm:convnext_tiny --input-size 200,224,256
              --batch 2 --format md`` (the README's survey table).
  sweep       ``flopmeter sweep 'torchvision:*' --task classification`` count-only, ``--jobs 1`` and
              ``--jobs 2`` wall time (``--subset N``: only the first N models, sorted by name).
  resume      the same sweep with ``--jobs 2``, interrupted with SIGINT (Ctrl-C) after 20 rows, then
              ``--resume``: rows kept, rows run again, distinct models at the end.

    python benchmarks/measure.py                      # everything
    python benchmarks/measure.py timer layers --threads 2
    python benchmarks/measure.py sweep --subset 20

Every ratio is measured side by side in one run. Print the machine's load with the numbers:
on a shared machine the spread is the thing to read first.
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

import torch

import flopmeter
from flopmeter.bench import MeasureOptions

SRC = str(Path(__file__).resolve().parent.parent / "src")


def _cli(*argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "flopmeter", *argv], env=env, capture_output=True, text=True)


def _resnet50():
    import torchvision
    torch.manual_seed(0)
    return torchvision.models.resnet50().eval(), torch.randn(1, 3, 224, 224)


def timer_section(threads: int) -> None:
    from torch.utils.benchmark import Timer

    model, x = _resnet50()
    opts = MeasureOptions(threads=threads, count=False, min_time=2.0, max_time=10.0)
    ours, theirs = [], []
    for _ in range(3):
        m = flopmeter.measure(model, x, options=opts)
        ours.append(m.p50)
        with torch.inference_mode():
            t = Timer("model(x)", globals={"model": model, "x": x}, num_threads=threads).blocked_autorange(
                min_run_time=2.0)
        theirs.append(t.median)
        print(f"  round: flopmeter p50 {1e3 * m.p50:8.2f} ms (spread {100 * m.spread:4.1f}%, {len(m.times)} blocks)"
              f" | blocked_autorange median {1e3 * t.median:8.2f} ms (IQR/median {100 * t.iqr / t.median:4.1f}%)")
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"timer: resnet50 1x3x224x224, {threads} threads: flopmeter p50 {1e3 * a:.2f} ms, "
          f"blocked_autorange {1e3 * b:.2f} ms, ratio {a / b:.3f} (medians of three rounds)")


def layers_section(threads: int) -> None:
    model, x = _resnet50()
    rounds = []
    for _ in range(3):      # three rounds: the profiled run comes right after each timing
        m = flopmeter.measure(model, x, options=MeasureOptions(threads=threads, layers=True, layer_iterations=5,
                                                               min_time=2.0, max_time=10.0))
        p = m.layers
        rounds.append((m.p50, p.profiled, p.leaf_sum, p.outside_leaves))
        print(f"  round: unprofiled p50 {1e3 * m.p50:.2f} ms (spread {100 * m.spread:.1f}%); profiled forward "
              f"{1e3 * p.profiled:.2f} ms (overhead {100 * p.overhead:+.1f}%); leaf modules {1e3 * p.leaf_sum:.2f} ms "
              f"= {100 * p.leaf_sum / m.p50:.1f}% of the p50; outside leaves {1e3 * p.outside_leaves:.2f} ms")
    med = [statistics.median(r[i] for r in rounds) for i in range(4)]
    print(f"layers: resnet50 1x3x224x224, {threads} threads, {len(p.leaves)} leaf modules, medians of three rounds: "
          f"p50 {1e3 * med[0]:.2f} ms, profiled {1e3 * med[1]:.2f} ms ({100 * (med[1] / med[0] - 1):+.1f}%), "
          f"leaf sum {1e3 * med[2]:.2f} ms ({100 * med[2] / med[0]:.1f}% of the p50), outside leaves "
          f"{1e3 * med[3]:.2f} ms")
    top = sorted(p.leaves, key=lambda l: -l.total)[:5]
    for leaf in top:
        print(f"  {leaf.path:24} {leaf.type:12} {1e3 * leaf.total:7.2f} ms  "
              f"{(leaf.achieved_flops or 0) / 1e9:7.1f} GFLOP/s  {(leaf.achieved_bytes or 0) / 1e9:6.2f} GB/s")


def stability_section(threads: int | None) -> None:
    extra = ["--threads", str(threads)] if threads else []
    p50s, spreads = [], []
    for i in range(3):
        r = _cli("bench", "torchvision:resnet50", "--batch", "8", "--max-time", "30", "--format", "json", *extra)
        if r.returncode:
            print(r.stderr)
            raise SystemExit(1)
        (row,) = json.loads(r.stdout)["rows"]
        p50s.append(row["p50_ms"])
        spreads.append(row["spread"])
        print(f"  run {i + 1}: p50 {row['p50_ms']:.1f} ms, p90 {row['p90_ms']:.1f} ms, spread "
              f"{100 * row['spread']:.1f}% ({row['blocks']} blocks), {row['threads']} threads"
              + (f"  [{row['warnings']}]" if row.get("warnings") else ""))
    mean = statistics.mean(p50s)
    worst = max(abs(p - mean) / mean for p in p50s)
    print(f"stability: resnet50 batch 8, three runs: p50 {', '.join(f'{p:.1f}' for p in p50s)} ms; "
          f"largest deviation from their mean {100 * worst:.1f}% (goal ±5%); the tool's own spreads "
          f"{', '.join(f'{100 * s:.1f}%' for s in spreads)}")


def survey_section(threads: int | None) -> None:
    extra = ["--threads", str(threads)] if threads else []
    r = _cli("bench", "torchvision:resnet50", "timm:convnext_tiny", "--input-size", "200,224,256", "--batch", "2",
             "--format", "md", *extra)
    print(r.stdout)
    print(r.stderr)


def sweep_section(subset: int | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models.txt"
        import torchvision
        names = sorted(torchvision.models.list_models(module=torchvision.models))
        names = names[:subset] if subset else names
        models.write_text("\n".join(f"torchvision:{n}" for n in names) + "\n")
        walls = {}
        for jobs in (1, 2):
            out = Path(tmp) / f"rows{jobs}.jsonl"
            start = time.perf_counter()
            r = _cli("sweep", "--models-file", str(models), "-o", str(out), "--jobs", str(jobs), "--no-progress",
                     "--format", "csv")
            walls[jobs] = time.perf_counter() - start
            rows = [json.loads(line) for line in out.read_text().splitlines()]
            failed = [row["model"] for row in rows if row["error"]]
            print(f"  --jobs {jobs}: {len(rows)} rows in {walls[jobs]:.1f} s, {len(failed)} failed {failed or ''}")
        print(f"sweep: {len(names)} torchvision classification models, count only: --jobs 1 {walls[1]:.1f} s, "
              f"--jobs 2 {walls[2]:.1f} s, speed-up {walls[1] / walls[2]:.2f}x on {os.cpu_count()} cores")


def resume_section(subset: int | None, stop_after: int = 20) -> None:
    """The classification zoo, count only, --jobs 2: Ctrl-C (SIGINT) after ``stop_after`` rows, then --resume."""
    import signal

    import torchvision
    names = sorted(torchvision.models.list_models(module=torchvision.models))
    names = names[:subset] if subset else names
    with tempfile.TemporaryDirectory() as tmp:
        models, out = Path(tmp) / "models.txt", Path(tmp) / "rows.jsonl"
        models.write_text("\n".join(f"torchvision:{n}" for n in names) + "\n")
        cmd = [sys.executable, "-m", "flopmeter", "sweep", "--models-file", str(models), "-o", str(out), "--jobs", "2",
               "--no-progress", "--format", "csv"]
        env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None and (not out.exists() or len(out.read_text().splitlines()) < stop_after):
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate()
        first = out.read_text().splitlines()
        print(f"  interrupted after {time.perf_counter() - start:.1f} s: exit status {proc.returncode}, "
              f"{len(first)} rows kept; stderr: {err.strip().splitlines()[-2:]}")
        start = time.perf_counter()
        r = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        notes = [line for line in r.stderr.splitlines() if line.startswith("note:")]
        print(f"  resumed in {time.perf_counter() - start:.1f} s: exit status {r.returncode}; {notes}")
        unique = {row["model"] for row in rows}
        print(f"resume: {len(names)} models; {len(first)} rows before Ctrl-C, {len(rows)} rows after --resume, "
              f"{len(unique)} distinct models, first rows unchanged: {out.read_text().splitlines()[:len(first)] == first}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sections", nargs="*", default=["timer", "layers", "stability", "survey", "sweep", "resume"])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch.get_num_threads())")
    p.add_argument("--subset", type=int, help="sweep: only the first N classification models")
    args = p.parse_args()
    threads = args.threads or torch.get_num_threads()
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    for s in args.sections:
        {"timer": lambda: timer_section(threads), "layers": lambda: layers_section(threads),
         "stability": lambda: stability_section(args.threads), "survey": lambda: survey_section(args.threads),
         "sweep": lambda: sweep_section(args.subset), "resume": lambda: resume_section(args.subset)}[s]()
        print(f"(load average {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
