"""The one device table: GPUs as data (``devices.json``, each row with its source document) for
the roofline, memory budgets, MFU peaks and sizing; calibrated specs of the machine at hand
(``flopmeter calibrate``, saved in the user's cache directory); and loose name matching.

Each row gives memory (total as the datasheet states it; :func:`usable_memory` subtracts a
stated, overridable reserve), the compute capability (which attention kernels run), the
GPU-to-GPU and host links, and peak dense throughput and bandwidth. A row may hold memory only
(no published compute figures); the roofline refuses such a row by name.

A :class:`DeviceSpec` holds peak throughput of a matrix product by dtype (FLOP/s; OP/s for
int8), the fp32 throughput of the vector units for everything that is not a matrix product,
memory bandwidth (bytes/s) and, for calibrated specs, a per-op launch overhead (s) and the
throughput of other op classes where they differ from a matrix product or from the vector
units (``conv``, ``grouped``, ``depthwise`` convolutions and ``pool``), by dtype.

Names match loosely: case, spaces, ``-`` and ``_`` are ignored, a leading vendor word
(``nvidia``, ``geforce``, ``amd``, ``instinct``, ``tesla``) is dropped, and each row has aliases
(``h100`` is the SXM card, ``a100`` the 80 GB SXM card). ``local`` (or ``local-cpu``,
``local-cuda``) is a calibrated spec; a path to a ``.json`` file is read as one spec.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from .errors import InputError, OptionsError, close_matches

TABLE = Path(__file__).with_name("devices.json")
SPEC_SCHEMA = "flopmeter.device/1"
DTYPE_KEYS = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8")
_VENDOR_WORDS = ("nvidia", "geforce", "amd", "instinct", "tesla")


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    matrix: dict[str, float]              # dtype key → peak FLOP/s of a matrix product
    vector: float                         # FLOP/s of elementwise / reduction arithmetic (fp32)
    bandwidth: float                      # bytes/s of memory traffic
    source: str                           # where the numbers come from
    kind: str = "datasheet"               # "datasheet" or "calibrated"
    memory: float | None = None           # bytes of device memory
    overhead: float = 0.0                 # seconds per executed op (launch / dispatch), calibrated
    threads: int | None = None            # CPU threads the calibration ran with
    url: str | None = None
    aliases: tuple[str, ...] = ()
    classes: dict[str, dict[str, float]] = field(default_factory=dict)   # op class → dtype key → FLOP/s
    extra: dict = field(default_factory=dict)   # calibration details (sizes, raw timings)
    vendor: str | None = None
    compute_capability: tuple[int, int] | None = None   # NVIDIA's (major, minor)
    memory_note: str | None = None        # "80 GB HBM3"
    link: str | None = None               # GPU-to-GPU link ("NVLink 4")
    link_bandwidth: float | None = None   # bytes/s per direction of that link
    pcie_bandwidth: float | None = None   # bytes/s per direction of the host link
    has_compute: bool = True              # False: a row with memory (and links) only

    def require_compute(self, what: str = "a roofline") -> "DeviceSpec":
        """This spec, or an OptionsError when its row publishes no compute or bandwidth figures."""
        if not self.has_compute:
            raise OptionsError(f"{what} needs peak compute and bandwidth, and the device table has none for "
                               f"{self.name} ({self.source.split(';')[-1].strip()})",
                               hint="name a device with published figures (flopmeter devices), or measure one: "
                                    "flopmeter calibrate")
        return self

    def peak(self, key: str, op_class: str = "matmul") -> tuple[float, str]:
        """Peak FLOP/s of op class ``op_class`` in dtype ``key`` and the key actually used: an
        op class without its own figure is a matrix product; a dtype the device has no figure
        for falls back to fp32 (e.g. bf16 on a T4), as its kernels do."""
        self.require_compute()
        own = self.classes.get(op_class, {})
        keys = (key, "fp32") if key == "tf32" else (key,)      # no TF32 figure: TF32 runs at fp32 speed
        for table in (own, self.matrix):
            for k in keys:
                if k in table:
                    return table[k], k
        return self.matrix.get("fp32", self.vector), "fp32"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["aliases"] = list(self.aliases)
        d["compute_capability"] = None if self.compute_capability is None else list(self.compute_capability)
        return {"schema": SPEC_SCHEMA, **d}

    @classmethod
    def from_dict(cls, d: dict, where: str = "device spec") -> "DeviceSpec":
        if d.get("schema") != SPEC_SCHEMA:
            raise InputError(f"{where} is not a flopmeter device spec ({SPEC_SCHEMA})",
                             hint="write one with: flopmeter calibrate")
        hint = "write it again with: flopmeter calibrate"
        try:
            for key in ("name", "matrix", "vector", "bandwidth", "source"):
                if key not in d:
                    raise InputError(f"{where} has no '{key}'", hint=hint)
            if not isinstance(d["matrix"], dict) or not isinstance(d.get("classes", {}), dict) \
                    or not all(isinstance(v, dict) for v in d.get("classes", {}).values()):
                raise InputError(f"{where}: 'matrix' and 'classes' map dtype keys to FLOP/s", hint=hint)
            memory = d.get("memory")
            threads = d.get("threads")
            if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
                raise InputError(f"{where}: 'threads' is {threads!r}, not a thread count", hint=hint)
            return cls(name=str(d["name"]),
                       matrix={str(k): rate(v, f"matrix.{k}", where) for k, v in d["matrix"].items()},
                       vector=rate(d["vector"], "vector", where), bandwidth=rate(d["bandwidth"], "bandwidth", where),
                       source=str(d["source"]), kind=str(d.get("kind", "calibrated")),
                       memory=None if memory is None else rate(memory, "memory", where),
                       overhead=rate(d.get("overhead", 0.0), "overhead", where, zero=True), threads=threads,
                       url=d.get("url"), aliases=tuple(map(str, d.get("aliases", ()))), extra=dict(d.get("extra", {})),
                       classes={str(c): {str(k): rate(v, f"classes.{c}.{k}", where) for k, v in peaks.items()}
                                for c, peaks in d.get("classes", {}).items()})
        except (TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{where} is malformed: {exc}", hint=hint) from None


MAX_RATE = 1e24    # far above any device's FLOP/s, bytes/s or bytes; a larger figure is a typo


def rate(value, field_name: str, where: str, *, zero: bool = False) -> float:
    """A device figure (FLOP/s, bytes/s, bytes or seconds): a finite number above 0 (or from 0)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    number = float(value) if ok and abs(value) <= MAX_RATE else math.nan
    if not (math.isfinite(number) and (number >= 0 if zero else number > 0)):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise InputError(f"{where}: '{field_name}' is {shown}, not a {'non-negative' if zero else 'positive'} "
                         f"number up to {MAX_RATE:g}",
                         hint="device figures are FLOP/s, bytes/s and bytes; 'flopmeter calibrate' writes a spec")
    return number


def dtype_key(dtype: torch.dtype, tf32: bool = False) -> str:
    """torch dtype → the device table's key (float32 is 'tf32' when TF32 matmuls are allowed)."""
    if dtype == torch.float32:
        return "tf32" if tf32 else "fp32"
    if dtype == torch.bfloat16:
        return "bf16"
    if dtype == torch.float16:
        return "fp16"
    if dtype.is_floating_point and dtype.itemsize == 1:
        return "fp8"
    if dtype in (torch.int8, torch.uint8):
        return "int8"
    return "fp32"     # float64, int32/64 and bool: no matrix units; fp32 is the optimistic bound


def normalise(name: str) -> str:
    text = re.sub(r"[\s_\-]+", "", name.strip().lower())
    for word in _VENDOR_WORDS:
        if text.startswith(word) and len(text) > len(word):
            text = text[len(word):]
    return text


@lru_cache(maxsize=1)
def table() -> tuple[DeviceSpec, ...]:
    """The device table, one :class:`DeviceSpec` per row of ``devices.json``."""
    return tuple(_row(r) for r in json.loads(TABLE.read_text())["devices"])


def _row(r: dict) -> DeviceSpec:
    name = r["name"]
    link = r.get("link") or {}
    capability = r.get("compute_capability")
    common = dict(name=name, source=r["source"], url=r.get("url"), aliases=tuple(r.get("aliases", ())),
                  vendor=r.get("vendor"), memory=rate(r["memory_bytes"], "memory_bytes", name),
                  memory_note=r.get("memory_note"),
                  compute_capability=tuple(int(x) for x in capability.split(".")) if capability else None,
                  link=link.get("name"), link_bandwidth=rate(link["gb_s"], "link.gb_s", name) * 1e9 if link else None,
                  pcie_bandwidth=rate(r["pcie_gb_s"], "pcie_gb_s", name) * 1e9 if r.get("pcie_gb_s") else None)
    if "tflops" not in r:
        return DeviceSpec(matrix={}, vector=0.0, bandwidth=0.0, has_compute=False, **common)
    return DeviceSpec(matrix={k: rate(v, f"tflops.{k}", name) * 1e12 for k, v in r["tflops"].items()},
                      vector=rate(r["vector_tflops"], "vector_tflops", name) * 1e12,
                      bandwidth=rate(r["bandwidth_gb_s"], "bandwidth_gb_s", name) * 1e9, **common)


# -- usable memory ----------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _reserve_row() -> tuple[int, str]:
    row = json.loads(TABLE.read_text())["reserve"]
    return int(row["bytes"]), row["about"]


def default_reserve() -> int:
    """Bytes of a GPU's memory a program cannot use for tensors, as the table assumes it."""
    return _reserve_row()[0]


@dataclass(frozen=True)
class Usable:
    """A device's memory: its total, the reserve held back, and what is left for tensors."""
    device: str
    total: int
    reserve: int
    reserve_note: str            # where the reserve figure comes from

    @property
    def usable(self) -> int:
        return max(self.total - self.reserve, 0)

    def to_dict(self) -> dict:
        return {"device": self.device, "total": self.total, "reserve": self.reserve, "usable": self.usable,
                "reserve_note": self.reserve_note}


def usable_memory(device: "str | DeviceSpec", reserve: int | None = None) -> Usable:
    """Total, reserve and usable bytes of ``device``; ``reserve`` overrides the table's default
    (CUDA context, library workspaces, allocator slack)."""
    spec = get_device(device)
    if spec.memory is None:
        raise OptionsError(f"the device spec '{spec.name}' gives no memory size",
                           hint="name a device from the table (flopmeter devices), or give a size such as 80GB")
    if reserve is not None:
        if not isinstance(reserve, int) or isinstance(reserve, bool) or reserve < 0:
            raise OptionsError(f"the reserve must be a number of bytes from 0, not {reserve!r}", hint="e.g. --reserve 2GiB")
        return Usable(spec.name, int(spec.memory), reserve, "given")
    bytes_, about = _reserve_row()
    return Usable(spec.name, int(spec.memory), bytes_, about)


def _index() -> dict[str, DeviceSpec]:
    index: dict[str, DeviceSpec] = {}
    for spec in table():
        for key in (spec.name, *spec.aliases):
            index[normalise(key)] = spec
    return index


# -- calibrated specs in the user's cache directory -------------------------------------------------

def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/flopmeter`` (``~/.cache/flopmeter`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "flopmeter"


def local_path(device: str) -> Path:
    return cache_dir() / f"device-local-{device}.json"


def check_cache_dir() -> Path:
    """The cache folder, made if missing; an InputError when it cannot be made or written."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot make the cache folder {folder}: {exc.strerror or exc}", hint=_CACHE_HINT) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write to the cache folder {folder}", hint=_CACHE_HINT)
    return folder


_CACHE_HINT = "set XDG_CACHE_HOME to a folder you can write to"


def save_local(spec: DeviceSpec, device: str) -> Path:
    """Write a calibrated spec atomically; returns its path."""
    check_cache_dir()
    path = local_path(device)
    from .files import write_file

    write_file(path, json.dumps(spec.to_dict(), indent=2) + "\n", hint=_CACHE_HINT)
    return path


def load_file(path: str | Path) -> DeviceSpec:
    path = Path(path)
    hint = "a device spec is the JSON file 'flopmeter calibrate -o FILE.json' writes, or a name such as a100"
    from .files import read_json
    data = read_json(path, "a device spec", hint)
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a flopmeter device spec ({SPEC_SCHEMA})", hint=hint)
    return DeviceSpec.from_dict(data, str(path))


def _local(name: str) -> DeviceSpec:
    if name == "local":
        candidates = ["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"]
    else:
        candidates = [name.removeprefix("local-")]
    for device in candidates:
        if local_path(device).is_file():
            return load_file(local_path(device))
    device = candidates[-1] if name == "local" else candidates[0]
    raise InputError(f"no calibrated device spec at {local_path(device)}",
                     hint=f"measure this machine first: flopmeter calibrate --device {device}")


def get_device(name: str | DeviceSpec) -> DeviceSpec:
    """A device spec by (loose) name, ``local`` for the calibrated one, or a ``.json`` file."""
    if isinstance(name, DeviceSpec):
        return name
    key = normalise(name)
    if key in ("local", "localcpu", "localcuda"):
        return _local({"local": "local", "localcpu": "local-cpu", "localcuda": "local-cuda"}[key])
    if name.endswith(".json"):
        return load_file(name)
    index = _index()
    if key in index:
        return index[key]
    close = list(dict.fromkeys(index[k].name for k in close_matches(key, index, n=5)))[:3]
    hint = (f"did you mean {', '.join(repr(c) for c in close)}?" if close else
            f"known devices: {', '.join(s.name for s in table())}; or 'local' after flopmeter calibrate")
    raise OptionsError(f"unknown device '{name}'", hint=hint)


__all__ = ["DTYPE_KEYS", "DeviceSpec", "Usable", "cache_dir", "default_reserve", "check_cache_dir", "dtype_key", "get_device", "load_file", "local_path",
           "normalise", "save_local", "table", "usable_memory"]
