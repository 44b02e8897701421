"""Storage formats of checkpoint tensors: plain dtypes and block-quantized types.

- A :class:`Format` stores ``block_size`` weights in ``block_bytes`` bytes: 1 weight in 2
  bytes for ``BF16``; 32 weights in 18 bytes for GGUF's ``Q4_0`` (an fp16 scale and 16 bytes
  of 4-bit values); 2 weights in 1 byte for safetensors' packed ``F4``.
- safetensors' dtypes are the table below (the format's own list).
- GGUF's types and their block layouts come from the ``gguf`` package
  (``gguf.GGMLQuantizationType`` and ``gguf.GGML_QUANT_SIZES``), not from a copy kept here,
  so a type the package learns is known here too.
- A format's ``label`` is the torch dtype's name where one exists (``bfloat16``, as every
  flopmeter report names dtypes) and the format's own name otherwise (``Q4_K``, ``F4``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch

from ...errors import InputError, MissingDependencyError, did_you_mean


@dataclass(frozen=True)
class Format:
    name: str                          # as the file names it: "BF16", "F8_E4M3", "Q4_K"
    block_size: int                    # weights per block (1 for a plain dtype)
    block_bytes: int                   # bytes per block
    dtype: torch.dtype | None = None   # the torch dtype that holds it unpacked, where one exists
    quantized: bool = False            # blocks of several weights with their scales

    @property
    def label(self) -> str:
        return str(self.dtype).removeprefix("torch.") if self.dtype is not None else self.name

    @property
    def bytes_per_param(self) -> Fraction:
        """Exact bytes per weight: 2 for BF16, 18/32 = 9/16 for Q4_0, 144/256 = 9/16 for Q4_K."""
        return Fraction(self.block_bytes, self.block_size)

    @property
    def is_floating_point(self) -> bool:
        return self.dtype is not None and self.dtype.is_floating_point

    @property
    def itemsize(self) -> float:
        return float(self.bytes_per_param)

    def nbytes(self, numel: int) -> int:
        """Bytes of ``numel`` weights; ``numel`` must fill whole blocks (see :func:`check_blocks`)."""
        return numel // self.block_size * self.block_bytes

    def __str__(self) -> str:
        return self.label


def _plain(name: str, nbytes: int, dtype) -> Format:
    return Format(name, 1, nbytes, dtype)


# safetensors' dtypes (the format's specification); F4 packs two weights a byte, F6 four in three bytes
SAFETENSORS = {f.name: f for f in (
    _plain("BOOL", 1, torch.bool), _plain("U8", 1, torch.uint8), _plain("I8", 1, torch.int8),
    _plain("I16", 2, torch.int16), _plain("U16", 2, torch.uint16), _plain("F16", 2, torch.float16),
    _plain("BF16", 2, torch.bfloat16), _plain("I32", 4, torch.int32), _plain("U32", 4, torch.uint32),
    _plain("F32", 4, torch.float32), _plain("F64", 8, torch.float64), _plain("I64", 8, torch.int64),
    _plain("U64", 8, torch.uint64), _plain("C64", 8, torch.complex64),
    _plain("F8_E4M3", 1, torch.float8_e4m3fn), _plain("F8_E5M2", 1, torch.float8_e5m2),
    _plain("F8_E4M3FNUZ", 1, torch.float8_e4m3fnuz), _plain("F8_E5M2FNUZ", 1, torch.float8_e5m2fnuz),
    _plain("F8_E8M0", 1, getattr(torch, "float8_e8m0fnu", None)),
    Format("F4", 2, 1), Format("F6_E2M3", 4, 3), Format("F6_E3M2", 4, 3),
)}

# GGUF's plain types as torch dtypes (the others are block-quantized)
_GGUF_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
                "I8": torch.int8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64}


def gguf_module():
    try:
        import gguf
    except ImportError:
        raise MissingDependencyError("gguf", "checkpoints") from None
    return gguf


def gguf_format(type_id: int, tensor: str = "") -> Format:
    """The Format of GGUF tensor type ``type_id``, from the gguf package's tables."""
    gguf = gguf_module()
    try:
        qtype = gguf.GGMLQuantizationType(type_id)
        block_size, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    except (ValueError, KeyError):
        known = ", ".join(t.name for t in gguf.GGMLQuantizationType)
        raise InputError(f"unknown GGUF tensor type {type_id}" + (f" for tensor '{tensor[:80]}'" if tensor else ""),
                         hint=f"the installed gguf package knows {known}; a newer one may know this type "
                              "(pip install -U gguf)") from None
    return Format(qtype.name, block_size, block_bytes, _GGUF_DTYPES.get(qtype.name), quantized=block_size > 1)


def gguf_formats() -> dict[str, Format]:
    """Every GGUF type the installed gguf package knows, by name."""
    gguf = gguf_module()
    return {t.name: gguf_format(t.value) for t in gguf.GGMLQuantizationType if t in gguf.GGML_QUANT_SIZES}


def get_format(name: str) -> Format:
    """A format by the name a file writes (``BF16``, ``F8_E4M3``, ``Q4_K``) or its label (``bfloat16``)."""
    if isinstance(name, Format):
        return name
    key = str(name).upper()
    if key in SAFETENSORS:
        return SAFETENSORS[key]
    by_label = {f.label: f for f in SAFETENSORS.values()}
    if str(name) in by_label:
        return by_label[str(name)]
    formats = gguf_formats()
    if key in formats:
        return formats[key]
    raise InputError(f"unknown checkpoint format '{name}'",
                     hint=did_you_mean(key, [*SAFETENSORS, *formats],
                                       otherwise=f"one of: {', '.join([*SAFETENSORS, *formats])}"))


def bytes_per_param(name: str | Format) -> Fraction:
    """Exact bytes per weight of a format: ``bytes_per_param("Q4_K") == Fraction(9, 16)`` (144
    bytes per block of 256), ``bytes_per_param("BF16") == 2``. GGUF names need the gguf package."""
    return get_format(name).bytes_per_param


def check_blocks(fmt: Format, shape: tuple[int, ...], row: int, what: str) -> None:
    """A block-quantized tensor fills whole blocks along its rows (``row``: the row length)."""
    if fmt.block_size > 1 and (row % fmt.block_size if fmt.quantized else _numel(shape) % fmt.block_size):
        size = row if fmt.quantized else _numel(shape)
        raise InputError(f"{what} has {fmt.name} rows of {size} weights, not a multiple of its block of "
                         f"{fmt.block_size}", hint="the header is damaged or was not written by a GGUF/safetensors "
                                                    "writer; write the file again")


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


__all__ = ["SAFETENSORS", "Format", "bytes_per_param", "check_blocks", "get_format", "gguf_format", "gguf_formats"]
