"""What a checkpoint header says: its tensors (name, shape, format, bytes, file, offset) and totals.

- A :class:`Checkpoint` holds each tensor's bytes once: names whose data is the same bytes
  of one file (the same data offsets) are one :class:`TensorEntry` with ``aliases``.
- Reads are bounded: :class:`HeaderFile` reads only ranges inside the file, never more than
  a stated limit, and counts every byte it reads (``Checkpoint.bytes_read``).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import InputError
from .formats import Format

_LAYER = re.compile(r"^(.*?\.\d+)(\.|$)")       # "model.layers.7.mlp.up_proj.weight" → "model.layers.7"


def layer_group(name: str) -> str:
    """The layer a tensor belongs to: its name up to the first numbered part (``model.layers.7``,
    ``blk.7``), else the module that holds it (``model.embed_tokens``, ``lm_head``)."""
    m = _LAYER.match(name)
    if m:
        return m.group(1)
    return name.rpartition(".")[0] or name


@dataclass(frozen=True)
class TensorEntry:
    name: str
    shape: tuple[int, ...]              # PyTorch's order (GGUF's innermost-first dimensions reversed)
    format: Format
    nbytes: int                         # bytes of its data in the file
    file: str                           # the file that holds it
    offset: int | None                  # absolute offset of its data in that file (None: not known)
    aliases: tuple[str, ...] = ()       # other names of the same bytes (tied tensors)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def dtype(self) -> str:
        """The format's label: ``bfloat16``, ``Q4_K``."""
        return self.format.label

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "format": self.format.label, "params": self.numel,
                "bytes": self.nbytes, "file": os.path.basename(self.file), "offset": self.offset,
                "aliases": list(self.aliases)}


@dataclass
class Checkpoint:
    path: str                           # what was read: a file, an index or a folder
    kind: str                           # "safetensors", "gguf" or "pytorch"
    files: list[str]
    tensors: list[TensorEntry]          # unique tensors, in the order the headers list them
    metadata: dict = field(default_factory=dict)   # __metadata__ / GGUF's scalar keys (short values only)
    bytes_read: int | None = 0          # bytes read from disk to know all this (None: torch.load's, not counted)
    file_bytes: int = 0                 # the files' sizes together
    notes: list[str] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(t.numel for t in self.tensors)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def tensor(self, name: str) -> TensorEntry | None:
        return self.names().get(name)

    def names(self) -> dict[str, TensorEntry]:
        """Every name, aliases included, → its tensor."""
        out = {}
        for t in self.tensors:
            out[t.name] = t
            for a in t.aliases:
                out[a] = t
        return out

    def by_format(self) -> dict[str, tuple[int, int]]:
        """Format label → (parameters, bytes), unique tensors."""
        return _totals(self.tensors, lambda t: t.format.label)

    def by_layer(self) -> dict[str, tuple[int, int]]:
        """Layer group (``model.layers.7``, ``lm_head``) → (parameters, bytes), in header order."""
        return _totals(self.tensors, lambda t: layer_group(t.name))

    def by_file(self) -> dict[str, tuple[int, int]]:
        return _totals(self.tensors, lambda t: os.path.basename(t.file))

    def to_dict(self) -> dict:
        return {"path": self.path, "kind": self.kind, "files": [os.path.basename(f) for f in self.files],
                "tensors": [t.to_dict() for t in self.tensors], "params": self.params, "bytes": self.nbytes,
                "by_format": {k: {"params": p, "bytes": b} for k, (p, b) in self.by_format().items()},
                "bytes_read": self.bytes_read, "file_bytes": self.file_bytes, "notes": list(self.notes)}


def _totals(tensors, key) -> dict[str, tuple[int, int]]:
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for t in tensors:
        row = out[key(t)]
        row[0] += t.numel
        row[1] += t.nbytes
    return {k: (p, b) for k, (p, b) in out.items()}


DAMAGED = "the file is damaged or was not written by a {} writer; write it again"


class HeaderFile:
    """A file read by bounded ranges: every read lies inside the file and counts its bytes."""

    def __init__(self, path: str | Path, kind: str):
        self.path = str(path)
        self.name = os.path.basename(self.path)
        self.kind = kind
        try:
            self.file = open(self.path, "rb")        # noqa: SIM115  (closed by close() / the with block)
            self.size = os.fstat(self.file.fileno()).st_size
        except OSError as exc:
            raise InputError(f"cannot read {self.name}: {exc.strerror or exc}", hint="check the path and its permissions") \
                from None
        self.bytes_read = 0

    def fail(self, what: str, hint: str | None = None) -> InputError:
        return InputError(f"{self.name}: {what}", hint=hint or DAMAGED.format(self.kind))

    def read(self, offset: int, n: int, what: str) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise self.fail(f"{what} declares {n:,} bytes at offset {offset:,}, past the end of the "
                            f"{self.size:,}-byte file")
        self.file.seek(offset)
        data = self.file.read(n)
        self.bytes_read += len(data)
        if len(data) != n:
            raise self.fail(f"{what}: the file ended after {len(data):,} of {n:,} bytes")
        return data

    def close(self) -> None:
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass(frozen=True)
class Span:
    """A tensor as one header lists it, before tied names are merged: its data at [begin, end)."""

    name: str
    shape: tuple[int, ...]
    format: Format
    begin: int                          # absolute offsets in the file
    end: int


def merge_ties(spans: list[Span], file: HeaderFile) -> list[TensorEntry]:
    """One entry per distinct data range; names on the same range (same shape and format) are
    tied; a range that partly overlaps another is refused (no writer makes one)."""
    order = sorted(range(len(spans)), key=lambda i: (spans[i].begin, spans[i].end))
    owner: dict[int, int] = {}           # span index → the index of the span whose entry holds it
    last = None                          # the last non-empty span, by position
    for i in order:
        s = spans[i]
        if s.begin == s.end:
            owner[i] = i
            continue
        if last is not None and s.begin < spans[last].end:
            prev = spans[last]
            if (s.begin, s.end, s.shape, s.format) == (prev.begin, prev.end, prev.shape, prev.format):
                owner[i] = owner[last]
                continue
            raise file.fail(f"tensors '{prev.name[:80]}' (bytes {prev.begin:,}–{prev.end:,}) and '{s.name[:80]}' "
                            f"(bytes {s.begin:,}–{s.end:,}) overlap")
        owner[i] = i
        last = i
    aliases: dict[int, list[str]] = defaultdict(list)
    for i, o in owner.items():
        if o != i:
            aliases[o].append(spans[i].name)
    return [TensorEntry(s.name, s.shape, s.format, s.end - s.begin, file.path, s.begin, tuple(aliases.get(i, ())))
            for i, s in enumerate(spans) if owner[i] == i]


__all__ = ["Checkpoint", "HeaderFile", "Span", "TensorEntry", "layer_group", "merge_ties"]
