"""Pieces every subcommand shares: input options, counting with a real-mode fallback,
progress on a terminal, and writing output files safely."""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from dataclasses import replace
from pathlib import Path

import torch

from ..api import Options, count
from ..cost import CONVENTIONS
from ..errors import InputError, ModelForwardError, did_you_mean
from ..frontends import FORMS, InputRequest, Resolved, resolve
from ..report import Report
from ..trace.checks import free_memory
from ..trace.io import SUFFIX as TRACE_SUFFIX
from ..render.escape import visible, visible_text
from .argtypes import count_device, non_empty, positive_int
from .sizing import SWITCHES, check_switches, logits_kept, prepared_copy, stated

DTYPES = {"float32": torch.float32, "float": torch.float32, "float16": torch.float16, "half": torch.float16,
          "bfloat16": torch.bfloat16, "float64": torch.float64, "int64": torch.int64, "long": torch.int64,
          "int32": torch.int32, "bool": torch.bool}


def parse_dtype(text: str) -> torch.dtype:
    try:
        return DTYPES[text.lower()]
    except KeyError:
        raise InputError(f"unknown dtype '{text}'",
                         hint=did_you_mean(text.lower(), DTYPES, otherwise=f"one of: {', '.join(DTYPES)}")) from None


def parse_input(text: str) -> tuple[tuple[int, ...], torch.dtype | None]:
    """'1x3x224x224' or '1x128:int64' → (shape, dtype or None)."""
    shape_text, _, dtype_text = text.partition(":")
    try:
        shape = tuple(int(p) for p in shape_text.lower().split("x"))
    except ValueError:
        raise InputError(f"cannot read input shape '{text}'", hint="write it as 1x3x224x224 (or 1x128:int64)") from None
    if any(d <= 0 for d in shape):
        raise InputError(f"input shape '{text}' must have positive sizes", hint="write it as 1x3x224x224")
    if math.prod(shape) >= 2**63:
        raise InputError(f"input shape '{text}' has more elements than a tensor can index (2^63)",
                         hint="check the sizes; write the shape as 1x3x224x224")
    return shape, parse_dtype(dtype_text) if dtype_text else None


def add_input_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inputs")
    g.add_argument("--input", action="append", metavar="SHAPE[:DTYPE]",
                   help="an input's shape such as 1x3x224x224 or 1x128:int64 (repeat for several inputs); "
                        "for an ONNX file NAME=1x3x224x224 binds a named input")
    g.add_argument("--batch", type=positive_int, help="batch size (replaces the first dimension of every input)")
    g.add_argument("--seq-len", type=positive_int, help="sequence length for hf: text models (default 128)")
    g.add_argument("--dtype", type=non_empty, help="model and input dtype: float32, float16, bfloat16, …")
    g.add_argument("--device", default=None, type=count_device, metavar="{cpu,cuda,cuda:NAME}",
                   help="device the count pretends to run on (fake tensors need no GPU), or runs on in real mode; "
                        "cuda:NAME (cuda:h100, cuda:a100, …) takes that GPU's kernels, plain cuda this machine's "
                        "GPU's or H100 SXM's; default cpu, or the GPU a --fits or --device-spec names")
    g.add_argument("--mode", choices=("auto", "fake", "real"), default="auto",
                   help="fake tensors; real kernels on random weights; auto (default): fake, or real when the "
                        "forward depends on tensor values (detection) or the file is TorchScript")
    g.add_argument("--trust-pickle", action="store_true", help="allow loading a pickled whole model (runs its code)")
    g.add_argument("--force", action="store_true",
                   help="real mode even when the model's weights look larger than the free memory")
    p.add_argument("--convention", default="dot", help=f"FLOP convention: {', '.join(CONVENTIONS)} (default: dot)")
    p.add_argument("--causal", choices=("full", "exact"), default="full",
                   help="count attention under a causal mask in full (default) or only its unmasked pairs")
    p.add_argument("--strict", action="store_true", help="fail when an op has no cost formula")


def add_training_options(p: argparse.ArgumentParser) -> None:
    from ..trace.training import LOSSES, OPTIMIZERS
    g = p.add_argument_group("training")
    g.add_argument("--train", action="store_true",
                   help="count one training step: forward (train mode), loss, backward, optimizer step")
    g.add_argument("--loss", choices=LOSSES, default="sum", help="the loss of --train (default: sum of the outputs)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="add this optimizer's step to --train")
    g.add_argument("--autocast", choices=("bf16", "fp16"), default=None,
                   help="run the forward under torch.autocast (mixed precision); --train shows the weight copies")
    g.add_argument("--master-weights", choices=("fp32", "none"), default=None,
                   help="--train with 16-bit weights: fp32 keeps a float32 master copy that the optimizer steps, "
                        "its state in float32 (mixed precision); none (default): the optimizer updates the 16-bit "
                        "weights, its state in their dtype")
    g.add_argument("--lora", type=non_empty, metavar="R[:TARGETS]",
                   help="--train LoRA adapters of rank R (peft) on a copy of the model: TARGETS a comma list of "
                        "module names or all-linear (default: peft's for the architecture); the base frozen")
    g.add_argument("--qlora", action="store_true",
                   help="with --lora: the frozen base Linear weights in 4-bit nf4, the adapters in the compute dtype")
    g.add_argument("--checkpointing", action="store_true",
                   help="--train with activation checkpointing on a copy of the model: its own "
                        "gradient_checkpointing_enable(), else torch.utils.checkpoint around each repeated block")


def add_output_options(p) -> None:
    """--format, -o, --raw and --debug (a parser or an argument group)."""
    from ..render import RENDERERS
    p.add_argument("--format", choices=tuple(RENDERERS), help="default: table, or from -o's suffix")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (format from its suffix)")
    p.add_argument("--raw", action="store_true", help="exact integers instead of K/M/G/T")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks")


def input_request(args) -> InputRequest:
    for flag, value in (("--batch", args.batch), ("--seq-len", args.seq_len)):
        if value is not None and value <= 0:
            raise InputError(f"{flag} must be positive, got {value}", hint=f"e.g. {flag} 8")
    dtype = parse_dtype(args.dtype) if args.dtype else None
    if dtype is not None and not dtype.is_floating_point:
        raise InputError(f"--dtype sets the model's (floating-point) dtype; {args.dtype} is not one",
                         hint="use float32, float16 or bfloat16; for integer inputs write --input 1x128:int64")
    return InputRequest(training=getattr(args, "train", False), shapes=tuple(parse_input(s) for s in args.input or ()), batch=args.batch,
                        seq_len=args.seq_len, dtype=dtype)


@contextlib.contextmanager
def progress(message: str):
    """A spinner on stderr while something runs, only when a person is watching a terminal."""
    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        yield
        return
    from rich.console import Console
    with Console(stderr=True).status(message):
        yield


def note(message: str) -> None:
    print(f"note: {visible(message)}", file=sys.stderr)


def count_spec(spec: str, args, analyse=None):
    """Resolve SPEC and count it under the CLI's options, falling back to real mode (random
    weights, seed 0) where fake tensors cannot run the model.

    ``analyse(model, *inputs, kwargs=, options=)`` replaces :func:`flopmeter.count` (the
    ``explain`` subcommand passes :func:`flopmeter.explain` bound to a module path)."""
    if spec.endswith(TRACE_SUFFIX):
        return _from_trace(spec, args, analyse)
    if spec.lower().endswith(".onnx"):
        if analyse is not None:
            raise InputError("explain needs a PyTorch module; an ONNX graph has no layer objects to explain",
                             hint="count the ONNX file (flopmeter FILE.onnx --ops), or explain the PyTorch model")
        return _count_onnx(spec, args)
    checkpoint = _header_only(spec, args)
    if checkpoint is not None:
        from .checkpoint import count_checkpoint
        return count_checkpoint(spec, args, analyse, None if checkpoint is True else checkpoint)
    analyse = analyse or count
    _check_run_options(args)
    with progress(f"building {spec} …"):
        resolved = resolve(spec, input_request(args), trust_pickle=args.trust_pickle)
    for line in resolved.notes:
        note(line)
    resolved = logits_kept(resolved, args)
    prepared = prepared_copy(resolved, args)
    if prepared is not None:
        resolved = replace(resolved, model=prepared.model, rebuild=None)
    args._prepared = prepared               # for the memory analyser (QLoRA's weights) and the assumptions
    if args.mode == "real" and (args.device or "").startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda --mode real runs on a CUDA GPU, and PyTorch sees none here",
                         hint="drop --mode real: fake mode counts as if on cuda without a GPU")
    train = getattr(args, "train", False)
    if not train and (getattr(args, "optimizer", None) or getattr(args, "loss", "sum") != "sum"
                      or getattr(args, "autocast", None)):
        raise InputError("--loss, --optimizer and --autocast describe a training step", hint="add --train")
    base = Options(convention=args.convention, strict=args.strict, device=args.device, causal=args.causal,
                   training=train, loss=getattr(args, "loss", "sum"), optimizer=getattr(args, "optimizer", None),
                   autocast=getattr(args, "autocast", None), master_weights=getattr(args, "master_weights", None))
    mode = args.mode
    if mode == "auto" and isinstance(resolved.model, torch.jit.ScriptModule):
        mode = "real"
    result = _count_resolved(resolved, base, mode, args, analyse)
    if resolved.finish is not None and isinstance(result, Report):
        said = result.assumptions
        result = resolved.finish(result)         # e.g. a checkpoint's stored formats beside its config's model
        result.assumptions = said
        result = stated(result, getattr(args, "_prepared", None))      # said again of the report as finished
    return result


def _header_only(spec: str, args):
    """True (or the Checkpoint already read) when SPEC is a checkpoint read by its headers alone:
    a .safetensors, .gguf or .bin file, an index, a folder of them without a config.json, or a
    .pt/.pth holding only tensors (read with weights_only=True; anything else takes the saved-model path)."""
    from ..frontends.checkpoint import is_checkpoint_spec
    from ..frontends.checkpoint.folder import has_config
    if is_checkpoint_spec(spec):
        return not has_config(spec) or None
    if spec.lower().endswith((".pt", ".pth")) and not args.trust_pickle and Path(spec).is_file():
        from ..frontends.checkpoint.torch_file import state_dict
        return state_dict(spec)
    return None


def _count_resolved(resolved: Resolved, base: Options, mode: str, args, analyse):
    prepared = getattr(args, "_prepared", None)
    with progress(f"counting {resolved.name} …"):
        if mode in ("auto", "fake"):
            try:
                return stated(_analyse(resolved, base, "fake", analyse), prepared)
            except ModelForwardError as exc:
                if mode == "fake" or not exc.data_dependent or prepared is not None:
                    raise
                note(f"{exc}; counting in real mode on random weights (seed 0)")
        force = getattr(args, "force", False)
        if mode == "real" and not force and not isinstance(resolved.model, torch.jit.ScriptModule):
            check_fits(resolved, force)         # the weights alone: no count needed
            check_run_fits(resolved, base)
        return stated(_analyse(resolved, base, "real", analyse, force=force), prepared)


def _check_run_options(args) -> None:
    """Options that would be ignored in this combination are refused instead."""
    if args.device == "meta":
        raise InputError("--device meta: the count cannot pretend to run on the meta device",
                         hint="fake mode (the default) allocates nothing already; use --device cpu or cuda")
    if getattr(args, "force", False) and args.mode != "real":
        raise InputError("--force only matters in real mode (it lets a model larger than free memory run)",
                         hint="add --mode real, or leave --force out")
    check_switches(args)


def _from_trace(path: str, args, analyse):
    """A saved trace, costed under the CLI's counting options (nothing re-run, no model code)."""
    from ..api import report_from_trace
    from ..trace.io import load_trace

    given = [flag for flag, value in (("--input", args.input), ("--batch", args.batch), ("--seq-len", args.seq_len),
                                      ("--dtype", args.dtype), ("--device", args.device),
                                      ("--mode", None if args.mode == "auto" else args.mode),
                                      ("--trust-pickle", args.trust_pickle), ("--force", getattr(args, "force", False)),
                                      ("--train", getattr(args, "train", False)),
                                      ("--optimizer", getattr(args, "optimizer", None)),
                                      ("--autocast", getattr(args, "autocast", None)),
                                      ("--loss", getattr(args, "loss", "sum") != "sum"),
                                      *((flag, getattr(args, name, None)) for flag, name in SWITCHES),
                                      ("--logits", getattr(args, "logits", None)))
             if value]
    if given:
        raise InputError(f"{', '.join(given)} cannot change a saved trace (it records one run)",
                         hint="re-run the model with those options and --save-trace")
    if analyse is not None:
        raise InputError("explain needs the model, not a saved trace", hint="give the model's SPEC instead")
    return report_from_trace(load_trace(path),        # its model name comes with the trace
                             Options(convention=args.convention, strict=args.strict, causal=args.causal))


def onnx_input_shapes(texts) -> dict | list | None:
    """--input NAME=1x3x224x224 (by name) or --input 1x3x224x224 (in the graph's input order)."""
    named, ordered = {}, []
    for text in texts or ():
        name, sep, shape_text = text.rpartition("=")
        shape, dtype = parse_input(shape_text)
        if dtype is not None:
            note(f"an ONNX file fixes its inputs' dtypes; ':{str(dtype).removeprefix('torch.')}' in '{text}' is ignored")
        if sep:
            named[name] = shape
        else:
            ordered.append(shape)
    if named and ordered:
        raise InputError("give every --input by name (NAME=SHAPE) or none of them",
                         hint="e.g. --input ids=1x128 --input mask=1x128, or --input 1x128 --input 1x128 in input order")
    return named or ordered or None


_TRAINING = ("an ONNX graph has no backward or training step", "count the PyTorch model with --train")
_NOTHING_RUNS = ("an ONNX file is counted from its graph and nothing runs, so there is no mode or device",
                 "leave it out")
# option → (why an ONNX file cannot honour it, hint)
ONNX_REFUSALS = {
    "--seq-len": ("--seq-len sizes hf: text models; an ONNX file's inputs are shaped with --input",
                  "for example --input input_ids=1x128"),
    "--dtype": ("the graph fixes the dtype of every tensor",
                "convert the graph itself (e.g. onnxconverter-common's float16 conversion), or count the PyTorch "
                "model with --dtype"),
    "--device": _NOTHING_RUNS, "--mode": _NOTHING_RUNS, "--force": _NOTHING_RUNS,
    "--trust-pickle": ("an ONNX file holds no pickles", "leave --trust-pickle out"),
    "--train": _TRAINING, "--loss": _TRAINING, "--optimizer": _TRAINING, "--autocast": _TRAINING,
    "--master-weights": _TRAINING, "--lora": _TRAINING, "--qlora": _TRAINING, "--checkpointing": _TRAINING,
    "--logits": ("--logits sets a decoder's logits_to_keep argument; an ONNX graph's outputs are fixed",
                 "leave --logits out"),
}


def _refuse_for_onnx(spec: str, args) -> None:
    """Options an ONNX graph cannot honour are refused, each with its own reason."""
    given = {"--seq-len": args.seq_len is not None, "--dtype": bool(args.dtype), "--device": args.device is not None,
             "--mode": args.mode != "auto", "--force": getattr(args, "force", False),
             "--trust-pickle": args.trust_pickle, "--train": getattr(args, "train", False),
             "--loss": getattr(args, "loss", "sum") != "sum", "--optimizer": getattr(args, "optimizer", None),
             "--autocast": getattr(args, "autocast", None), "--logits": getattr(args, "logits", None),
             **{flag: getattr(args, name, None) for flag, name in SWITCHES}}
    for flag, value in given.items():
        if value:
            why, hint = ONNX_REFUSALS[flag]
            raise InputError(f"{flag} does not apply to {Path(spec).name}: {why}", hint=hint)


def _count_onnx(spec: str, args):
    from ..frontends.onnx_file import count_onnx
    _refuse_for_onnx(spec, args)
    options = Options(convention=args.convention, strict=args.strict, causal=args.causal)
    with progress(f"counting {spec} …"):
        return count_onnx(spec, onnx_input_shapes(args.input), batch=args.batch, options=options)


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's unique parameters and buffers (readable on the meta device)."""
    seen = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return sum(t.numel() * t.element_size() for t in seen.values())


def check_fits(resolved: Resolved, force: bool) -> None:
    """Refuse, before allocating, a real run whose weights alone exceed the free memory."""
    from ..render.units import human_unit
    need, free = weight_bytes(resolved.model), free_memory()
    if force or free is None or need <= free:
        return
    raise InputError(f"{resolved.name} needs at least {human_unit(need, 'B')} for its weights in real mode, and "
                     f"only {human_unit(free, 'B')} of memory is free", hint="count in fake mode (the default; it "
                     "allocates no weights), or run it anyway with --mode real --force")


def check_run_fits(resolved: Resolved, base: Options) -> None:
    """Refuse, before allocating, a real CPU run whose peak — weights, inputs and activations,
    predicted by a fake count of the same run — exceeds the free memory. A model the fake count
    cannot run is left to the real run."""
    from ..errors import FlopmeterError
    from ..render.units import human_unit
    free = free_memory()
    if free is None or (base.device or "cpu") != "cpu":
        return
    try:
        args, kwargs = resolved.make_inputs(torch.device("meta"))
        predicted = count(resolved.model, *args, kwargs=kwargs, options=replace(base, mode="fake", memory=True))
    except FlopmeterError:
        return
    need = predicted.memory.timeline.peak.bytes
    if need > free:
        raise InputError(f"{resolved.name} would need about {human_unit(need, 'B')} at its peak in real mode "
                         f"(weights, inputs and activations, predicted on fake tensors), and only "
                         f"{human_unit(free, 'B')} of memory is free",
                         hint="count in fake mode (the default; it allocates nothing), use smaller inputs, or run "
                              "it anyway with --mode real --force")


def _analyse(resolved: Resolved, base: Options, mode: str, analyse, force: bool = False):
    model = resolved.model
    if mode == "real" and (base.device or "").startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"{resolved.name} would run in real mode on cuda, and torch sees no GPU",
                         hint="count in fake mode (--mode fake), which needs no GPU for --device cuda")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if mode == "real" and any(t.device.type == "meta" for t in model.parameters()):
            if resolved.rebuild is None:
                raise InputError("this model has no weights to run in real mode",
                                 hint="count it in fake mode (the default), which needs no weights")
            check_fits(resolved, force)
            model = resolved.rebuild()
        device = torch.device(base.device or "cpu") if mode == "real" else torch.device("meta")
        if mode == "real" and device.type != "cpu":
            model = model.to(device)        # a model the CLI built itself, run where the user asked
        try:
            args, kwargs = resolved.make_inputs(device)
        except (torch.OutOfMemoryError, RuntimeError) as exc:      # a front end that allocates itself
            if not isinstance(exc, torch.OutOfMemoryError) and "alloc" not in str(exc):
                raise
            raise InputError(f"not enough memory for the example inputs in {mode} mode ({type(exc).__name__})",
                             hint="count in fake mode (the default; it allocates nothing), or use smaller inputs") from None
        result = analyse(model, *args, kwargs=kwargs, options=replace(base, mode=mode))
    if isinstance(result, Report):
        result.model = resolved.name
        result.trace.model = resolved.name
    return result


def write_output(text: str, path: str | None) -> None:
    """Print (``path`` None or ``-``), or write to PATH as :func:`flopmeter.files.write_file` does:
    a regular file is replaced atomically (a new one gets the user's umask, an existing one keeps
    its mode), a device, FIFO or ``/dev/stdout`` is written in place. Unwritable targets are one InputError."""
    from ..files import write_file, write_stdout

    text = visible_text(text)          # no raw control characters from model names (JSON is escaped already)
    text = text if text.endswith("\n") else text + "\n"
    if path is None:
        write_stdout(text)
    else:
        write_file(path, text, hint="give -o a path in a folder you can write to")


def output_format(fmt: str | None, path: str | None) -> str:
    if fmt:
        return fmt
    if path and path != "-":
        from ..render import RENDERERS, format_of_suffix
        fmt = format_of_suffix(Path(path).suffix)
        if fmt is None:
            suffixes = [s for r in RENDERERS.values() for s in r.suffixes]
            raise InputError(f"cannot tell the format of '{path}' from its suffix",
                             hint=f"use one of {', '.join(suffixes)} or pass --format")
        return fmt
    return "table"


__all__ = ["FORMS", "add_input_options", "add_training_options", "add_output_options", "count_spec", "output_format", "progress", "write_output"]
