"""``hf:PATH``: a Hugging Face ``config.json`` (or a folder holding one), or a built-in
name (``hf:gpt2``, ``hf:llama-70b``, … shipped in ``frontends/configs``). Built on the
meta device from the config alone: no weights, no hub access (a hub id such as
``hf:meta-llama/Llama-2-7b-hf`` is refused with how to pass a local config.json). Weights are
in the config's ``torch_dtype`` unless ``--dtype`` says otherwise. Text models get token ids
of ``--batch`` × ``--seq-len`` (default 1 × 128, or one ``--input BATCHxSEQ``); vision models
get images at the config's ``image_size`` (or ``--input``); encoder-decoders also get decoder
ids of the same length.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import InputError
from .base import (InputRequest, Resolved, build_on_meta, default_dtype, import_optional, refuse, refuse_seq_len,
                   shaped_inputs, tensor, unknown_name)
from .hfcheck import build_error, check_config, config_error, model_class, quiet_transformers
from .usercode import first_line

CONFIGS = Path(__file__).with_name("configs")
DEFAULT_SEQ_LEN = 128


def builtin_names() -> list[str]:
    return sorted(p.stem for p in CONFIGS.glob("*.json"))


def _config_path(spec: str) -> Path:
    if not spec:
        raise InputError("hf: needs a config: a config.json, a folder holding one, or a built-in name",
                         hint="built-in configs: " + ", ".join(f"hf:{n}" for n in builtin_names()))
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return path
    if (CONFIGS / f"{spec}.json").is_file():
        return CONFIGS / f"{spec}.json"
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")) and not spec.endswith(".json"):
        raise InputError(f"'{spec}' looks like a Hugging Face Hub id; flopmeter never downloads configs "
                         "(nor weights): it reads a config.json on disk",
                         hint=f"save the model's config.json (e.g. huggingface-cli download {spec} config.json "
                              "--local-dir DIR) and pass hf:DIR")
    if "/" in spec or spec.endswith(".json"):
        raise InputError(f"no Hugging Face config at '{spec}'", hint="give a config.json or a folder holding one")
    raise unknown_name("hf", spec, builtin_names())


def _config_dtype(raw: dict) -> torch.dtype | None:
    """The config's ``torch_dtype`` (``dtype`` in newer configs): the dtype its weights are stored in."""
    names = [raw.pop(key, None) for key in ("torch_dtype", "dtype")]
    name = next((n for n in names if isinstance(n, str)), None)
    dtype = getattr(torch, name.removeprefix("torch."), None) if name else None
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else None


def _text_shape(req: InputRequest, name: str) -> tuple[int, int]:
    """(batch, sequence length) of the token ids: --batch × --seq-len, or one --input BATCHxSEQ."""
    if not req.shapes:
        return req.batch or 1, req.seq_len or DEFAULT_SEQ_LEN
    (shape, dtype), *more = req.shapes
    if more or len(shape) != 2 or (dtype is not None and dtype.is_floating_point):
        raise refuse("--input", f"for {name} (a text model) is one BATCHxSEQ shape of token ids, "
                     f"not {', '.join(_show(s, d) for s, d in req.shapes)}",
                     hint="use --input 1x128, or --batch and --seq-len")
    if req.seq_len is not None:
        raise refuse("--seq-len", "and --input both set the sequence length", hint="give one of them")
    return req.batch or shape[0], shape[1]


def _show(shape, dtype) -> str:
    return "x".join(map(str, shape)) + (f":{str(dtype).removeprefix('torch.')}" if dtype else "")


def hf_model(spec: str, req: InputRequest) -> Resolved:
    transformers = import_optional("transformers", "hf")
    path = _config_path(spec)
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:    # unreadable, bad JSON or UTF-8, too deep, too long a number
        raise InputError(f"cannot read {path}: {type(exc).__name__}: {first_line(exc)[:200]}",
                         hint="give a Hugging Face config.json (one JSON object, UTF-8)") from None
    check_config(raw, path)
    stored = _config_dtype(raw)
    dtype = req.dtype or stored or torch.float32
    model_type = raw.pop("model_type", None)
    if model_type is None:
        raise InputError(f"{path} has no 'model_type'", hint="is it a Hugging Face config.json?")
    try:
        with quiet_transformers():
            config = transformers.AutoConfig.for_model(model_type, **raw)
    except Exception as exc:  # noqa: BLE001  (transformers' own validation: wrong types, sizes that do not divide)
        raise config_error(exc, model_type, path, transformers) from None
    cls = model_class(config, path, transformers)

    def factory():
        with quiet_transformers(), default_dtype(dtype):
            model = cls(config) if cls is not None else transformers.AutoModel.from_config(config)
        model = model.eval()
        return model.to(dtype) if dtype != torch.float32 else model

    try:
        model = build_on_meta(factory)
    except Exception as exc:  # noqa: BLE001  (transformers rejecting the config's values)
        raise build_error(exc, path) from None
    name = spec if (CONFIGS / f"{spec}.json") == path else str(path)
    notes = []
    if req.dtype is None and stored is not None and stored != torch.float32:
        notes.append(f"hf:{name}: weights in {str(stored).removeprefix('torch.')}, the config's torch_dtype "
                     "(--dtype float32 to count in float32)")
    if getattr(model, "main_input_name", "input_ids") == "pixel_values":
        refuse_seq_len(req, f"hf:{name} (a vision model)")
        size = getattr(config, "image_size", 224)
        channels = getattr(config, "num_channels", 3)
        default = [(1, channels, size, size)]
        shapes = shaped_inputs(req, default, dtype)

        def make_inputs(device):
            return tuple(tensor(s, d, device) for s, d in shapes), {}
    else:
        batch, seq = _text_shape(req, f"hf:{name}")
        limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if limit and seq > limit:
            raise InputError(f"--seq-len {seq} is longer than this model's {limit} positions",
                             hint=f"use --seq-len {limit} or less")
        encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))

        def make_inputs(device):
            ids = torch.zeros(batch, seq, dtype=torch.long, device=device)
            return (ids,), ({"decoder_input_ids": ids} if encoder_decoder else {})
    return Resolved(f"hf:{name}", model, make_inputs, factory, notes)
