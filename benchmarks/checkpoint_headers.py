"""Reading a 400+ GB sharded checkpoint by its headers: time and bytes read.

Makes, in a temporary folder, a safetensors checkpoint with Llama-3.1-405B's tensor names and
shapes (126 layers, d 16384, ff 53248, 128 heads of 128, 8 KV heads, vocabulary 128256), in
bf16 by default, split into ~80 shards with a model.safetensors.index.json. Each shard is a
sparse file: its real header, then a hole as long as its tensors' data (nothing written, almost
nothing on disk). Then times ``read_checkpoint`` (every header, the index, the checks) and
``checkpoint_report`` (the Report the CLI renders), best of several runs, cold and warm page
cache aside (the files are fresh, so their headers are in the page cache), and counts the
bytes read (the reader's own count, checked against the sum of 8 + header length per shard
plus the index).

    python benchmarks/checkpoint_headers.py [--shards 80] [--dtype BF16] [--repeat 5]

Writes benchmarks/results/checkpoint_headers.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from flopmeter.frontends.checkpoint import checkpoint_report, read_checkpoint
from flopmeter.frontends.checkpoint.formats import SAFETENSORS

LAYERS, D, FF, HEADS, KV, HEAD, VOCAB = 126, 16384, 53248, 128, 8, 128, 128256


def llama_405b() -> list[tuple[str, tuple[int, ...]]]:
    out = [("model.embed_tokens.weight", (VOCAB, D))]
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        out += [(p + "self_attn.q_proj.weight", (HEADS * HEAD, D)), (p + "self_attn.k_proj.weight", (KV * HEAD, D)),
                (p + "self_attn.v_proj.weight", (KV * HEAD, D)), (p + "self_attn.o_proj.weight", (D, HEADS * HEAD)),
                (p + "mlp.gate_proj.weight", (FF, D)), (p + "mlp.up_proj.weight", (FF, D)),
                (p + "mlp.down_proj.weight", (D, FF)), (p + "input_layernorm.weight", (D,)),
                (p + "post_attention_layernorm.weight", (D,))]
    return out + [("model.norm.weight", (D,)), ("lm_head.weight", (VOCAB, D))]


def numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def make(folder: Path, shards: int, dtype: str) -> tuple[int, int, int]:
    """The sparse checkpoint; returns (params, data bytes, header bytes a reader must read)."""
    fmt = SAFETENSORS[dtype]
    tensors = llama_405b()
    total = sum(fmt.nbytes(numel(s)) for _, s in tensors)
    per_shard, groups, current, size = total / shards, [], [], 0
    for name, shape in tensors:
        current.append((name, shape))
        size += fmt.nbytes(numel(shape))
        if size >= per_shard * (len(groups) + 1) and len(groups) < shards - 1:
            groups.append(current)
            current = []
    groups.append(current) if current else None
    weight_map, header_bytes = {}, 0
    for i, group in enumerate(groups):
        file = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, shape in group:
            n = fmt.nbytes(numel(shape))
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
            weight_map[name] = file
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)                       # safetensors pads its header to 8 bytes
        with open(folder / file, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            f.truncate(8 + len(raw) + offset)               # the data: a hole
        header_bytes += 8 + len(raw)
    index = json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}).encode()
    (folder / "model.safetensors.index.json").write_bytes(index)
    return sum(numel(s) for _, s in tensors), total, header_bytes + len(index)


def best(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", type=int, default=80)
    ap.add_argument("--dtype", default="BF16", choices=sorted(SAFETENSORS))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--output", default=str(Path(__file__).parent / "results" / "checkpoint_headers.md"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        params, data, must_read = make(folder, args.shards, args.dtype)
        files = sorted(folder.iterdir())
        apparent = sum(f.stat().st_size for f in files)
        on_disk = sum(f.stat().st_blocks * 512 for f in files)
        index = folder / "model.safetensors.index.json"
        read_s, ckpt = best(lambda: read_checkpoint(index), args.repeat)
        report_s, report = best(lambda: checkpoint_report(ckpt, name="Llama-3.1-405B"), args.repeat)
        cli_s, _ = best(lambda: checkpoint_report(read_checkpoint(folder)), args.repeat)
    assert ckpt.params == params == report.params.count and ckpt.nbytes == data
    assert ckpt.bytes_read == must_read, (ckpt.bytes_read, must_read)
    lines = [
        "# Checkpoint headers: a 400+ GB sharded checkpoint read by its headers",
        "",
        (f"`python benchmarks/checkpoint_headers.py --shards {args.shards} --dtype {args.dtype} --repeat {args.repeat}`"
        f" on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; best of {args.repeat}, headers in the page cache (fresh files)."),
        "",
        (f"- checkpoint: Llama-3.1-405B names and shapes, {args.dtype}, {len(ckpt.files)} shards + index, "
        f"{len(ckpt.tensors):,} tensors, {params:,} params"),
        f"- apparent size {apparent / 1e9:,.1f} GB (sparse: {on_disk / 1e6:,.1f} MB on disk)",
        (f"- bytes read: {ckpt.bytes_read:,} ({ckpt.bytes_read / apparent * 100:.5f}% of the files; "
        f"= the index + 8 + header length per shard, checked)"),
        "",
        "| step | time (ms) |",
        "|---|---:|",
        f"| read_checkpoint(index): every header, parsed and checked | {read_s * 1e3:.1f} |",
        f"| checkpoint_report(checkpoint): the Report the CLI renders | {report_s * 1e3:.1f} |",
        f"| both, from the folder | {cli_s * 1e3:.1f} |",
        "",
        f"Goal: under 1 s. {'Met' if cli_s < 1 else 'Not met'}.",
    ]
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
