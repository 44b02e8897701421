"""``hf:PATH``: a Hugging Face ``config.json`` (or a folder holding one), or a built-in
name (``hf:gpt2``, ``hf:llama-70b``, … shipped in ``frontends/configs``). Built on the
meta device from the config alone: no weights, no hub access. Text models get token ids
of ``--batch`` × ``--seq-len`` (default 1 × 128); vision models get images at the
config's ``image_size``; encoder-decoders also get decoder ids of the same length.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import InputError
from .base import InputRequest, Resolved, build_on_meta, import_optional, unknown_name
from .hfcheck import build_error, check_config, config_error, model_class

CONFIGS = Path(__file__).with_name("configs")
DEFAULT_SEQ_LEN = 128


def builtin_names() -> list[str]:
    return sorted(p.stem for p in CONFIGS.glob("*.json"))


def _config_path(spec: str) -> Path:
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return path
    if (CONFIGS / f"{spec}.json").is_file():
        return CONFIGS / f"{spec}.json"
    if "/" in spec or spec.endswith(".json"):
        raise InputError(f"no Hugging Face config at '{spec}'", hint="give a config.json or a folder holding one")
    raise unknown_name("hf", spec, builtin_names())


def hf_model(spec: str, req: InputRequest) -> Resolved:
    transformers = import_optional("transformers", "hf")
    path = _config_path(spec)
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}", hint="give a Hugging Face config.json") from None
    check_config(raw, path)
    raw.pop("torch_dtype", None)
    model_type = raw.pop("model_type")
    try:
        config = transformers.AutoConfig.for_model(model_type, **raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise config_error(exc, model_type, path, transformers) from None
    cls = model_class(config, path, transformers)

    def factory():
        if cls is not None:
            model = cls(config)
        else:
            model = transformers.AutoModel.from_config(config)
        model = model.eval()
        return model.to(req.dtype) if req.dtype else model

    try:
        model = build_on_meta(factory)
    except Exception as exc:  # noqa: BLE001  (transformers rejecting the config's values)
        raise build_error(exc, path) from None
    batch = req.batch or 1
    if getattr(model, "main_input_name", "input_ids") == "pixel_values":
        size = getattr(config, "image_size", 224)
        channels = getattr(config, "num_channels", 3)
        dtype = req.dtype or torch.float32

        def make_inputs(device):
            return (torch.empty(batch, channels, size, size, dtype=dtype, device=device)
                    if device.type == "meta" else torch.randn(batch, channels, size, size, dtype=dtype, device=device),), {}
    else:
        seq = req.seq_len or DEFAULT_SEQ_LEN
        limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if limit and seq > limit:
            raise InputError(f"--seq-len {seq} is longer than this model's {limit} positions",
                             hint=f"use --seq-len {limit} or less")
        encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))

        def make_inputs(device):
            ids = torch.zeros(batch, seq, dtype=torch.long, device=device)
            return (ids,), ({"decoder_input_ids": ids} if encoder_decoder else {})
    name = spec if (CONFIGS / f"{spec}.json") == path else str(path)
    return Resolved(f"hf:{name}", model, make_inputs, factory)
