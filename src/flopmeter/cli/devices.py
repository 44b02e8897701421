"""``flopmeter devices [NAME]``: the device table — memory (total, reserve, usable), compute
capability, links, peak dense throughput and bandwidth, each row with its source."""

from __future__ import annotations

import argparse
import json

from ..devices import get_device, table, usable_memory
from .common import add_output_options, output_format, write_output


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flopmeter devices",
                                description="List the device table (or one device) with each row's source.")
    p.add_argument("name", nargs="?", help="one device, by name or alias (e.g. h100, a100-80gb, rtx-4090)")
    add_output_options(p)
    return p


def _tflops(spec, key: str) -> float | None:
    value = spec.matrix.get(key) if spec.has_compute else None
    return None if value is None else value / 1e12


def records(specs) -> list[dict]:
    rows = []
    for spec in specs:
        use = usable_memory(spec)
        rows.append({
            "device": spec.name, "aliases": list(spec.aliases), "memory": spec.memory_note,
            "total_bytes": use.total, "reserve_bytes": use.reserve, "usable_bytes": use.usable,
            "compute_capability": ".".join(map(str, spec.compute_capability)) if spec.compute_capability else None,
            "bf16_tflops": _tflops(spec, "bf16"), "fp8_tflops": _tflops(spec, "fp8"), "fp32_tflops": _tflops(spec, "fp32"),
            "bandwidth_gb_s": spec.bandwidth / 1e9 if spec.has_compute else None,
            "link": spec.link, "link_gb_s": spec.link_bandwidth / 1e9 if spec.link_bandwidth else None,
            "pcie_gb_s": spec.pcie_bandwidth / 1e9 if spec.pcie_bandwidth else None,
            "source": spec.source, "url": spec.url})
    return rows


def run(args) -> int:
    from ..render import get_renderer
    from ..render.tables import Table

    specs = [get_device(args.name)] if args.name else list(table())
    fmt = output_format(args.format, args.output)
    rows = records(specs)
    if fmt == "json":
        write_output(json.dumps({"reserve_note": usable_memory(specs[0]).reserve_note, "devices": rows}, indent=2),
                     args.output)
        return 0
    columns = ["device", "memory", "usable", "cc", "bf16 TFLOP/s", "fp8 TFLOP/s", "GB/s", "link GB/s"]
    t = Table(columns, [False, False, True, False, True, True, True, True])
    gib = 2**30
    for r in rows:
        t.rows.append([r["device"], r["memory"] or "", f"{r['usable_bytes'] / gib:.1f} GiB", r["compute_capability"] or "—",
                       *("—" if v is None else f"{v:g}" for v in (r["bf16_tflops"], r["fp8_tflops"], r["bandwidth_gb_s"],
                                                                  r["link_gb_s"]))])
    text = get_renderer(fmt).table(t, args.raw)
    if fmt == "csv":
        write_output(text, args.output)
        return 0
    notes = ["usable = total − reserve; reserve " + f"{rows[0]['reserve_bytes'] / gib:g} GiB by default: "
             + usable_memory(specs[0]).reserve_note,
             "throughput is dense (no structured sparsity); link GB/s is per direction"]
    sources = [f"{r['device']}: {r['source']}" + (f" <{r['url']}>" if r["url"] else "") for r in rows]
    write_output(text + "\n\n" + "\n".join(notes) + "\n\nsources:\n" + "\n".join(f"  {s}" for s in sources), args.output)
    return 0


__all__ = ["parser", "records", "run"]
