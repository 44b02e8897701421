"""The sizing switches of the count command — --lora, --qlora, --checkpointing, --master-weights
and --logits — checked, applied to a copy of the resolved model (:mod:`flopmeter.analyses.switches`)
and stated in the report's assumptions."""

from __future__ import annotations

import inspect
from dataclasses import replace

import torch

from ..errors import InputError
from ..frontends import Resolved
from ..report import Report


def check_switches(args) -> None:
    """--lora, --qlora, --checkpointing, --master-weights and --logits, in combinations that apply."""
    given = _switches_given(args)
    train = getattr(args, "train", False)
    if given and not train:
        raise InputError(f"{', '.join(given)}: {'these describe' if len(given) > 1 else 'this describes'} a training "
                         "step (adapters are trained, checkpointing and master weights trade memory in backward and "
                         "the optimizer step)", hint="add --train")
    if getattr(args, "qlora", False) and not getattr(args, "lora", None):
        raise InputError("--qlora quantises the base under LoRA adapters; it needs their rank",
                         hint="add --lora R, e.g. --qlora --lora 16")
    if getattr(args, "master_weights", None) == "fp32" and not getattr(args, "optimizer", None):
        raise InputError("--master-weights fp32: master weights are what the optimizer steps, and there is no "
                         "optimizer step", hint="add --optimizer adamw (or another)")
    if getattr(args, "logits", None) == "last" and train:
        raise InputError("--logits last: a training step's loss reads every position's logits",
                         hint="leave --logits out with --train")


SWITCHES = (("--lora", "lora"), ("--qlora", "qlora"), ("--checkpointing", "checkpointing"),
            ("--master-weights", "master_weights"))


def _switches_given(args) -> list[str]:
    return [flag for flag, name in SWITCHES if getattr(args, name, None)]


def prepared_copy(resolved: Resolved, args):
    """The copy of the model with --lora / --qlora / --checkpointing on it (None without them)."""
    lora, qlora, ckpt = getattr(args, "lora", None), getattr(args, "qlora", False), getattr(args, "checkpointing", False)
    if not (lora or qlora or ckpt):
        return None
    if args.mode == "real":
        raise InputError("--lora, --qlora and --checkpointing go on a copy of the model with meta weights, which "
                         "fake mode counts", hint="leave --mode real out")
    if isinstance(resolved.model, torch.jit.ScriptModule):
        raise InputError("a training step cannot be counted on a TorchScript module (nor adapters or checkpointing "
                         "added to one)", hint="count the eager model")
    from ..analyses.switches import parse_lora, prepare
    from .common import progress
    with progress("adding the sizing switches to a copy of the model …"):
        return prepare(resolved.model, lora=parse_lora(lora) if lora else None, qlora=qlora, checkpointing=ckpt)


def logits_kept(resolved: Resolved, args) -> Resolved:
    """Decoders whose forward takes ``logits_to_keep``: with --logits last (the default of a
    memory answer, as generate()'s prefill) the LM head runs for the last position only."""
    keep = getattr(args, "logits_kept", None)
    if keep is None:
        return resolved
    try:
        accepts = "logits_to_keep" in inspect.signature(resolved.model.forward).parameters
    except (TypeError, ValueError):
        accepts = False
    if not accepts:
        if getattr(args, "logits", None):
            raise InputError(f"--logits chooses the positions a decoder's LM head runs for (logits_to_keep); "
                             f"{resolved.name}'s forward has no logits_to_keep", hint="leave --logits out")
        return resolved
    if keep == "all":
        return resolved
    make = resolved.make_inputs

    def make_inputs(device):
        inputs, kwargs = make(device)
        return inputs, {**kwargs, "logits_to_keep": 1}
    return replace(resolved, make_inputs=make_inputs)


def stated(result, prepared):
    """A report's assumptions, with what was done to the model and the budget it was sized for."""
    if isinstance(result, Report) and (result.assumptions is not None or result.memory is not None):
        from ..analyses.assumptions import assumptions
        fit = getattr(result.memory, "fit", None)
        result.assumptions = assumptions(result, prepared=prepared, budget=fit.budget if fit else None)
    return result


__all__ = ["SWITCHES", "check_switches", "logits_kept", "prepared_copy", "stated"]
