"""Checks on a Hugging Face config before (and while) a model is built from it: a JSON
object that asks for no custom code (``auto_map``), sizes and head counts that are positive, a sane number of layers, a known
``model_type`` (with the three closest when not), and an ``architectures[0]`` that is a
``transformers`` model class (never any other object of the ``transformers`` module)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import InputError, did_you_mean
from .usercode import first_line

MAX_LAYERS_ENV = "FLOPMETER_MAX_LAYERS"
DEFAULT_MAX_LAYERS = 1000      # the largest published models have ~130; building a layer takes milliseconds

_POSITIVE = re.compile(r"^(n_(head|embd|positions|ctx)|d_(model|ff|kv)|.*_heads|hidden_size|intermediate_size|"
                       r"vocab_size|image_size|patch_size|num_channels|max_position_embeddings|head_dim)$")
_LAYERS = re.compile(r"^(n_layer|.*_layers)$")


def max_layers() -> int:
    text = os.environ.get(MAX_LAYERS_ENV)
    try:
        return int(text) if text else DEFAULT_MAX_LAYERS
    except ValueError:
        raise InputError(f"{MAX_LAYERS_ENV}={text!r} is not a whole number",
                         hint=f"set {MAX_LAYERS_ENV} to a whole number of layers, e.g. 2000") from None


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_config(raw, path: Path, limit: int | None = None) -> None:
    if not isinstance(raw, dict):
        raise InputError(f"{path} holds a JSON {type(raw).__name__}, not a config object",
                         hint="a Hugging Face config.json is one JSON object with a 'model_type'")
    if "auto_map" in raw or raw.get("trust_remote_code"):
        raise InputError(f"{path} asks for custom model code ('auto_map'); flopmeter never runs code a config "
                         "points to", hint="write a file.py:FUNCTION that builds the model, and count that")
    if not isinstance(raw.get("model_type"), str):
        raise InputError(f"{path} has no 'model_type'", hint="is it a Hugging Face config.json?")
    limit = max_layers() if limit is None else limit
    for sub in [raw] + [v for v in raw.values() if isinstance(v, dict)]:     # text_config, vision_config, …
        for key, value in sub.items():
            if _POSITIVE.match(key) and _int(value) and value <= 0:
                raise InputError(f"{path}: '{key}' must be positive, got {value}",
                                 hint=f"fix '{key}' in the config")
            if _LAYERS.match(key) and _int(value) and value > limit:
                raise InputError(
                    f"{path} asks for {value:,} layers ('{key}'), more than the {limit:,} flopmeter builds "
                    "without asking (building and counting takes milliseconds per layer)",
                    hint=f"to count it anyway, set {MAX_LAYERS_ENV}={value} in the environment")


def config_error(exc: Exception, model_type: str, path: Path, transformers) -> InputError:
    known = list(transformers.CONFIG_MAPPING.keys())
    if model_type not in known:
        return InputError(f"{path}: unknown model_type '{model_type}' ({len(known)} types are known to "
                          f"transformers {transformers.__version__})",
                          hint=did_you_mean(model_type, known, n=3, otherwise="check the spelling of 'model_type'"))
    return InputError(f"transformers cannot build a '{model_type}' config from {path}: {first_line(exc)[:300]}",
                      hint="check the config's keys and values")


def model_class(config, path: Path, transformers):
    """The class named by ``architectures[0]`` (a PreTrainedModel subclass), or None."""
    archs = getattr(config, "architectures", None)
    if not archs:
        return None
    name = archs[0] if isinstance(archs, (list, tuple)) else archs
    cls = getattr(transformers, name, None) if isinstance(name, str) and name.isidentifier() else None
    if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
        return cls
    models = [n for n in dir(transformers) if (n.endswith("Model") or "For" in n) and not n.startswith(("Auto", "TF"))
              and n != name]
    what = "is not a name in transformers" if cls is None else "is not a transformers model class"
    return _raise(InputError(
        f"{path}: architectures[0] is {name!r}, which {what}",
        hint=did_you_mean(str(name), models, n=3,
                          otherwise="name a model class (e.g. LlamaForCausalLM), or remove 'architectures' "
                                    "to build the base model")))


def _raise(exc: Exception):
    raise exc


def build_error(exc: Exception, path: Path) -> InputError:
    return InputError(f"transformers cannot build the model of {path}: {type(exc).__name__}: {first_line(exc)[:300]}",
                      hint="check the config's values: sizes and head counts positive, hidden_size divisible by "
                           "num_attention_heads")
