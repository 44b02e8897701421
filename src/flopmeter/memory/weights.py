"""Weight memory by format: the bytes of a model's parameters and buffers as stored, and as
they would be in another format.

Formats (``--weights NAME`` on the command line; ``NAME:G`` sets a group size G):

- ``stored``: every tensor in its own dtype (tied tensors once);
- cast formats ``float32``, ``bfloat16``, ``float16``: every floating-point parameter and
  buffer at 4 or 2 bytes; integer and bool tensors stay as stored;
- quantised formats ``float8``, ``int8`` (8 bits) and ``int4`` (4 bits, two to a byte):
  parameters of two or more dimensions (linear and convolution weights, embeddings) are
  quantised; the other floating-point tensors (biases, norm weights, buffers) are kept in
  16 bits, as deployed quantised checkpoints keep them; integer tensors stay as stored.
  A quantised tensor is seen as ``rows = shape[0]`` rows of ``cols = numel / rows`` values
  (a linear weight's output rows along its inputs; a convolution's output channels along
  ``C_in·∏K``); a row packs into ``⌈cols · bits / 8⌉`` bytes. With a group size G (default
  128 for ``int4``, none for the 8-bit formats) each row also carries ``⌈cols / G⌉`` scales
  of 16 bits (fp16), as GPTQ/AWQ-style group quantisation stores them. Zero points and
  per-tensor scalars are not counted.
- GGUF tensor types by name (``q4_0``, ``q4_k``, ``q6_k``, ``q8_0``, … — the ``gguf`` package's
  block layouts, the ``checkpoints`` extra): parameters of two or more dimensions are stored in
  blocks of that type along their rows (a row of ``cols`` values takes ``⌈cols / block⌉``
  blocks; Q4_0 is 18 bytes per 32 values, Q4_K 144 per 256), scales inside the blocks; the
  other floating-point tensors are kept in 32 bits, as llama.cpp writes norms and biases.
  A file type such as ``Q4_K_M`` mixes tensor types: count the ``.gguf`` file for its bytes.
- ``nf4``: bitsandbytes' 4-bit NormalFloat (QLoRA's base weights): 4 bits a value and one
  float32 absmax per block of 64 values (``BitsAndBytesConfig``'s defaults: blocks of 64, no
  double quantisation), the same row layout as ``int4``.

:func:`weight_bytes` takes ``only`` (tensor names) to put just those tensors in the format and
keep every other tensor as stored — QLoRA quantises the frozen base ``Linear`` weights and
keeps the adapters, embeddings, head and norms in their own dtype.

The input is a list of :class:`WeightTensor` (name, shape, dtype, role): from the model
(:func:`tensors_of_model`) or from a trace's parameter table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..errors import OptionsError, did_you_mean


@dataclass(frozen=True)
class WeightTensor:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    role: str                      # "parameter" or "buffer"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


@dataclass(frozen=True)
class WeightFormat:
    name: str
    bits: int | None               # None: as stored
    quantised: bool = False        # only ≥2-D parameters change; other floats kept in 16 bits
    group_size: int | None = None  # values per fp16 scale along a row (quantised formats)
    scale_bits: int = 16
    block: tuple[int, int] | None = None   # GGUF types: (values per block, bytes per block), scales inside

    @property
    def label(self) -> str:
        if self.bits is None:
            return "as stored"
        if self.block:
            return (f"{self.name} (GGUF blocks of {self.block[0]} values in {self.block[1]} bytes for ≥2-D parameters; "
                    "other floats 32-bit)")
        text = self.name
        if self.name == "nf4":
            text += f" (4-bit NormalFloat, float32 absmax per {self.group_size} values)"
        elif self.quantised:
            text += f" ({self.bits}-bit ≥2-D parameters"
            text += f", fp{self.scale_bits} scale per {self.group_size} values" if self.group_size else ", no scales"
            text += "; other floats 16-bit)"
        return text


_BASE = {
    "stored": WeightFormat("stored", None),
    "float32": WeightFormat("float32", 32),
    "bfloat16": WeightFormat("bfloat16", 16),
    "float16": WeightFormat("float16", 16),
    "float8": WeightFormat("float8", 8, quantised=True),
    "int8": WeightFormat("int8", 8, quantised=True),
    "int4": WeightFormat("int4", 4, quantised=True, group_size=128),
    "nf4": WeightFormat("nf4", 4, quantised=True, group_size=64, scale_bits=32),
}
_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16",
            "fp8": "float8", "4bit": "int4", "8bit": "int8", "as-stored": "stored", "normalfloat4": "nf4"}
FORMATS = tuple(_BASE)


def parse_format(text: str) -> WeightFormat:
    """'int4' → int4 with groups of 128; 'int4:64' → groups of 64; 'int8:128' adds group scales."""
    name, sep, group = text.strip().lower().partition(":")
    name = _ALIASES.get(name, name)
    fmt = _BASE.get(name)
    if fmt is None and not sep:
        fmt = _gguf_format(name)
    if fmt is None:
        raise OptionsError(f"unknown weight format '{text}'",
                           hint=did_you_mean(name, [*_BASE, *_ALIASES], otherwise=f"one of: {', '.join(_BASE)}"))
    if sep:
        if not fmt.quantised:
            raise OptionsError(f"'{name}' has no group size", hint="a group size goes with float8, int8 or int4: int4:128")
        try:
            size = int(group)
        except ValueError:
            size = 0
        if size <= 0:
            raise OptionsError(f"bad group size in '{text}'", hint="write it as int4:128 (a positive integer)")
        fmt = WeightFormat(fmt.name, fmt.bits, True, size, fmt.scale_bits)
    return fmt


_GGUF_FILE_TYPES = ("_S", "_M", "_L", "_XS", "_XXS")     # llama.cpp file types: mixes of tensor types


def _gguf_format(name: str) -> WeightFormat | None:
    """A GGUF tensor type as a weight format, from the gguf package's block layouts."""
    key = name.upper()
    if not key.startswith(("Q", "IQ", "TQ", "MXFP")):
        return None
    from ..frontends.checkpoint.formats import gguf_formats

    formats = gguf_formats()                 # needs the gguf package: the error names the extra
    if key in formats and formats[key].quantized:
        f = formats[key]
        return WeightFormat(key, f.block_bytes * 8 // f.block_size or 1, quantised=True, block=(f.block_size, f.block_bytes))
    if key.endswith(_GGUF_FILE_TYPES) and key.rsplit("_", 1)[0] in formats:
        raise OptionsError(f"'{name}' is a llama.cpp file type, a mix of tensor types per layer",
                           hint=f"give one tensor type (e.g. --weights {key.rsplit('_', 1)[0].lower()}), or count "
                                "the .gguf file itself for its exact bytes")
    return None


def tensor_bytes(t: WeightTensor, fmt: WeightFormat) -> tuple[int, int]:
    """(data bytes, scale bytes) of one tensor in ``fmt``."""
    floating = t.dtype.is_floating_point
    if fmt.bits is None or not floating:
        return t.nbytes, 0
    if fmt.block:
        if t.role != "parameter" or len(t.shape) < 2:
            return t.numel * 4, 0                          # llama.cpp keeps norms and biases in F32
        rows = t.shape[0]
        cols = t.numel // rows if rows else 0
        return rows * math.ceil(cols / fmt.block[0]) * fmt.block[1], 0
    if not fmt.quantised:
        return t.numel * fmt.bits // 8, 0
    if t.role != "parameter" or len(t.shape) < 2:
        return t.numel * 2, 0                          # kept in 16 bits
    rows = t.shape[0]
    cols = t.numel // rows if rows else 0
    data = rows * math.ceil(cols * fmt.bits / 8)
    scales = rows * math.ceil(cols / fmt.group_size) * fmt.scale_bits // 8 if fmt.group_size else 0
    return data, scales


@dataclass(frozen=True)
class WeightBytes:
    """Bytes of the weights in one format: parameters and buffers apart, scales included."""

    format: str
    label: str
    params: int                    # parameter bytes, scales included
    buffers: int
    scales: int                    # bytes of quantisation scales (inside params)
    quantised: int = 0             # parameters (elements) stored in the quantised format
    by_tensor: dict = field(default_factory=dict, repr=False)   # name → bytes

    @property
    def total(self) -> int:
        return self.params + self.buffers

    def to_dict(self) -> dict:
        return {"format": self.format, "label": self.label, "params": self.params, "buffers": self.buffers,
                "scales": self.scales, "quantised_elements": self.quantised, "total": self.total}


def weight_bytes(tensors: list[WeightTensor], fmt: WeightFormat | str = "stored", *,
                 only: frozenset[str] | None = None, label: str | None = None) -> WeightBytes:
    """Bytes of ``tensors`` in ``fmt``; with ``only``, just the tensors of those names are in
    ``fmt`` and the rest stay as stored (``label`` then names the mix)."""
    fmt = parse_format(fmt) if isinstance(fmt, str) else fmt
    params = buffers = scales = quantised = 0
    by_tensor = {}
    for t in tensors:
        data, sc = tensor_bytes(t, fmt if only is None or t.name in only else _BASE["stored"])
        by_tensor[t.name] = data + sc
        if t.role == "parameter":
            params += data + sc
            scales += sc
            if fmt.quantised and t.dtype.is_floating_point and len(t.shape) >= 2 and (only is None or t.name in only):
                quantised += t.numel
        else:
            buffers += data
    name = fmt.name if fmt.bits is None or not fmt.group_size else f"{fmt.name}:{fmt.group_size}"
    return WeightBytes(name, label or fmt.label, params, buffers, scales, quantised, by_tensor)


def all_formats(tensors: list[WeightTensor]) -> dict[str, WeightBytes]:
    """Every base format (int4 with its default groups of 128)."""
    return {name: weight_bytes(tensors, fmt) for name, fmt in _BASE.items()}


def tensors_of_model(model: torch.nn.Module) -> list[WeightTensor]:
    """Unique parameters and buffers (tied tensors once, under their first name)."""
    out, seen = [], set()
    for role, named in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in named:
            if id(t) in seen:
                continue
            seen.add(id(t))
            out.append(WeightTensor(name, tuple(int(s) for s in t.shape), t.dtype, role))
    return out


__all__ = ["FORMATS", "WeightBytes", "WeightFormat", "WeightTensor", "all_formats", "parse_format",
           "tensor_bytes", "tensors_of_model", "weight_bytes"]
