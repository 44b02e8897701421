"""The count command's memory options: ``--memory``, ``--weights``, ``--context``, ``--fits``,
``--max-batch`` (and ``--view memory``, which turns memory on).

Memory is analysed by the ``analyse`` callable :func:`analyser` hands to ``count_spec``: it
counts as usual, adds ``report.memory``, and for ``--max-batch`` traces the model again at
other batch sizes (and, for ``hf:`` decoders, context lengths) on fake tensors. A budget that
names a GPU (``--fits H100``) makes the count that GPU's (:func:`flopmeter.kernels.device_for`):
its kernels, unless ``--device`` asks for another device.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from ..errors import InputError, ModelForwardError
from .argtypes import non_empty, positive_int


def add_memory_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("memory")
    g.add_argument("--memory", action="store_true",
                   help="also analyse memory: weights, the activation peak and where, the KV cache "
                        "(a memory column in the tree and keras views)")
    g.add_argument("--weights", type=non_empty, metavar="FORMAT",
                   help="weights as stored (default) or in float32, bfloat16, float16, float8, int8, int4 "
                        "(packed, fp16 scale per 128 values; int4:64 for groups of 64)")
    g.add_argument("--context", type=positive_int, metavar="N",
                   help="hf: decoders: a prefill of N tokens (sets --seq-len); the KV cache at N tokens")
    g.add_argument("--fits", type=non_empty, metavar="BUDGET", help="does the forward fit: a size (80GB, 24GiB) or a device (H100)")
    g.add_argument("--max-batch", action="store_true",
                   help="the largest batch that fits --fits (and, for hf: decoders, the longest context), "
                        "from a few fake traces")
    g.add_argument("--reserve", type=non_empty, metavar="SIZE",
                   help="with --fits DEVICE: memory held back from the device's total for the CUDA context and "
                        "library workspaces (default: the device table's, 2 GiB); 0 for none")
    g.add_argument("--logits", choices=("last", "all"), default=None,
                   help="decoders (a forward with logits_to_keep): the LM head for the last position only, as "
                        "generate()'s prefill (the default of a memory answer), or for every position")


def memory_asked(args) -> bool:
    return bool(args.memory or args.weights or args.fits or args.max_batch or args.context or args.reserve
                or args.logits or args.view == "memory")


def budget_of(args):
    """The --fits budget with --reserve taken off a device's total (None without --fits)."""
    from ..memory import parse_budget
    if args.reserve and not args.fits:
        raise InputError("--reserve is held back from the device's memory in --fits",
                         hint="add --fits DEVICE, e.g. --fits H100 --reserve 3GiB")
    if not args.fits:
        return None
    reserve = None
    if args.reserve is not None:
        from ..memory import parse_size
        reserve = parse_size(args.reserve)
        if reserve is None:
            raise InputError(f"cannot read the reserve '{args.reserve}'", hint="write a size such as 2GiB, 1.5GB or 0")
    return parse_budget(args.fits, reserve)


def check_memory_args(args) -> None:
    """Resolve --context into --seq-len and check the option combinations before any work."""
    from ..memory import parse_format

    if args.weights:
        parse_format(args.weights)
    budget_of(args)
    if args.weights and getattr(args, "qlora", False):
        raise InputError("--qlora puts the base Linear weights in nf4; --weights would set another format",
                         hint="leave --weights out with --qlora")
    if args.max_batch and not args.fits:
        raise InputError("--max-batch needs a budget", hint="add --fits 80GB (or a device such as --fits H100)")
    if args.context is not None:
        if args.context <= 0:
            raise InputError(f"--context must be positive, got {args.context}", hint="e.g. --context 4096")
        from ..frontends import is_hf
        if not is_hf(args.spec):
            raise InputError("--context is the prompt length of an hf: decoder",
                             hint="for other models give the input's shape with --input")
        if args.seq_len is not None and args.seq_len != args.context:
            raise InputError("--context and --seq-len disagree", hint="give one of them (--context N sets --seq-len N)")
        args.seq_len = args.context


def _resized(value, dim: int, size: int, only_ids: bool = False):
    """``value`` with dimension ``dim`` of every tensor set to ``size`` (token ids only when
    ``only_ids``); meta tensors stay meta, real ones get zeros or random values."""
    if isinstance(value, torch.Tensor):
        if value.ndim <= dim or (only_ids and (value.is_floating_point() or value.ndim != 2)):
            return value
        shape = (*value.shape[:dim], size, *value.shape[dim + 1:])
        if value.device.type == "meta":
            return torch.empty(shape, dtype=value.dtype, device="meta")
        if value.is_floating_point():
            return torch.randn(shape, dtype=value.dtype, device=value.device)
        return torch.zeros(shape, dtype=value.dtype, device=value.device)
    if isinstance(value, (list, tuple)):
        return type(value)(_resized(v, dim, size, only_ids) for v in value)
    if isinstance(value, dict):
        return {k: _resized(v, dim, size, only_ids) for k, v in value.items()}
    return value


def _max_positions(model) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def count_with_memory(args):
    """``count_spec`` with memory: a SPEC is counted by :func:`analyser`; a saved trace or an
    ONNX graph gets its memory from the trace alone (each ONNX value freed after its last
    consumer; no KV cache objects or new traces: no ``--max-batch``)."""
    from ..memory import Fit, analyse
    from ..trace.io import SUFFIX
    from .common import count_spec

    check_memory_args(args)
    args.logits_kept = args.logits or (None if args.train else "last")
    onnx = args.spec.lower().endswith(".onnx")
    from ..frontends.checkpoint import is_checkpoint_spec
    from ..frontends.checkpoint.folder import has_config
    if is_checkpoint_spec(args.spec) and not has_config(args.spec):
        return count_spec(args.spec, args)          # a checkpoint header: it refuses the memory options itself
    if not (args.spec.endswith(SUFFIX) or onnx):
        return count_spec(args.spec, args, analyser(args))
    if args.max_batch:
        what = ("an ONNX file is counted at the shapes its --input and --batch give" if onnx
                else "a saved trace records one run")
        raise InputError(f"--max-batch traces the PyTorch model again at other batch sizes; {what}",
                         hint="check the batch that fits with --fits at a few --batch sizes" if onnx
                         else "give the model's SPEC instead of the trace file")
    report = count_spec(args.spec, args)
    report.memory = analyse(report, weights=args.weights or "stored")
    budget = budget_of(args)
    if budget is not None:
        report.memory.fit = Fit(budget, report.memory.total)
    from ..analyses.assumptions import assumptions
    report.assumptions = assumptions(report, budget=budget)
    return report


def analyser(args):
    """The ``analyse(model, *inputs, kwargs=, options=)`` for count_spec: count + memory."""
    from ..api import count
    from ..kernels import device_for
    from ..memory import Fit, analyse, largest_fitting

    weights = args.weights or "stored"

    def total(model, inputs, kwargs, options) -> int:
        return analyse(count(model, *inputs, kwargs=kwargs, options=options), weights=weights,
                       prepared=args._prepared).total

    def run(model, *inputs, kwargs=None, options):
        options = replace(options, memory=False)
        budget = budget_of(args)
        if budget is not None and options.mode == "fake":     # a budget naming a GPU: run as that GPU
            options = replace(options, device=device_for(budget.device, options.device))
        report = count(model, *inputs, kwargs=kwargs, options=options)
        mem = report.memory = analyse(report, weights=weights, model=model if report.trace.mode == "fake" else None,
                                      prepared=args._prepared)
        if budget is not None:
            mem.fit = Fit(budget, mem.total)
            if args.max_batch:
                if report.trace.mode != "fake":
                    raise InputError("--max-batch traces the model on fake tensors, but this model runs only in "
                                     "real mode (its forward depends on tensor values)",
                                     hint="check the batch that fits with --fits at a few --batch sizes")
                def at_batch(b):
                    try:
                        return total(model, _resized(inputs, 0, b), _resized(kwargs, 0, b), options)
                    except ModelForwardError as exc:       # e.g. an exported program's bounded batch dimension
                        raise InputError(f"--max-batch: the model does not run at batch {b:,}: {exc}",
                                         hint="check the batch that fits with --fits at a few --batch sizes") from None
                mem.search["batch"] = largest_fitting(at_batch, budget.bytes)
                if mem.kv is not None:
                    mem.search["batch"].fixed["context"] = mem.kv.context
                    limit = _max_positions(model)
                    batch = mem.kv.batch
                    start = tuple(sorted({max(1, limit // 4), max(1, limit // 2), limit})) if limit else (256, 512, 1024)

                    def at_context(n):
                        return total(model, _resized(inputs, 1, n, True), _resized(kwargs, 1, n, True), options)
                    mem.search["context"] = largest_fitting(at_context, budget.bytes, variable="context",
                                                            start=start, limit=limit)
                    mem.search["context"].fixed["batch"] = batch
        return report

    return run


__all__ = ["add_memory_options", "analyser", "check_memory_args", "count_with_memory", "memory_asked"]
