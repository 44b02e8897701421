"""``flopmeter plan SPEC --cluster 8xH100:4 --tp 8 --fsdp``: one training step of the model as
PyTorch's tensor parallelism, FSDP2 and recompute run it, traced as rank 0 on a fake process
group — memory at the step's peak by kind, every collective, FLOPs by phase, predicted step time,
MFU and tokens/s, and whether it fits."""

from __future__ import annotations

import argparse
import json

from ..errors import InputError
from ..render.tables import Table
from ..render.units import ParamCount, duration, human
from .argtypes import non_empty, positive_float, positive_int, positive_int_list
from .common import add_output_options, output_format, write_output

GIB = 2**30


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flopmeter plan", description="Plan a multi-GPU training step: per-rank memory, "
                                "collectives and step time, traced on one CPU.")
    p.add_argument("spec", metavar="SPEC", help="hf:CONFIG: a built-in name (hf:llama-7b) or a config.json")
    g = p.add_argument_group("parallelism")
    g.add_argument("--cluster", type=non_empty, default="8xH100", metavar="GPUSxDEVICE[:NODES]",
                   help="GPUs per node × device, times nodes: 8xH100 (one node, default), 8xH100:4 (four nodes)")
    g.add_argument("--tp", type=positive_int, default=None, help="tensor-parallel degree (default 1)")
    g.add_argument("--dp", type=positive_int, default=None, help="data-parallel degree (default: world size / tp)")
    g.add_argument("--pp", type=positive_int, default=1, help="pipeline stages (only 1 for now)")
    g.add_argument("--fsdp", action="store_true", help="shard parameters, gradients and optimizer state with FSDP2 "
                                                       "(fully_shard; ZeRO-3)")
    g.add_argument("--zero", type=int, choices=(0, 1, 2, 3), default=None,
                   help="ZeRO stage: 0 DDP (default), 1 and 2 modelled, 3 FSDP2 (as --fsdp)")
    g.add_argument("--sp", action="store_true", help="sequence parallelism with the tensor-parallel plan")
    g.add_argument("--recompute", choices=("none", "full"), default=None,
                   help="activation recomputation: full checkpoints every decoder layer (default none)")
    g.add_argument("--search", action="store_true",
                   help="plan every tp × dp × ZeRO × SP × recompute × batch of the cluster; rank those that fit")
    g.add_argument("--top", type=positive_int, default=10, help="with --search: how many to rank (default 10)")
    g.add_argument("--batches", type=positive_int_list, default=None, metavar="N,N,…",
                   help="with --search: the micro-batches to try (default 1,2)")
    s = p.add_argument_group("step")
    s.add_argument("--batch", type=positive_int, default=None, help="sequences per data-parallel rank (default 1)")
    s.add_argument("--seq-len", type=positive_int, default=2048, help="tokens per sequence (default 2048)")
    s.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="parameters and optimizer state (default float32)")
    s.add_argument("--compute-dtype", choices=("bfloat16", "float16", "same"), default="bfloat16",
                   help="compute dtype (FSDP2 mixed precision or autocast; default bfloat16; same: --dtype)")
    from ..trace.training import OPTIMIZERS
    s.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw", help="default adamw")
    c = p.add_argument_group("cost model")
    c.add_argument("--network-bandwidth", type=positive_float, metavar="GB/S",
                   help="bytes per second per GPU across nodes, in GB/s (default 50: 400 Gb/s InfiniBand NDR per GPU)")
    c.add_argument("--latency", type=positive_float, metavar="US",
                   help="latency per ring step in µs (default 5 inside a node, 10 across nodes)")
    c.add_argument("--reserve", type=non_empty, metavar="SIZE",
                   help="device memory held back from tensors, e.g. 2GiB (default: the device table's)")
    add_output_options(p)
    return p


def request(args) -> dict:
    """The options of :func:`flopmeter.plan` from the command line."""
    reserve = None
    if args.reserve is not None:
        from ..memory.devices import parse_size
        reserve = parse_size(args.reserve)
        if reserve is None:
            raise InputError(f"cannot read the reserve '{args.reserve}'", hint="give a size such as 2GiB or 1.5GB")
    if args.fsdp and args.zero not in (None, 3):
        raise InputError(f"--fsdp is ZeRO stage 3, and --zero {args.zero} was also given", hint="give one of them")
    if args.search:
        given = [o for o, v in (("--tp", args.tp), ("--dp", args.dp), ("--fsdp", args.fsdp or None),
                                ("--zero", args.zero), ("--sp", args.sp or None), ("--recompute", args.recompute),
                                ("--batch", args.batch)) if v is not None]
        if given:
            raise InputError(f"--search chooses {', '.join(given)} itself",
                             hint="leave them out (--batches N,N picks the micro-batches to try), or drop --search")
        if args.pp != 1:
            raise InputError(f"pipeline parallelism (pp={args.pp}) is not supported yet", hint="leave --pp out")
        return {"cluster": args.cluster, "batches": tuple(args.batches or (1, 2)), "seq_len": args.seq_len,
                **_step_options(args, reserve)}
    if args.batches is not None:
        raise InputError("--batches is the list of micro-batches --search tries", hint="add --search, or give --batch N")
    return {"cluster": args.cluster, "tp": args.tp or 1, "dp": args.dp, "pp": args.pp,
            "zero": 3 if args.fsdp else args.zero or 0, "sp": args.sp, "recompute": args.recompute or "none",
            "batch": args.batch or 1, "seq_len": args.seq_len, **_step_options(args, reserve)}


def _step_options(args, reserve) -> dict:
    return {"dtype": args.dtype, "compute_dtype": None if args.compute_dtype == "same" else args.compute_dtype,
            "optimizer": args.optimizer,
            "network_bandwidth": None if args.network_bandwidth is None else args.network_bandwidth * 1e9,
            "latency": None if args.latency is None else args.latency * 1e-6, "reserve": reserve}


def _bytes(n: int, raw: bool):
    """Bytes in binary units (memory budgets are in GiB), exact with ``raw``."""
    if raw:
        return n
    for scale, unit in ((GIB, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale / 10:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def header(p, raw: bool = False) -> list[tuple[str, str]]:
    c = p.config
    m = p.memory
    parallel = f"world {p.world} = dp {p.dp} × tp {p.tp}; ZeRO-{c.stage}" + (" (FSDP2)" if c.stage == 3 else "")
    parallel += (", sequence parallel" if c.sp else "") + (", full recompute" if c.recompute == "full" else "")
    return [("model", (f"{p.model}: {human(ParamCount(p.params_total))} parameters, "
                       f"{human(ParamCount(p.params_rank))} per rank")),
            ("cluster", p.cluster.describe()), ("parallelism", parallel),
            ("step", (f"{c.batch} × {c.seq_len} tokens per dp rank ({p.tokens:,} per step), {c.dtype} parameters, "
                     f"{str(c.compute).removeprefix('torch.')} compute, {c.optimizer}")),
            ("memory", (f"peak {_bytes(m.peak, False)} per rank in {m.phase} ({m.module or 'root'}); usable "
                       f"{_bytes(m.usable, False)} → {'fits' if m.fits else 'does NOT fit'}")),
            ("step time", (f"{duration(p.step_s, False)} (compute {duration(p.time.compute, False)}, communication "
                           f"{duration(p.time.comm, False)}, of which {duration(p.time.exposed_comm, False)} not "
                           f"hidden behind compute); {duration(p.time.no_overlap, False)} with no overlap")),
            ("throughput", f"{p.tokens_per_s:,.0f} tokens/s, MFU {100 * p.mfu:.1f}%"
                           + (f", HFU {100 * p.hfu:.1f}%" if p.hfu != p.mfu else ""))]


def tables(p, raw: bool) -> list[tuple[str, Table]]:
    mem = Table(["kind", "bytes", "share"], [False, True, True])
    for kind, value in sorted(p.memory.by_kind.items(), key=lambda kv: -kv[1]):
        if value:
            note = p.memory.modelled.get(kind)
            mem.rows.append([kind + (" (modelled)" if note else ""), _bytes(value, raw),
                             f"{100 * value / p.memory.peak:.1f}%" if p.memory.peak else ""])
    coll = Table(["phase", "collective", "group", "calls", "bytes", "time", "source"],
                 [False, False, False, True, True, True, False])
    times: dict[tuple, float] = {}
    for c, seconds, _ in p.time.comm_items:
        key = (c.kind, c.group, c.phase, c.source)
        times[key] = times.get(key, 0.0) + seconds
    for r in p.collective_rows():
        coll.rows.append([r.phase, r.kind.replace("_", "-"), f"{r.group} ({r.size})", r.count, _bytes(r.bytes, raw),
                          duration(times.get((r.kind, r.group, r.phase, r.source), 0.0), raw), r.source])
    flops = Table(["phase", "FLOPs (dot)", "compute time"], [False, True, True])
    for phase, value in p.flops_by_phase.items():
        flops.rows.append([phase, value if raw else human(value), duration(p.time.compute_by_phase.get(phase, 0.0), raw)])
    return [("Memory at the peak, per rank", mem), ("Collectives of one step, per rank", coll),
            ("FLOPs per rank by phase", flops)]


def run(args) -> int:
    from ..analyses.parallel import plan
    fmt = output_format(args.format, args.output)
    if args.search:
        from .plan_search import run_search
        return run_search(args, request(args), fmt)
    result = plan(args.spec, **request(args))
    if fmt == "json":
        write_output(json.dumps(result.to_dict(), indent=2), args.output)
        return 0
    from ..render import get_renderer
    renderer = get_renderer(fmt)
    blocks = tables(result, args.raw or fmt == "csv")
    if fmt == "csv":
        write_output(renderer.table(blocks[1][1], True), args.output)
        return 0
    items = header(result, args.raw) + [("note", n) for n in result.notes]
    if fmt == "html":
        from ..render.html import document_html
        write_output(document_html(items, blocks, args.raw), args.output)
        return 0
    from ..render.text import facts_text
    head = facts_text(items, fmt)
    if fmt == "md":
        body = "\n\n".join(f"### {title}\n\n{renderer.table(t, args.raw)}" for title, t in blocks)
    else:
        body = "\n\n".join(f"{title}\n{renderer.table(t, args.raw)}" for title, t in blocks)
    write_output(head + "\n\n" + body, args.output)
    return 0


__all__ = ["header", "parser", "request", "run", "tables"]
