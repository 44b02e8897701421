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
``SRC`` (another checkout's ``src``, imported as ``flopmeter_baseline``) on the same configs, in the
same process, alternating with this one run by run (the first of each round switches), after an
untimed count of a two-layer model with each; the two reports are compared (a digest of the
whole ``to_dict()``, per-module rows included) on the first round. ``--out FILE`` also writes
what it prints to FILE, as Markdown with the command line and the load averages.

    python benchmarks/llm_speed.py                      # both configs, replay on and off
    python benchmarks/llm_speed.py --configs 405b       # one of them
    python benchmarks/llm_speed.py --skip-off-6000      # the full run of 6,000 layers takes minutes
    python benchmarks/llm_speed.py --skip-off-6000 --repeat 5 --baseline /tmp/old/src --out benchmarks/results/x.md
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.util
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


def analysis(path: Path, seq: int, replay: bool, fm=None):
    """(build seconds, analysis seconds, seconds of the collector's pass after it, report, replay
    counters) on a freshly built model, counted with the package ``fm`` (default: flopmeter)."""
    import flopmeter
    fm = fm or flopmeter
    built, model, args, kwargs = build(path, seq)
    gc.collect()                 # the build's own garbage and its pending pass: not the count's
    os.environ["FLOPMETER_REPLAY"] = "1" if replay else "0"
    t = time.perf_counter()
    trace, report = fm.api.run(model, args, kwargs, None, fm.Options())
    seconds = time.perf_counter() - t
    t = time.perf_counter()
    gc.collect(0)                # the young generation: everything the count made and kept
    collect = time.perf_counter() - t
    return built, seconds, collect, report, trace.extra.get("replay")


def load_baseline(src: str):
    """The flopmeter package under ``src``, imported as ``flopmeter_baseline``."""
    root = Path(src) / "flopmeter"
    spec = importlib.util.spec_from_file_location("flopmeter_baseline", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["flopmeter_baseline"] = module
    spec.loader.exec_module(module)
    return module


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
    args = parser.parse_args()
    os.environ["FLOPMETER_MAX_LAYERS"] = str(max([1000] + [int(c) for c in args.configs if c.isdigit()]))

    import torch
    import flopmeter
    say = Out()
    packages = {"flopmeter": flopmeter}
    if args.baseline:
        packages["baseline"] = load_baseline(args.baseline)
    say(f"torch {torch.__version__}, flopmeter {flopmeter.__version__}, torch threads {torch.get_num_threads()}, "
        f"CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    if args.baseline:
        say(f"baseline: the flopmeter package under {args.baseline}")
    say(f"Python start-up (fresh interpreter importing torch, transformers, flopmeter): {startup_s():.2f} s")
    with tempfile.TemporaryDirectory() as folder:
        if args.baseline:                # what a first count imports or compiles, for each package
            warm, seq = config("2", Path(folder))
            for fm in packages.values():
                analysis(warm, seq, replay=True, fm=fm)
        for name in args.configs:
            path, seq = config(name, Path(folder))
            label = "Llama-3.1-405B shape" if name == "405b" else f"llama-7b with {int(name):,} layers"
            off_run = name == "405b" or not (args.skip_off_6000 and int(name) >= 6000)
            times: dict[str, list[float]] = {key: [] for key in packages}
            digests: dict[str, str] = {}
            report = first = None
            for r in range(args.repeat):
                order = list(packages) if r % 2 == 0 else list(packages)[::-1]
                for key in order:
                    built, on, collect, rep, st = analysis(path, seq, replay=True, fm=packages[key])
                    on += collect
                    times[key].append(on)
                    if r == 0 and args.baseline:
                        digests[key] = digest(rep)
                    if key == "flopmeter" and first is None:
                        first = (rep.macs, len(rep.ops), built, collect, st)
                        if off_run:
                            report = rep          # compared with the run without replay below
                    if args.repeat > 1 or args.baseline:
                        say(f"  {label}: round {r + 1}, {key:9s} analysis {on:6.2f} s (load {load()})")
                    del rep                       # a 6,000-layer report is millions of objects: one at a time
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
