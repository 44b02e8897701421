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

    python benchmarks/llm_speed.py                      # both configs, replay on and off
    python benchmarks/llm_speed.py --configs 405b       # one of them
    python benchmarks/llm_speed.py --skip-off-6000      # the full run of 6,000 layers takes minutes
"""

from __future__ import annotations

import argparse
import gc
import json
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["405b", "6000"], help="405b and/or a layer count")
    parser.add_argument("--skip-off-6000", action="store_true", help="do not run the 6,000-layer config without replay")
    args = parser.parse_args()
    os.environ["FLOPMETER_MAX_LAYERS"] = str(max([1000] + [int(c) for c in args.configs if c.isdigit()]))

    import torch
    import flopmeter
    print(f"torch {torch.__version__}, flopmeter {flopmeter.__version__}, torch threads {torch.get_num_threads()}, "
          f"CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    print(f"Python start-up (fresh interpreter importing torch, transformers, flopmeter): {startup_s():.2f} s")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.configs:
            path, seq = config(name, Path(folder))
            built, on, collect, report, stats = analysis(path, seq, replay=True)
            on += collect
            label = "Llama-3.1-405B shape" if name == "405b" else f"llama-7b with {int(name):,} layers"
            print(f"\n{label}, batch 1, sequence {seq}: {report.macs / 1e12:.3f} TMACs, {len(report.ops):,} ops")
            print(f"  build on meta           {built:8.2f} s")
            print(f"  analysis, replay on     {on:8.2f} s   ({stats['replayed']} calls replayed, "
                  f"{stats['recorded']} recorded; {collect:.2f} s of it the collector's pass still pending after the call)")
            if name != "405b" and args.skip_off_6000 and int(name) >= 6000:
                print("  analysis, replay off    skipped (--skip-off-6000)")
                continue
            _, off, collect, full, _ = analysis(path, seq, replay=False)
            off += collect
            same = full.to_dict() == report.to_dict()
            print(f"  analysis, replay off    {off:8.2f} s   ({off / on:.1f}× the replayed run)")
            print(f"  reports equal           {'yes' if same else 'NO'}")
            del report, full


if __name__ == "__main__":
    main()
