"""GGUF headers (llama.cpp's format), read with bounded reads; no tensor data is read.

Layout (little-endian, versions 2 and 3): magic ``GGUF``, version ``u32``, tensor count and
metadata count ``u64``; the metadata (key string, value type ``u32``, value); one info per
tensor (name, ``u32`` dimension count, ``u64`` dimensions innermost first, ``u32`` type,
``u64`` offset); then the data, aligned to ``general.alignment`` (32 by default), offsets
counted from its start. Types, value types and block layouts are the ``gguf`` package's
(:mod:`.formats`). Every count and length is checked against the bytes left in the file before
anything is read or allocated for it; arrays in the metadata (the tokenizer's vocabulary) are
stepped over, keeping only their type and length.
"""

from __future__ import annotations

import struct
from pathlib import Path

from .formats import check_blocks, gguf_format, gguf_module
from .model import Checkpoint, HeaderFile, Span, merge_ties

CHUNK = 1 << 16            # header reads go at most this far past its end (never interpreted)
MAX_HEADER = 1 << 30            # metadata and tensor infos together (a large vocabulary is ~10 MB)
MAX_DIMS = 8                    # ggml has 4; a little room
MAX_NAME = 1 << 16
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9


class Cursor:
    """Reads a GGUF header front to back in chunks; every length is checked against the file first."""

    def __init__(self, file: HeaderFile):
        self.file = file
        self.buf = b""
        self.base = 0          # file offset of buf[0]
        self.pos = 0           # file offset of the next byte

    def need(self, n: int, what: str) -> memoryview:
        if self.pos + n > self.file.size:
            raise self.file.fail(f"{what} declares {n:,} bytes at offset {self.pos:,}, past the end of the "
                                 f"{self.file.size:,}-byte file")
        if self.pos + n > MAX_HEADER:
            raise self.file.fail(f"the header runs past {MAX_HEADER:,} bytes ({what})",
                                 hint="a GGUF header (metadata and tensor infos) is far smaller; the file is damaged")
        end = self.base + len(self.buf)
        if self.pos + n > end:
            keep = self.buf[self.pos - self.base:]
            more = max(n - len(keep), CHUNK)
            more = min(more, self.file.size - end)
            self.buf = keep + self.file.read(end, more, what)
            self.base = self.pos
        start = self.pos - self.base
        self.pos += n
        return memoryview(self.buf)[start:start + n]

    def unpack(self, fmt: str, what: str):
        return struct.unpack(fmt, self.need(struct.calcsize(fmt), what))[0]

    def string(self, what: str, limit: int | None = None) -> str:
        n = self.unpack("<Q", what)
        if limit is not None and n > limit:
            raise self.file.fail(f"{what} declares a string of {n:,} bytes (at most {limit:,} expected)")
        return bytes(self.need(n, what)).decode("utf-8", errors="replace")

    def skip_string(self, what: str) -> None:
        self.need(self.unpack("<Q", what), what)

    def value(self, vtype: int, what: str, depth: int = 0):
        if vtype in SCALARS:
            return self.unpack(SCALARS[vtype], what)
        if vtype == STRING:
            return self.string(what, limit=None)
        if vtype == ARRAY:
            if depth > 2:
                raise self.file.fail(f"{what} nests arrays more than 3 deep")
            item, count = self.unpack("<I", what), self.unpack("<Q", what)
            if item in SCALARS:                      # a block of fixed-size items: checked and stepped over at once
                self.need(count * struct.calcsize(SCALARS[item]), what)
            elif item == STRING:
                if count * 8 > self.file.size - self.pos:
                    raise self.file.fail(f"{what} declares {count:,} strings, more than the file can hold")
                for _ in range(count):
                    self.skip_string(what)
            elif item == ARRAY:
                if count * 12 > self.file.size - self.pos:
                    raise self.file.fail(f"{what} declares {count:,} arrays, more than the file can hold")
                for _ in range(count):
                    self.value(ARRAY, what, depth + 1)
            else:
                raise self.file.fail(f"{what} is an array of unknown value type {item}")
            return ("array", item, count)
        raise self.file.fail(f"{what} has unknown value type {vtype}",
                             hint="the file is damaged, or newer than the installed gguf package (pip install -U gguf)")


def read_file(path: str | Path) -> Checkpoint:
    gguf = gguf_module()
    with HeaderFile(path, "GGUF") as file:
        cur = Cursor(file)
        magic = bytes(cur.need(4, "the magic number")) if file.size >= 4 else b""
        if magic != b"GGUF":
            raise file.fail(f"starts with {magic!r}, not the GGUF magic b'GGUF'", hint="is it a .gguf file?")
        version = cur.unpack("<I", "the version")
        if version not in (2, 3):
            what = "a big-endian file" if version & 0xFFFF == 0 else f"version {version}"
            raise file.fail(f"is {what}; flopmeter reads little-endian GGUF versions 2 and 3",
                            hint="convert it with a current llama.cpp (convert_hf_to_gguf.py, or gguf-py's tools)")
        n_tensors, n_kv = cur.unpack("<Q", "the tensor count"), cur.unpack("<Q", "the metadata count")
        left = file.size - cur.pos
        if n_kv * 12 > left or n_tensors * 24 > left:       # the smallest metadata entry and tensor info
            raise file.fail(f"declares {n_tensors:,} tensors and {n_kv:,} metadata entries, more than its "
                            f"{file.size:,} bytes can hold")
        metadata = {}
        for i in range(n_kv):
            key = cur.string(f"metadata key {i}", limit=MAX_NAME)
            value = cur.value(cur.unpack("<I", f"metadata '{key[:60]}'"), f"metadata '{key[:60]}'")
            if not isinstance(value, tuple) and not (isinstance(value, str) and len(value) > 200):
                metadata[key] = value
        infos = []
        for i in range(n_tensors):
            name = cur.string(f"the name of tensor {i}", limit=MAX_NAME)
            what = f"tensor '{name[:80]}'"
            n_dims = cur.unpack("<I", what)
            if n_dims > MAX_DIMS:
                raise file.fail(f"{what} declares {n_dims} dimensions (ggml has at most 4)")
            dims = [cur.unpack("<Q", what) for _ in range(n_dims)]
            type_id, offset = cur.unpack("<I", what), cur.unpack("<Q", what)
            infos.append((name, dims, type_id, offset))
        alignment = metadata.get(gguf.Keys.General.ALIGNMENT, gguf.GGUF_DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise file.fail(f"general.alignment is {alignment!r}, not a power of two")
        start = -(-cur.pos // alignment) * alignment
        spans = []
        for name, dims, type_id, offset in infos:
            what = f"tensor '{name[:80]}'"
            fmt = gguf_format(type_id, name)
            shape = tuple(reversed(dims))             # PyTorch's order: GGUF lists the innermost dimension first
            check_blocks(fmt, shape, dims[0] if dims else 1, what)
            numel = 1
            for d in dims:
                numel *= d
            nbytes = fmt.nbytes(numel)
            if offset % alignment:
                raise file.fail(f"{what} starts at data offset {offset:,}, not a multiple of the alignment {alignment}")
            if start + offset + nbytes > file.size:
                raise file.fail(f"{what} ({fmt.name}{list(shape)}, {nbytes:,} bytes at data offset {offset:,}) ends "
                                f"past the end of the {file.size:,}-byte file",
                                hint="the file is truncated or its header is damaged; download or write it again")
            spans.append(Span(name, shape, fmt, start + offset, start + offset + nbytes))
        tensors = merge_ties(spans, file)
        return Checkpoint(str(path), "gguf", [file.path], tensors, metadata, file.bytes_read, file.size)


__all__ = ["read_file"]
