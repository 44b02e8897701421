"""Check a ``.pt2`` archive before ``torch.export.load`` reads it.

``torch.export.load`` unpickles, with ``weights_only=False``, every weight or constant the
archive marks ``use_pickle``, the archive's custom and opaque objects, and its sample inputs
when they do not load with ``weights_only=True``; it also loads the compiled libraries of an
AOTInductor package. Any of these runs code from the file. So an archive is opened as a zip
first and every member is checked against what a plain ``torch.export.save`` of an ordinary
model writes: JSON, raw tensor bytes, and sample inputs that ``weights_only=True`` accepts.
Anything else is refused unless the user trusts the file (``--trust-pickle``).
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path

import torch

from ..errors import InputError

_PLAIN = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_TRUST_HINT = "if you trust this file, add --trust-pickle (loading it may run code from it)"
_AGAIN = "write the archive again with torch.export.save"
# torch.export.save stores members uncompressed, so their declared sizes add up to about the file's
# size; 20 times the file leaves room for compressed metadata and stops a zip bomb before it inflates
MAX_INFLATION = 20
MAX_MEMBERS = 100_000          # one member per weight and constant: a 6,000-layer stack has some 50,000
# the JSON and sample-input members read here: example inputs of a few MB, metadata of a few KB per op
MAX_READ = 256 << 20


def _refuse(file: Path, why: str) -> InputError:
    return InputError(f"{file.name} {why}; loading it would run code from the file", hint=_TRUST_HINT)


def _config(z: zipfile.ZipFile, name: str, file: Path) -> dict:
    try:
        data = json.loads(_read(z, name, file))
        config = data["config"]
        if not isinstance(config, dict):
            raise TypeError
        return config
    except (ValueError, KeyError, TypeError, RecursionError):
        raise InputError(f"{file.name} has an unreadable {name}",
                         hint="write the archive again with torch.export.save") from None


def check_pt2(file: Path, trust_pickle: bool = False) -> None:
    """Raise InputError unless ``file`` is a zip archive that ``torch.export.load`` can read
    without unpickling or loading compiled code (no check when ``trust_pickle``)."""
    try:
        z = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError) as exc:
        why = "is empty" if file.stat().st_size == 0 else "is not a zip archive"
        raise InputError(f"{file.name} {why}, so it is not a torch.export program ({type(exc).__name__})",
                         hint="write one with torch.export.save(torch.export.export(model, inputs), 'model.pt2')") from None
    with z:
        _check_sizes(z, file)          # trusted or not: a bomb is no less a bomb
        if trust_pickle:
            return
        names = z.namelist()
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1 or not all("/" in n for n in names):
            raise _refuse(file, "is not laid out as torch.export.save writes archives")
        root = roots.pop() + "/"
        members = {n[len(root):]: n for n in names if not n.endswith("/")}
        if "archive_version" not in members or not any(m.startswith("models/") for m in members):
            raise _refuse(file, "is an older or unknown archive format whose contents cannot be checked")
        raw: set[str] = set()
        for folder in ("weights", "constants"):
            for m in members:
                if m.startswith(f"data/{folder}/") and m.endswith("_config.json"):
                    for fqn, meta in _config(z, members[m], file).items():
                        if not isinstance(meta, dict) or meta.get("use_pickle", True):
                            raise _refuse(file, f"stores {folder[:-1]} '{fqn}' as a pickle")
                        path = str(meta.get("path_name", ""))
                        if folder == "constants" and not path.startswith("tensor_"):
                            raise _refuse(file, f"stores constant '{fqn}' as a pickled object")
                        raw.add(f"data/{folder}/{path}")
        for m, name in members.items():
            if m in _PLAIN or m in raw or m.startswith("extra/"):
                continue
            if (m.startswith("models/") or m.startswith("data/")) and m.endswith(".json"):
                continue
            if m.startswith("data/sample_inputs/"):
                _check_sample_inputs(_read(z, name, file), file)
                continue
            raise _refuse(file, f"holds '{m}', which is not plain data (pickled objects or compiled code)")


def _check_sizes(z: zipfile.ZipFile, file: Path) -> None:
    """Refuse, from the zip directory alone, an archive whose members declare more bytes than
    the file can hold: torch.export.load allocates each member's declared size before reading."""
    infos = z.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InputError(f"{file.name} has {len(infos):,} members, more than the {MAX_MEMBERS:,} of any exported "
                         "program", hint=_AGAIN)
    size = file.stat().st_size
    declared = sum(i.file_size for i in infos)
    stored_too_large = [i for i in infos if i.compress_type == zipfile.ZIP_STORED and i.file_size > size]
    if stored_too_large or declared > MAX_INFLATION * size:
        name = (stored_too_large or [max(infos, key=lambda i: i.file_size)])[0].filename
        raise InputError(f"{file.name} declares {declared:,} bytes of contents in {size:,} bytes of file "
                         f"('{name[:80]}' and others); torch.export.save writes no such archive", hint=_AGAIN)


def _read(z: zipfile.ZipFile, name: str, file: Path) -> bytes:
    """A member's bytes, read up to MAX_READ (zipfile also stops at the declared size)."""
    try:
        with z.open(name) as f:
            data = f.read(MAX_READ + 1)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:      # a damaged member
        raise InputError(f"{file.name}: cannot read '{name[:80]}': {type(exc).__name__}: {str(exc)[:200]}",
                         hint=_AGAIN) from None
    if len(data) > MAX_READ:
        raise InputError(f"{file.name}: '{name[:80]}' holds more than {MAX_READ:,} bytes, more than the metadata "
                         "or sample inputs of an exported program", hint=_AGAIN)
    return data


def _check_sample_inputs(data: bytes, file: Path) -> None:
    if not data:
        return
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception:  # noqa: BLE001  (any refusal of the safe unpickler)
        raise _refuse(file, "has sample inputs that are not plain tensors") from None


def module_tree(program) -> torch.nn.Module:
    """The program as a module tree: ``torch.export.unflatten`` rebuilds the exported model's
    submodules from the ``nn_module_stack`` metadata torch.export keeps on each node, so each op
    runs inside the submodule it came from; each rebuilt module is shown under its original
    class name (read from the same metadata). A program that cannot be unflattened runs flat."""
    try:
        tree = torch.export.unflatten(program)
    except Exception:  # noqa: BLE001  (unflatten refuses some programs; the flat module still counts)
        return program.module()
    names: dict[str, str] = {}
    for node in program.graph.nodes:
        for value in (node.meta.get("nn_module_stack") or {}).values():
            path, kind = value
            names.setdefault(_plain_path(path), _class_name(kind))
    classes: dict[tuple[type, str], type] = {}
    for path, module in tree.named_modules():
        name = names.get(path)
        if name and name != type(module).__name__:
            key = (type(module), name)
            if key not in classes:          # one stand-in class per original class: same-type layers stay alike
                classes[key] = type(name, (type(module),), {"__module__": type(module).__module__})
            module.__class__ = classes[key]
    return tree


def _plain_path(path: str) -> str:
    """'features.0' as is; older torch.export writes "L['self'].features[0]" or 'L__self___features_0'."""
    if path.startswith("L['self']"):
        path = path[len("L['self']"):].lstrip(".")
        return path.replace("[", ".").replace("]", "").replace("..", ".")
    return path


def _class_name(kind) -> str:
    return kind.__name__ if isinstance(kind, type) else str(kind).rsplit(".", 1)[-1]
