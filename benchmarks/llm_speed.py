"""Analysis time of large language models, with module replay on and off, in one run.

Two configs, built as ``flopmeter hf:CONFIG`` builds them (``transformers`` on the meta
device, from a config.json alone, in the config's dtype; token ids of batch 1):

- ``405b``: Llama-3.1-405B's shape (hidden 16384, 126 layers, 128 heads, 8 KV heads,
  intermediate 53248, vocab 128256, bfloat16) at sequence length 2048;
- ``6000``: the built-in ``hf:llama-7b`` config with 6,000 layers (``FLOPMETER_MAX_LAYERS`` is
  raised for it) at the default sequence length 128.

For each it prints, apart: Python start-up (a fresh interpreter importing torch, transformers
and flopmeter), building the model on the meta device (``hf:`` resolution), and the analysis —
``flopmeter.count`` of a fresh model (its first count, fake parameters made included), with
replay on and with ``FLOPMETER_REPLAY=0`` — and whether the two reports are equal (the whole
``to_dict()``). Replay on and off run side by side in this one process; the goals are 405B
under 3 s and 6,000 layers under 10 s of analysis with replay on.

A count pauses Python's cyclic garbage collector while it runs (``flopmeter.api.run``); the
objects it makes and keeps (the trace and report: millions for 6,000 layers) are then looked at
by the collector's next pass over the young generation, which Python runs at the first
allocation after the collector is back on — in practice still inside the call, so it is in the
analysis time. Whatever of that pass is still pending afterwards is timed right after the
analysis (``gc.collect(0)``) and added, so the figure the goal is checked on holds it either way.

``--repeat N`` times the analysis with replay on N times, each on a freshly built model, and gives
the best and the median. ``--baseline SRC`` also times the flopmeter package under the folder
``SRC`` (another checkout's ``src``) on the same configs, alternating with this one run by run
(the first of each round switches). Then every timed analysis, this package's too, runs in a
fresh interpreter of its own (``--worker``: the package found first on its path, an untimed
count of a two-layer model, then the config's build and analysis): both packages are imported
as ``flopmeter`` and start from the same state. (Imported side by side under another name in
one process, a copy is not "flopmeter's own" to its registry — ``Registry.builtin_only`` reads
the formulas' module names — so its report costs every event instead of copying replayed
calls' costs, measured 20% slower on the same code.) The two reports are compared (a digest of
the whole ``to_dict()``, per-module rows included) on the first round. ``--out FILE`` also
writes what it prints to FILE, as Markdown with the command line and the load averages.

    python benchmarks/llm_speed.py                      # both configs, replay on and off
    python benchmarks/llm_speed.py --configs 405b       # one of them
    python benchmarks/llm_speed.py --skip-off-6000      # the full run of 6,000 layers takes minutes
    python benchmarks/llm_speed.py --skip-off-6000 --repeat 5 --baseline /tmp/old/src --out benchmarks/results/x.md
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LLAMA_405B = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 16384,
              "intermediate_size": 53248, "num_hidden_layers": 126, "num_attention_heads": 128,
              "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
              "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "hidden_act": "silu", "tie_word_embeddings": False,
              "torch_dtype": "bfloat16"}


def startup_s() -> float:
    """Seconds a fresh interpreter takes to start and import torch, transformers and flopmeter."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, transformers, flopmeter"], check=True,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return time.perf_counter() - t


def config(name: str, folder: Path) -> tuple[Path, int]:
    from flopmeter.frontends.hf import CONFIGS
    if name == "405b":
        raw, seq = dict(LLAMA_405B), 2048
    else:
        raw, seq = json.loads((CONFIGS / "llama-7b.json").read_text()), 128
        raw["num_hidden_layers"] = int(name)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(raw))
    return path, seq


def build(path: Path, seq: int):
    """(seconds, model, args, kwargs) of building ``hf:PATH`` on the meta device."""
    import torch

    from flopmeter.frontends import InputRequest, resolve
    t = time.perf_counter()
    resolved = resolve(f"hf:{path}", InputRequest(seq_len=seq))
    seconds = time.perf_counter() - t
    args, kwargs = resolved.make_inputs(torch.device("meta"))
    return seconds, resolved.model, args, kwargs


def analysis(path: Path, seq: int, replay: bool):
    """(build seconds, analysis seconds, seconds of the collector's pass after it, report, replay
    counters) on a freshly built model."""
    import flopmeter
    built, model, args, kwargs = build(path, seq)
    gc.collect()                 # the build's own garbage and its pending pass: not the count's
    os.environ["FLOPMETER_REPLAY"] = "1" if replay else "0"
    t = time.perf_counter()
    trace, report = flopmeter.api.run(model, args, kwargs, None, flopmeter.Options())
    seconds = time.perf_counter() - t
    t = time.perf_counter()
    gc.collect(0)                # the young generation: everything the count made and kept
    collect = time.perf_counter() - t
    return built, seconds, collect, report, trace.extra.get("replay")


def worker(name: str, with_digest: bool) -> None:
    """One timed analysis with replay on of config ``name`` by the flopmeter this interpreter
    imports, after an untimed count of a two-layer model; prints one ``RESULT {json}`` line."""
    with tempfile.TemporaryDirectory() as folder:
        warm, seq = config("2", Path(folder))
        analysis(warm, seq, replay=True)
        path, seq = config(name, Path(folder))
        built, on, collect, report, stats = analysis(path, seq, replay=True)
    print("RESULT " + json.dumps({"build": built, "seconds": on + collect, "collect": collect, "macs": report.macs,
                                  "ops": len(report.ops), "stats": stats,
                                  "digest": digest(report) if with_digest else None}))


def in_worker(src: str, name: str, with_digest: bool) -> dict:
    """:func:`worker` run in a fresh interpreter that imports the flopmeter under ``src``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, *sys.path])}
    argv = [sys.executable, __file__, "--worker", name] + (["--digest"] if with_digest else [])
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def digest(report) -> str:
    """A digest of the whole report (``to_dict()``: totals, every op row, the module tree)."""
    return hashlib.sha256(json.dumps(report.to_dict(), sort_keys=True, default=repr).encode()).hexdigest()[:16]


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


class Out:
    """What the benchmark prints, kept for ``--out``."""

    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.extend(line.split("\n"))

    def write(self, path: str, argv: list[str]) -> None:
        text = (f"# llm_speed\n\n`python benchmarks/llm_speed.py {' '.join(argv)}`, "
                f"{time.strftime('%Y-%m-%d %H:%M')}, load averages (1/5/15 min) at the end {load()}.\n\n"
                "```text\n" + "\n".join(self.lines) + "\n```\n")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)


def summary(times: list[float]) -> str:
    return f"best {min(times):6.2f} s, median {statistics.median(times):6.2f} s of {len(times)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["405b", "6000"], help="405b and/or a layer count")
    parser.add_argument("--skip-off-6000", action="store_true", help="do not run the 6,000-layer config without replay")
    parser.add_argument("--repeat", type=int, default=1, help="analyses with replay on per config, each on a fresh "
                                                              "model (default 1)")
    parser.add_argument("--baseline", metavar="SRC", help="also time the flopmeter package under SRC (another "
                                                          "checkout's src folder), alternating with this one")
    parser.add_argument("--out", metavar="FILE", help="also write the output to FILE (Markdown)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)         # one analysis, for --baseline
    parser.add_argument("--digest", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["FLOPMETER_MAX_LAYERS"] = str(max([1000] + [int(c) for c in args.configs + [args.worker or ""]
                                                           if c.isdigit()]))
    if args.worker:
        worker(args.worker, args.digest)
        return

    import torch
    import flopmeter
    say = Out()
    trees = {"flopmeter": str(Path(flopmeter.__file__).resolve().parents[1])}
    if args.baseline:
        trees["baseline"] = str(Path(args.baseline).resolve())
    say(f"torch {torch.__version__}, flopmeter {flopmeter.__version__}, torch threads {torch.get_num_threads()}, "
        f"CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    if args.baseline:
        say(f"flopmeter: the package under {trees['flopmeter']}; baseline: the one under {trees['baseline']}; "
            "each timed analysis in a fresh interpreter")
    say(f"Python start-up (fresh interpreter importing torch, transformers, flopmeter): {startup_s():.2f} s")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.configs:
            path, seq = config(name, Path(folder))
            label = "Llama-3.1-405B shape" if name == "405b" else f"llama-7b with {int(name):,} layers"
            off_run = name == "405b" or not (args.skip_off_6000 and int(name) >= 6000)
            times: dict[str, list[float]] = {key: [] for key in trees}
            digests: dict[str, str] = {}
            report = first = None
            for r in range(args.repeat):
                order = list(trees) if r % 2 == 0 else list(trees)[::-1]
                for key in order:
                    if args.baseline:
                        res = in_worker(trees[key], name, with_digest=r == 0)
                        built, on, collect, stats = res["build"], res["seconds"], res["collect"], res["stats"]
                        macs, ops = res["macs"], res["ops"]
                        if r == 0:
                            digests[key] = res["digest"]
                    else:
                        built, on, collect, rep, stats = analysis(path, seq, replay=True)
                        on += collect
                        macs, ops = rep.macs, len(rep.ops)
                        if off_run and report is None:
                            report = rep          # compared with the run without replay below
                        del rep                   # a 6,000-layer report is millions of objects: one at a time
                    times[key].append(on)
                    if key == "flopmeter" and first is None:
                        first = (macs, ops, built, collect, stats)
                    if args.repeat > 1 or args.baseline:
                        say(f"  {label}: round {r + 1}, {key:9s} analysis {on:6.2f} s (load {load()})")
            if off_run and report is None:       # the analyses ran in workers: once more here
                report = analysis(path, seq, replay=True)[3]
            macs, ops, first_build, first_collect, stats = first
            say(f"\n{label}, batch 1, sequence {seq}: {macs / 1e12:.3f} TMACs, {ops:,} ops")
            say(f"  build on meta           {first_build:8.2f} s")
            on = times["flopmeter"][0]
            say(f"  analysis, replay on     {on:8.2f} s   ({stats['replayed']} calls replayed, "
                f"{stats['recorded']} recorded; {first_collect:.2f} s of it the collector's pass still pending after the call)")
            if args.repeat > 1 or args.baseline:
                for key, ts in times.items():
                    say(f"  analysis, replay on, {key:9s} {summary(ts)}")
            if args.baseline:
                same = digests["flopmeter"] == digests["baseline"]
                say(f"  reports equal to the baseline's  {'yes' if same else 'NO'} ({digests['flopmeter']})")
            if not off_run:
                say("  analysis, replay off    skipped (--skip-off-6000)")
                continue
            _, off, collect, full, _ = analysis(path, seq, replay=False)
            off += collect
            same = full.to_dict() == report.to_dict()
            say(f"  analysis, replay off    {off:8.2f} s   ({off / on:.1f}× the replayed run)")
            say(f"  reports equal           {'yes' if same else 'NO'}")
            del report, full
    if args.out:
        say.write(args.out, sys.argv[1:])


if __name__ == "__main__":
    main()
