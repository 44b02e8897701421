"""``flopmeter serve SPEC --device H100 [--tp N] --prompt P --output N``: serving sizing as vLLM
does it — weights per rank, the profile run's activation peak, the KV budget, blocks and
concurrency, TTFT, TPOT and tokens/s against batch (:mod:`flopmeter.analyses.serving`)."""

from __future__ import annotations

import argparse
import json

from .argtypes import non_empty, positive_float, positive_int
from .common import add_output_options, output_format, write_output


def parser() -> argparse.ArgumentParser:
    from ..analyses.serving import KV_DTYPES, VLLM
    p = argparse.ArgumentParser(prog="flopmeter serve",
                                description=f"Serving sizing of a decoder LLM on a device, as {VLLM} does it.")
    p.add_argument("spec", metavar="SPEC", help="a decoder: hf:llama-7b, hf:mistral-7b, hf:PATH/config.json, or a "
                                                "folder with config.json and its checkpoint")
    p.add_argument("--device", type=non_empty, required=True, metavar="NAME",
                   help="a device of the table (flopmeter devices): h100, a100, l4, …, or a spec .json file")
    p.add_argument("--tp", type=positive_int, default=1, help="tensor-parallel GPUs (default 1)")
    p.add_argument("--prompt", type=positive_int, required=True, metavar="P", help="prompt tokens per request")
    p.add_argument("--output", type=positive_int, required=True, metavar="N", help="output tokens per request (2 or more)")
    p.add_argument("--gpu-memory-utilization", type=positive_float, default=0.9, metavar="F",
                   help="share of the usable memory vLLM may take (default 0.9, as vLLM)")
    p.add_argument("--block-size", type=positive_int, default=16, help="tokens per KV block (default 16, as vLLM)")
    p.add_argument("--kv-dtype", choices=tuple(KV_DTYPES), default="auto",
                   help="KV cache dtype (default auto: the model's dtype)")
    p.add_argument("--max-num-batched-tokens", type=positive_int, metavar="T",
                   help="tokens of the profile run (default: vllm serve's, 8192 on a GPU of 70 GiB or more that is "
                        "not an A100, else 2048)")
    p.add_argument("--max-num-seqs", type=positive_int, metavar="S",
                   help="most requests at once (default: vllm serve's, 1024 or 256 as above)")
    p.add_argument("--weights", type=non_empty, default="stored", metavar="FORMAT|CHECKPOINT",
                   help="stored (default: the config's dtype, or a checkpoint folder's stored bytes), float16, "
                        "bfloat16, float8, int8, int4 (fp16 scale per 128 values; int4:64 for groups of 64), or a "
                        "checkpoint (.safetensors, an index.json, .gguf, .bin, or a folder) read by its headers")
    p.add_argument("--reserve", type=non_empty, metavar="SIZE",
                   help="device memory held back from usable (default: the table's 2 GiB; 0 for vLLM's own "
                        "total × utilization)")
    p.add_argument("--plot", metavar="FILE", help="tokens/s and TPOT against batch (.png, .svg, .pdf; the plots extra)")
    p.add_argument("-o", "--output-file", dest="output_file", metavar="FILE",
                   help="write to FILE (format from its suffix)")
    add_output_options(_NoOutput(p))
    return p


class _NoOutput:
    """The shared output options less ``-o/--output`` (``--output`` is the output length here)."""

    def __init__(self, parser):
        self.parser = parser

    def add_argument(self, *flags, **kwargs):
        if "--output" in flags:
            return None
        return self.parser.add_argument(*flags, **kwargs)


def run(args) -> int:
    from ..analyses.serving import serve
    from ..errors import InputError
    from ..memory import parse_size
    from ..render import get_renderer
    from ..render import serving as view

    fmt = output_format(args.format, args.output_file)
    reserve = None
    if args.reserve is not None:
        reserve = parse_size(args.reserve)
        if reserve is None:
            raise InputError(f"cannot read the reserve '{args.reserve}'", hint="a size such as 2GiB, 512MiB or 0")
    if args.plot:
        from ..bench.plot import check_plot_path
        check_plot_path(args.plot)
    s = serve(args.spec, device=args.device, prompt=args.prompt, output=args.output, tp=args.tp,
              gpu_memory_utilization=args.gpu_memory_utilization, block_size=args.block_size, kv_dtype=args.kv_dtype,
              max_num_batched_tokens=args.max_num_batched_tokens, max_num_seqs=args.max_num_seqs,
              weights=args.weights, reserve=reserve)
    if args.plot:
        view.write_plot(s, args.plot)
    if fmt == "json":
        write_output(json.dumps(s.to_dict(), indent=2), args.output_file)
        return 0
    table = view.decode_table(s, args.raw or fmt == "csv")
    body = get_renderer(fmt).table(table, args.raw)
    if fmt == "csv":
        write_output(body, args.output_file)
        return 0
    items = view.header(s, args.raw)
    if fmt == "html":
        from ..render.html import document_html
        write_output(document_html(items, [view.plot_block(s), ("Decode against batch", table)], args.raw,
                                   title="flopmeter serve"), args.output_file)
        return 0
    from ..render.text import facts_text
    head = facts_text(items, fmt)
    write_output(head + "\n\n" + body, args.output_file)
    return 0


__all__ = ["parser", "run"]
