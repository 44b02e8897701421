"""safetensors headers, parsed here with strict bounds (no tensor data is read).

The format: 8 bytes, a little-endian ``u64`` N; N bytes of JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``;
then the data, offsets counted from its start. The ``safetensors`` package parses headers in
Rust but hands back neither data offsets (needed to find tied names, to say where a tensor
lies) nor errors that say which field is wrong, and it refuses tied names outright; so the
header is read here: one read of 8 bytes, one of N (at most :data:`MAX_HEADER`), checked field
by field. A sharded checkpoint's ``model.safetensors.index.json`` names the shard of each
tensor; every shard's header is read and checked against it.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from ...errors import InputError
from .formats import SAFETENSORS, check_blocks
from .model import Checkpoint, HeaderFile, Span, TensorEntry, merge_ties

MAX_HEADER = 100 * 2**20        # the safetensors library's own limit on a header (100 MB)
MAX_INDEX = 64 * 2**20          # an index.json: names and file names only
MAX_DIMS = 64


def _pairs(file: HeaderFile):
    def hook(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise file.fail(f"the header names '{dup[:80]}' twice")
        return dict(pairs)
    return hook


def _json(data: bytes, file: HeaderFile, what: str):
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_pairs(file))
    except InputError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise file.fail(f"{what} is not JSON ({type(exc).__name__}: {str(exc)[:80]})") from None


def read_spans(file: HeaderFile) -> tuple[list[Span], dict]:
    """The tensors one safetensors file lists (absolute offsets) and its ``__metadata__``."""
    if file.size < 8:
        raise file.fail(f"{file.size} bytes is too short for a safetensors file (8 bytes of header length first)")
    (n,) = struct.unpack("<Q", file.read(0, 8, "the header length"))
    if n > MAX_HEADER:
        raise file.fail(f"the header declares {n:,} bytes, more than safetensors allows ({MAX_HEADER:,})",
                        hint="this is not a safetensors file, or its first 8 bytes are damaged")
    if 8 + n > file.size:
        raise file.fail(f"the header declares {n:,} bytes, past the end of the {file.size:,}-byte file")
    header = _json(file.read(8, n, "the header"), file, "the header")
    if not isinstance(header, dict):
        raise file.fail(f"the header is a JSON {type(header).__name__}, not an object of tensors")
    start, data = 8 + n, file.size - 8 - n
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise file.fail("__metadata__ is not an object of strings")
    spans = [_span(name, info, file, start, data) for name, info in header.items()]
    return spans, {str(k): str(v)[:200] for k, v in list(metadata.items())[:64]}


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _span(name: str, info, file: HeaderFile, start: int, data: int) -> Span:
    what = f"tensor '{name[:80]}'"
    if not isinstance(info, dict):
        raise file.fail(f"{what} is not an object with dtype, shape and data_offsets")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    fmt = SAFETENSORS.get(dtype) if isinstance(dtype, str) else None
    if fmt is None:
        raise file.fail(f"{what} has dtype {str(dtype)[:40]!r}, which safetensors does not define",
                        hint=f"safetensors dtypes: {', '.join(SAFETENSORS)}")
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(_int(s) and s < 2**63 for s in shape)):
        raise file.fail(f"{what} has shape {str(shape)[:60]}, not a list of sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_int(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise file.fail(f"{what} has data_offsets {str(offsets)[:60]}, not [begin, end]")
    begin, end = offsets
    if end > data:
        raise file.fail(f"{what} ends at data offset {end:,}, past the {data:,} bytes of data the file holds",
                        hint="the file is truncated or its header is damaged; download or write it again")
    shape = tuple(shape)
    check_blocks(fmt, shape, shape[-1] if shape else 1, what)
    numel = 1
    for s in shape:
        numel *= s
    if fmt.nbytes(numel) != end - begin:
        raise file.fail(f"{what} is {fmt.name}{list(shape)}, {fmt.nbytes(numel):,} bytes, but its data_offsets "
                        f"span {end - begin:,} bytes")
    return Span(name, shape, fmt, start + begin, start + end)


def read_file(path: str | Path) -> Checkpoint:
    with HeaderFile(path, "safetensors") as file:
        spans, metadata = read_spans(file)
        tensors = merge_ties(spans, file)
        return Checkpoint(str(path), "safetensors", [file.path], tensors, metadata, file.bytes_read, file.size)


def read_index(path: str | Path) -> Checkpoint:
    """A sharded checkpoint: its index, then every shard it names."""
    index = HeaderFile(path, "safetensors index")
    with index:
        if index.size > MAX_INDEX:
            raise index.fail(f"{index.size:,} bytes is more than an index of tensor names needs (at most {MAX_INDEX:,})",
                             hint="give the index.json that the checkpoint's writer saved")
        raw = _json(index.read(0, index.size, "the index"), index, "the index")
    weight_map = raw.get("weight_map") if isinstance(raw, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise index.fail("has no weight_map of tensor name → shard file",
                         hint="give a model.safetensors.index.json, as save_pretrained writes it")
    folder = Path(path).parent
    shards: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        shards.setdefault(shard, []).append(name)
    for shard in shards:
        if os.path.basename(shard) != shard or shard in ("", ".", ".."):
            raise index.fail(f"names shard '{shard[:80]}', which is not a file beside the index",
                             hint="an index names its shards by file name, in its own folder")
    missing = [s for s in shards if not (folder / s).is_file()]
    if missing:
        raise index.fail(f"names {len(missing)} shard(s) that are not in {folder}: {', '.join(missing[:3])}"
                         + (", …" if len(missing) > 3 else ""),
                         hint="download every shard the index names, or give one .safetensors file")
    tensors: list[TensorEntry] = []
    metadata, read, size, notes = {}, index.bytes_read, index.size, []
    seen: dict[str, str] = {}
    unlisted = 0
    for shard, names in shards.items():
        part = read_file(folder / shard)
        read, size = read + part.bytes_read, size + part.file_bytes
        held = part.names()
        absent = [n for n in names if n not in held]
        if absent:
            raise index.fail(f"says shard {shard} holds '{absent[0][:80]}'" + (f" (and {len(absent) - 1} more)"
                             if len(absent) > 1 else "") + ", and that shard's header does not list it",
                             hint="the index and its shards are from different saves; download them again")
        for t in part.tensors:
            for n in (t.name, *t.aliases):
                if n in seen:
                    raise index.fail(f"tensor '{n[:80]}' is in two shards, {seen[n]} and {shard}")
                seen[n] = shard
                unlisted += n not in weight_map
        tensors.extend(part.tensors)
        metadata = metadata or part.metadata
    if unlisted:
        notes.append(f"{unlisted} tensor(s) in the shards are not in the index's weight_map (counted)")
    return Checkpoint(str(path), "safetensors", [str(folder / s) for s in shards], tensors, metadata, read, size, notes)


__all__ = ["MAX_HEADER", "read_file", "read_index", "read_spans"]
