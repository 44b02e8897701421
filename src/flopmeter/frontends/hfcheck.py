"""Checks on a Hugging Face config before (and while) a model is built from it: a JSON
object that asks for no custom code (``auto_map``), sizes and head counts that are positive, a sane number of layers, a known
``model_type`` (with the three closest when not), and an ``architectures[0]`` that is a
``transformers`` model class (never any other object of the ``transformers`` module)."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from pathlib import Path

from ..errors import InputError, did_you_mean, env_int
from .usercode import first_line

MAX_LAYERS_ENV = "FLOPMETER_MAX_LAYERS"
DEFAULT_MAX_LAYERS = 1000      # the largest published models have ~130; building a layer takes milliseconds

_POSITIVE = re.compile(r"^(n_(head|embd|positions|ctx)|d_(model|ff|kv)|.*_heads|hidden_size|intermediate_size|"
                       r"vocab_size|image_size|patch_size|num_channels|max_position_embeddings|head_dim)$")
# layer counts: one number (n_layer, num_hidden_layers, encoder_layers; a list under such a name
# lists layer indices or kinds, not counts) …
_LAYERS = re.compile(r"^(n_layers?|.*_layers)$")
# … or per-stage counts (Swin's and ConvNeXt's depths, Funnel's block_sizes), whose sum is the number of layers
_STAGES = re.compile(r"^(depths?|.*_depths?|block_sizes|block_repeats)$")


def max_layers() -> int:
    return env_int(MAX_LAYERS_ENV, DEFAULT_MAX_LAYERS, "layers", 2000)


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
    for sub in _objects(raw):            # the config and its sub-configs (text_config, vision_config, …)
        for key, value in sub.items():
            if _POSITIVE.match(key) and _int(value) and value <= 0:
                raise InputError(f"{path}: '{key}' must be positive, got {value}",
                                 hint=f"fix '{key}' in the config")
            if _STAGES.match(key) or _LAYERS.match(key) and not isinstance(value, list):
                _check_layers(key, value, path, limit)


def _objects(raw: dict):
    """Every JSON object in the config, outermost first (no recursion: a file can nest deeply)."""
    stack = [raw]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            yield value
            stack.extend(v for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            stack.extend(v for v in value if isinstance(v, (dict, list)))


def _check_layers(key: str, value, path: Path, limit: int) -> None:
    """A layer count (a number, or a list of per-stage numbers) that is whole, not negative,
    and at most ``limit`` in all."""
    counts = value if isinstance(value, list) else [value]
    if any(isinstance(c, float) for c in counts) or isinstance(value, list) and not all(_int(c) for c in counts):
        raise InputError(f"{path}: '{key}' must be a whole number of layers{' per stage' * isinstance(value, list)}, "
                         f"got {json_text(value)}", hint=f"fix '{key}' in the config")
    counts = [c for c in counts if _int(c)]       # other kinds of value: transformers' own checks decide
    total = sum(counts)
    if any(c < 0 for c in counts):
        raise InputError(f"{path}: '{key}' must not be negative, got {json_text(value)}",
                         hint=f"fix '{key}' in the config")
    if total > limit:
        shown = f"{total:,}" if total < 10**18 else "more than 10^18"
        raise InputError(
            f"{path} asks for {shown} layers ('{key}'), more than the {limit:,} flopmeter builds "
            "without asking (building and counting takes milliseconds per layer)",
            hint=f"to count it anyway, set {MAX_LAYERS_ENV}={total if total < 10**18 else 'N'} in the environment")


def json_text(value, width: int = 60) -> str:
    """A config value as JSON, cut to ``width`` characters (a value from a file can be huge)."""
    text = json.dumps(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def config_error(exc: Exception, model_type: str, path: Path, transformers) -> InputError:
    known = list(transformers.CONFIG_MAPPING.keys())
    if model_type not in known:
        return InputError(f"{path}: unknown model_type '{model_type}' ({len(known)} types are known to "
                          f"transformers {transformers.__version__})",
                          hint=did_you_mean(model_type, known, n=3, otherwise="check the spelling of 'model_type'"))
    cause = _innermost(exc)
    return InputError(f"transformers cannot build a '{model_type}' config from {path}: {type(cause).__name__}: "
                      f"{first_line(cause)[:300]}", hint=_value_hint(cause))


def _innermost(exc: BaseException) -> BaseException:
    """The error under transformers' validation wrappers (huggingface_hub's StrictDataclass…Error
    says only which field or check failed; its cause says why)."""
    for _ in range(8):
        if exc.__cause__ is None:
            break
        exc = exc.__cause__
    return exc


def _value_hint(exc: BaseException) -> str:
    text = str(exc)
    if "multiple" in text or "divisible" in text:
        return "make hidden_size a multiple of num_attention_heads (and of the key/value heads)"
    field = re.search(r"Field '(\w+)' expected (\w+)", text)
    if field:
        return f"write '{field[1]}' as a JSON {_JSON_TYPES.get(field[2], field[2])} in the config"
    return "check the config's keys and values"


_JSON_TYPES = {"int": "whole number", "float": "number", "str": "string", "bool": "true or false",
               "list": "list", "dict": "object"}


@contextlib.contextmanager
def quiet_transformers():
    """transformers' logger silenced while it checks a config and builds a model (its warnings
    about the config's values become flopmeter's one error, or are of no use to a count);
    its level is put back afterwards."""
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


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
    cause = _innermost(exc)
    hint = _value_hint(cause)
    return InputError(f"transformers cannot build the model of {path}: {type(cause).__name__}: {first_line(cause)[:300]}",
                      hint=hint if hint != "check the config's keys and values" else
                      "check the config's values: sizes and head counts positive, hidden_size divisible by "
                      "num_attention_heads")
