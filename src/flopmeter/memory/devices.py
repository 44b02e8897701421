"""Memory budgets: ``--fits 80GB``, ``--fits 24GiB``, ``--fits H100``.

Sizes: ``GB``/``MB``/``KB``/``TB`` are decimal (10⁹ …), ``GiB``/``MiB``/``KiB``/``TiB`` binary
(2³⁰ …); a bare number is bytes. Device names give the memory the vendor's datasheet lists
(HBM/GDDR capacity). HBM stacks come in binary sizes, so an "80 GB" H100 has 80 GiB; what a
program can allocate is smaller (nvidia-smi shows about 79.6 GiB on an H100 SXM, and the CUDA
context takes a few hundred MiB more): pass a number for a tighter budget.
This table holds memory sizes only; peak compute and bandwidth live with the roofline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import OptionsError, did_you_mean

GiB = 2**30


@dataclass(frozen=True)
class MemoryDevice:
    name: str
    bytes: int
    note: str


DEVICES: dict[str, MemoryDevice] = {d.name.lower(): d for d in (
    MemoryDevice("H100", 80 * GiB, "NVIDIA H100 SXM5/PCIe, 80 GB HBM3/HBM2e"),
    MemoryDevice("H100-NVL", 94 * GiB, "NVIDIA H100 NVL, 94 GB HBM3"),
    MemoryDevice("H200", 141 * 10**9, "NVIDIA H200, 141 GB HBM3e"),
    MemoryDevice("B200", 180 * 10**9, "NVIDIA B200 (HGX), 180 GB HBM3e"),
    MemoryDevice("A100", 80 * GiB, "NVIDIA A100 80GB"),
    MemoryDevice("A100-40GB", 40 * GiB, "NVIDIA A100 40GB"),
    MemoryDevice("L40S", 48 * GiB, "NVIDIA L40S, 48 GB GDDR6"),
    MemoryDevice("A10G", 24 * GiB, "NVIDIA A10G, 24 GB GDDR6"),
    MemoryDevice("L4", 24 * GiB, "NVIDIA L4, 24 GB GDDR6"),
    MemoryDevice("T4", 16 * GiB, "NVIDIA T4, 16 GB GDDR6"),
    MemoryDevice("V100", 32 * GiB, "NVIDIA V100 32GB"),
    MemoryDevice("RTX4090", 24 * GiB, "NVIDIA GeForce RTX 4090, 24 GB GDDR6X"),
    MemoryDevice("RTX3090", 24 * GiB, "NVIDIA GeForce RTX 3090, 24 GB GDDR6X"),
    MemoryDevice("MI300X", 192 * GiB, "AMD Instinct MI300X, 192 GB HBM3"),
)}

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


MAX_BUDGET = 10**18        # an exabyte; a larger budget is a typo (and overflows the byte count)


@dataclass(frozen=True)
class Budget:
    bytes: int
    label: str                    # "80 GiB (H100: …)" or "80 GB"


def parse_budget(text: str) -> Budget:
    """'80GB' → 80·10⁹ bytes; '24GiB' → 24·2³⁰; 'H100' → the table's size."""
    key = text.strip().lower()
    if key in DEVICES:
        d = DEVICES[key]
        return Budget(d.bytes, f"{d.name}: {d.bytes:,} bytes ({d.note})")
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([a-z]*)", key)
    if m and m.group(2) in _UNITS:
        value = float(m.group(1)) * _UNITS[m.group(2)]
        if 0 < value <= MAX_BUDGET:
            return Budget(int(value), f"{text.strip()} = {int(value):,} bytes")
    names = [d.name for d in DEVICES.values()]
    close = did_you_mean(key, DEVICES, fmt="'{}'")
    raise OptionsError(f"cannot read the memory budget '{text}'",
                       hint=close or f"write a size from 1 byte to 1EB such as 80GB or 24GiB, or a device: "
                                     f"{', '.join(names)}")


__all__ = ["DEVICES", "Budget", "MemoryDevice", "parse_budget"]
