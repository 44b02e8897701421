"""``flopmeter SPEC``: count one model and show it."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import InputError
from ..render.tables import VIEWS
from .argtypes import prompt_plus_new, tree_depth
from .common import (FORMS, add_input_options, add_output_options, add_training_options, count_spec, output_format,
                     write_output)
from .memory import add_memory_options, count_with_memory, memory_asked
from .perunit import add_per_unit_options, per_unit


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flopmeter count", description="Exact parameters, MACs and FLOPs of a PyTorch model "
                                            "('flopmeter SPEC' is short for 'flopmeter count SPEC').",
        epilog="'flopmeter --help' lists the other commands")
    p.add_argument("spec", help=f"the model: {FORMS}")
    add_input_options(p)
    add_memory_options(p)
    add_training_options(p)
    p.add_argument("--generate", type=prompt_plus_new, metavar="PROMPT+NEW",
                   help="hf: decoders: count the prefill of PROMPT tokens and the decode of NEW tokens with the KV cache")
    out = p.add_argument_group("output")
    out.add_argument("--view", choices=VIEWS, default="tree",
                     help="tree: module tree (default); keras: layer/output shape/params; ops: one row per op; "
                          "memory: live-bytes timeline and per-module peaks; tensors: one row per tensor of a "
                          "checkpoint")
    out.add_argument("--ops", action="store_const", const="ops", dest="view", help="same as --view ops")
    out.add_argument("--depth", type=tree_depth, help="depth of the tree view in table, md and csv (default 2; -1 for all)")
    out.add_argument("--save-trace", metavar="FILE.fmtrace",
                     help="also save the recorded trace (re-cost or re-render it later with 'flopmeter FILE.fmtrace')")
    add_per_unit_options(out)
    add_output_options(out)
    p.add_argument("--version", action="version", version=f"flopmeter {__version__}")
    return p


def check_output_options(args, fmt: str) -> None:
    """--depth and --view where they would be ignored are refused (before any counting)."""
    if args.depth is not None and (args.view not in ("tree", "memory") or fmt == "json"):
        where = "JSON always holds the whole tree" if fmt == "json" else f"the {args.view} view has no depth"
        raise InputError(f"--depth applies to the tree and memory views in table, md and csv; {where}",
                         hint="leave --depth out")
    if fmt == "json" and args.view == "keras":
        raise InputError("--view keras has no JSON form; JSON holds the whole module tree",
                         hint="use --view keras with --format table, md or csv, or --ops to add every op to JSON")
    if args.view == "tensors":
        from ..frontends.checkpoint import is_checkpoint_spec
        if not is_checkpoint_spec(args.spec):
            raise InputError(f"--view tensors lists a checkpoint's tensors; {args.spec} is not a checkpoint",
                             hint="give a .safetensors, .gguf or .bin file or a folder of them, or use --view tree")
        if fmt == "json":
            raise InputError("--view tensors has no JSON form of its own; JSON always holds every tensor "
                             "(its 'checkpoint' section)", hint="leave --view out with --format json")
    if fmt == "html" and args.view != "tree":
        raise InputError(f"--view {args.view} has no HTML form; the HTML report shows the tree and the op types",
                         hint=f"use --view {args.view} with --format table, md or csv")


def run(args) -> int:
    if args.depth is not None and args.depth < -1:
        raise InputError(f"--depth must be 0 or more (or -1 for the whole tree), got {args.depth}",
                         hint="e.g. --depth 2, or --depth -1 for every module")
    fmt = output_format(args.format, args.output)
    check_output_options(args, fmt)
    if args.generate:
        return _generate(args, fmt)
    report = count_with_memory(args) if memory_asked(args) else count_spec(args.spec, args)
    if args.save_trace:
        from ..trace.io import SUFFIX, save_trace
        if not args.save_trace.endswith(SUFFIX):
            raise InputError(f"a trace file ends in {SUFFIX}: '{args.save_trace}'",
                             hint=f"for example --save-trace run{SUFFIX}")
        save_trace(report.trace, args.save_trace)
    report = per_unit(report, args)
    depth = _default_depth(report) if args.depth is None else None if args.depth < 0 else args.depth
    if fmt == "table" and args.output is None and sys.stdout.isatty():
        from rich.console import Console

        from ..render.terminal import render
        Console().print(render(report, view=args.view, depth=depth, raw=args.raw))
        return 0
    from ..render import get_renderer
    write_output(get_renderer(fmt).report(report, view=args.view, depth=depth, raw=args.raw), args.output)
    return 0


def _default_depth(report) -> int:
    """2; a checkpoint's tree goes down to its layers (model.layers.N: 3, blk.N: 2)."""
    if report.mode != "checkpoint":
        return 2
    from ..frontends.checkpoint.report import layer_depth
    return layer_depth(p.name for p in report.trace.params)


def _refuse_for_generate(args) -> None:
    """Options --generate would ignore are refused, each with its reason."""
    from ..frontends import is_hf
    from ..trace.io import SUFFIX
    if not is_hf(args.spec):
        what = ("a saved trace" if args.spec.endswith(SUFFIX) else "an ONNX graph"
                if args.spec.lower().endswith(".onnx") else "not an hf: model")
        raise InputError(f"--generate runs a Hugging Face decoder's prefill and decode steps; {args.spec} is {what}",
                         hint="give the model as hf:CONFIG, e.g. hf:llama-7b --generate 512+128")
    refusals = [
        (args.train, "--train", "--generate counts inference; it does not combine with --train",
         "drop --train, or drop --generate to count a training step"),
        (args.input, "--input", "--generate makes its own token ids (BATCH × PROMPT)",
         "set the batch with --batch and the prompt with --generate PROMPT+NEW"),
        (args.seq_len is not None or args.context is not None, "--seq-len/--context",
         "--generate sets the prompt length", "write the prompt length as PROMPT in --generate PROMPT+NEW"),
        (args.mode == "real" or args.force, "--mode real", "--generate traces the prefill and decode steps on "
         "fake tensors", "leave --mode and --force out"),
        (args.device is not None, "--device", "--generate counts on the CPU's fake tensors", "leave --device out"),
        (args.loss != "sum" or args.optimizer or args.autocast, "--loss/--optimizer/--autocast",
         "these describe a training step, which --generate does not count", "leave them out"),
        (args.view != "tree" or args.depth is not None, "--view/--depth/--ops",
         "--generate shows one table of phases, not a module view", "leave --view, --ops and --depth out"),
        (args.save_trace, "--save-trace", "--generate makes several traces (prefill and decode steps), not one",
         "save the prefill's trace with flopmeter SPEC --seq-len PROMPT --save-trace FILE"),
        (args.per_sample or args.per_token, "--per-sample/--per-token",
         "--generate already shows FLOPs and bytes per token", "leave it out"),
        (args.lora or args.qlora or args.checkpointing or args.master_weights,
         "--lora/--qlora/--checkpointing/--master-weights", "these describe a training step, which --generate "
         "does not count", "leave them out, or size the training step with --train"),
        (args.logits == "all", "--logits all", "--generate's prefill keeps the last position's logits, as "
         "generate() does", "leave --logits out (or count one forward: flopmeter SPEC --seq-len P --logits all)"),
    ]
    for given, flag, why, hint in refusals:
        if given:
            raise InputError(f"{flag}: {why}" if not why.startswith(flag) else why,
                             hint=hint or "leave the option out")


def _generate(args, fmt: str) -> int:
    import json
    from dataclasses import replace

    from ..api import Options
    from ..frontends import resolve
    from ..generate import generation, generation_memory
    from ..kernels import device_for
    from ..render import get_renderer
    from .common import input_request, note, progress

    prompt, new = args.generate
    _refuse_for_generate(args)
    from .memory import budget_of
    budget = budget_of(args)
    if args.weights:
        from ..memory import parse_format
        parse_format(args.weights)
    if args.max_batch and not args.fits:
        raise InputError("--max-batch needs a budget", hint="add --fits 80GB (or a device such as --fits H100)")
    with progress(f"building {args.spec} …"):
        # generation makes its own token ids: the example input is one token, within any model's positions
        resolved = resolve(args.spec, replace(input_request(args), seq_len=1), trust_pickle=args.trust_pickle)
    for line in resolved.notes:
        note(line)
    options = Options(convention=args.convention, strict=args.strict, causal=args.causal)
    batch = args.batch or 1
    with progress(f"counting prefill and decode of {resolved.name} …"):
        gen = generation(resolved.model, prompt, new, batch=batch, name=resolved.name, options=options)
    if args.memory or args.weights or args.fits or args.reserve or args.logits:
        with progress(f"tracing the memory of prefill and decode of {resolved.name} …"):
            # the memory of a budget naming a GPU is that GPU's: its kernels (the FLOPs are the same)
            gpu = device_for(budget.device if budget is not None else None, None)
            gen.memory = generation_memory(resolved.model, prompt, new, batch=batch, weights=args.weights or "stored",
                                           budget=budget, max_batch=args.max_batch,
                                           options=replace(options, device=gpu))
    if fmt == "json":
        text = json.dumps(gen.to_dict(), indent=2)
    else:
        table = gen.table(args.raw)
        text = get_renderer(fmt).table(table, raw=args.raw)
        if fmt in ("table", "md"):          # the weights, the KV cache and memory follow the table
            width = max(len(k) for k, _ in table.footer)
            text = text.rstrip("\n") + "\n\n" + "\n".join(f"- **{k}**: {v}" if fmt == "md" else f"{k.ljust(width)}  {v}"
                                        for k, v in table.footer)
    write_output(text, args.output)
    return 0
