"""Memory budgets: ``--fits 80GB``, ``--fits 24GiB``, ``--fits H100``.

Sizes: ``GB``/``MB``/``KB``/``TB`` are decimal (10⁹ …), ``GiB``/``MiB``/``KiB``/``TiB`` binary
(2³⁰ …); a bare number is bytes, and a size is the budget as given (no reserve taken from it).
A device name is a row of the one device table (:mod:`flopmeter.devices`): its budget is the
usable memory, the datasheet total less a stated reserve for what a program cannot allocate
(the driver's share, the CUDA context, library workspaces, allocator slack), overridable with
``reserve``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..devices import DeviceSpec, _index, get_device, normalise, table, usable_memory
from ..errors import OptionsError, close_matches

GiB = 2**30

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


MAX_BUDGET = 10**18        # an exabyte; a larger budget is a typo (and overflows the byte count)


@dataclass(frozen=True)
class Budget:
    bytes: int                    # what the answer may use: a size as given, or a device's usable memory
    label: str                    # "H100 SXM: 83.7 GiB usable (…)" or "80 GB = 80,000,000,000 bytes"
    device: DeviceSpec | None = None
    total: int | None = None      # a device's memory before the reserve
    reserve: int = 0
    reserve_note: str | None = None

    def to_dict(self) -> dict:
        return {"bytes": self.bytes, "label": self.label, "device": self.device.name if self.device else None,
                "total": self.total, "reserve": self.reserve, "reserve_note": self.reserve_note}


def parse_size(text: str) -> int | None:
    """'80GB' → 80·10⁹; '24GiB' → 24·2³⁰; '0' → 0; None when ``text`` is not a size."""
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([a-z]*)", text.strip().lower())
    if m and m.group(2) in _UNITS:
        value = float(m.group(1)) * _UNITS[m.group(2)]
        if value <= MAX_BUDGET:
            return int(value)
    return None


def parse_budget(text: str, reserve: int | None = None) -> Budget:
    """'80GB' → 80·10⁹ bytes; '24GiB' → 24·2³⁰; 'H100' → that device's usable memory."""
    key = normalise(text)
    if key in _index():
        use = usable_memory(get_device(text), reserve)
        spec = get_device(text)
        note = "given" if reserve is not None else "the table's default"
        label = (f"{spec.name}: {use.usable:,} bytes usable = {use.total:,} total ({spec.memory_note or 'datasheet'}) "
                 f"− {use.reserve:,} reserve ({note})")
        return Budget(use.usable, label, spec, use.total, use.reserve, use.reserve_note)
    size = parse_size(text)
    if size:
        if reserve:
            raise OptionsError("a reserve applies to a device's memory, not to a size you give",
                               hint=f"give the size you can use (e.g. --fits {text}) or a device such as --fits H100")
        return Budget(size, f"{text.strip()} = {size:,} bytes")
    names = [d.name for d in table()]
    close = list(dict.fromkeys(_index()[k].name for k in close_matches(key, _index(), n=5)))[:3]
    raise OptionsError(f"cannot read the memory budget '{text}'",
                       hint=(f"did you mean {', '.join(repr(c) for c in close)}?" if close else
                             f"write a size from 1 byte to 1EB such as 80GB or 24GiB, or a device: {', '.join(names)}"))


__all__ = ["Budget", "parse_budget", "parse_size"]
