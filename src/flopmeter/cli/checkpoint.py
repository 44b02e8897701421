"""``flopmeter FILE.safetensors`` / ``FILE.gguf`` / ``FILE.bin`` / ``DIR/``: a checkpoint's
parameters from its headers (:mod:`flopmeter.frontends.checkpoint`).

A checkpoint header holds tensors and no computation, so the options that shape or run a
computation are refused, each with its reason; a folder with a ``config.json`` is counted from
the config instead (the ``hf:`` front end) with the checkpoint's dtypes.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

_NO_RUN = "a checkpoint header holds tensors and no computation: nothing runs"
_DIR_HINT = "to count the computation, give the folder with the model's config.json (or hf:CONFIG)"
_NO_FLOPS = "a checkpoint header holds no computation, so there are no FLOPs or ops to count"
# option → (why a checkpoint header cannot honour it, hint)
REFUSALS = {
    "--input": (_NO_RUN, _DIR_HINT), "--batch": (_NO_RUN, _DIR_HINT), "--seq-len": (_NO_RUN, _DIR_HINT),
    "--dtype": ("the file fixes each tensor's dtype; a count in another dtype needs the model",
                "give the folder with the model's config.json, or hf:CONFIG --dtype"),
    "--device": (_NO_RUN, "leave it out"), "--mode": (_NO_RUN, "leave it out"), "--force": (_NO_RUN, "leave it out"),
    "--trust-pickle": (("flopmeter reads checkpoints without unpickling anything (PyTorch files only with "
                       "torch.load(weights_only=True))"), "leave --trust-pickle out"),
    "--train": (_NO_RUN, _DIR_HINT), "--loss": (_NO_RUN, _DIR_HINT), "--optimizer": (_NO_RUN, _DIR_HINT),
    "--autocast": (_NO_RUN, _DIR_HINT), "--master-weights": (_NO_RUN, _DIR_HINT), "--lora": (_NO_RUN, _DIR_HINT),
    "--qlora": (_NO_RUN, _DIR_HINT), "--checkpointing": (_NO_RUN, _DIR_HINT),
    "--convention": (_NO_FLOPS, "leave it out"), "--causal": (_NO_FLOPS, "leave it out"),
    "--strict": (_NO_FLOPS, "leave it out"),
    "--memory": (("memory analysis follows a run's live tensors, and nothing runs; the params line gives the "
                 "stored bytes"), _DIR_HINT),
    "--weights": ("the checkpoint's stored bytes by format are in the params line; another format needs the model",
                  _DIR_HINT),
    "--fits": ("whether a forward fits needs its activations, and nothing runs", _DIR_HINT),
    "--max-batch": ("the largest batch needs the model's computation", _DIR_HINT),
    "--reserve": ("the reserve is held back from a device's budget for --fits, and nothing runs to fit", _DIR_HINT),
    "--logits": ("--logits sets which positions a decoder's LM head runs for, and nothing runs", _DIR_HINT),
    "--view": ("a checkpoint has the tree and tensors views only (its tensor groups, or one row per tensor)",
               "use --view tree or --view tensors"),
    "--save-trace": ("a checkpoint header is read, not traced: there is no run to save", "leave --save-trace out"),
    "--per-sample": (_NO_FLOPS, "leave it out"), "--per-token": (_NO_FLOPS, "leave it out"),
    "--format": ("the HTML report shows a model's costs; a checkpoint has none", "use table, md, csv or json"),
}


def _given(args) -> dict[str, bool]:
    get = lambda name, default=None: getattr(args, name, default)
    return {"--input": bool(get("input")), "--batch": get("batch") is not None, "--seq-len": get("seq_len") is not None,
            "--dtype": bool(get("dtype")), "--device": get("device") is not None,
            "--mode": get("mode", "auto") != "auto", "--force": bool(get("force")),
            "--trust-pickle": bool(get("trust_pickle")), "--train": bool(get("train")),
            "--loss": get("loss", "sum") != "sum", "--optimizer": bool(get("optimizer")),
            "--autocast": bool(get("autocast")), "--convention": get("convention", "dot") != "dot",
            "--causal": get("causal", "full") != "full", "--strict": bool(get("strict")),
            "--memory": bool(get("memory")), "--weights": bool(get("weights")), "--fits": bool(get("fits")),
            "--max-batch": bool(get("max_batch")), "--view": get("view") not in (None, "tree", "tensors"),
            "--save-trace": bool(get("save_trace")), "--per-sample": bool(get("per_sample")),
            "--per-token": bool(get("per_token")), "--format": get("format") == "html",
            "--master-weights": bool(get("master_weights")), "--lora": bool(get("lora")), "--qlora": bool(get("qlora")),
            "--checkpointing": bool(get("checkpointing")), "--reserve": bool(get("reserve")),
            "--logits": bool(get("logits"))}


_STATE_DICT = ("it holds weights, not a model: nothing runs",
               "to count the computation, write a factory that builds the model: path/to/file.py:FUNCTION")


def refuse_options(spec: str, args) -> None:
    """Options a checkpoint header cannot honour are refused, each with its own reason."""
    state_dict = spec.lower().endswith((".bin", ".pt", ".pth"))
    for flag, given in _given(args).items():
        if given:
            why, hint = REFUSALS[flag]
            if state_dict and why == _NO_RUN:
                why, hint = _STATE_DICT
            shown = f"--view {args.view}" if flag == "--view" else "--format html" if flag == "--format" else flag
            raise InputError(f"{shown} does not apply to {Path(spec).name or spec}: {why}", hint=hint)


def count_checkpoint(spec: str, args, analyse=None, checkpoint=None):
    """The Report of a checkpoint's headers, after refusing what it cannot honour."""
    from ..frontends.checkpoint import checkpoint_report, read_checkpoint
    if analyse is not None:
        raise InputError(f"{Path(spec).name or spec} is a checkpoint: its header holds tensors, no computation to "
                         "explain or to time", hint=_DIR_HINT)
    refuse_options(spec, args)
    return checkpoint_report(checkpoint or read_checkpoint(spec), name=spec)


__all__ = ["REFUSALS", "count_checkpoint", "refuse_options"]
