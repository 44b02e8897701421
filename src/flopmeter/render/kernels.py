"""Header lines of the kernels a run took (``report.kernels``): the device whose rules were
used, each group of attention calls with its backend and why, dropout's kernel and mask, the
cuBLAS workspace, and — where a budget names a GPU the run did not take the kernels of — that."""

from __future__ import annotations

_NAMES = {"flash": "flash", "efficient": "memory-efficient", "cudnn": "cuDNN", "math": "math (unfused)",
          "flash (cpu)": "flash (cpu)"}


def _version(cudnn: int | None) -> str:
    if not cudnn:
        return "?"
    major, rest = divmod(cudnn, 10000)
    minor, patch = divmod(rest, 100)
    return f"{major}.{minor}" + (f".{patch}" if patch else "")


def attention_text(a: dict, target: dict | None) -> str:
    """'flash ×32 (A100 80GB, cc 8.0, bfloat16, head dim 128, causal)' and why others were not taken."""
    facts = ([f"{target['name']}, cc {target['capability']}"] if target else []) + [a["dtype"], f"head dim {a['head_dim']}"]
    facts += [word for word, on in (("causal", a["causal"]), ("mask", a["mask"]), ("dropout", a["dropout"]),
                                    ("grouped-query", a["gqa"]), ("training", a["training"])) if on]
    why = []
    if a.get("cudnn_first"):
        why.append(f"cuDNN tried first (PyTorch's order on sm90/sm10x with cuDNN {_version(target['cudnn'])} > 9.15)")
    why += [f"not {_NAMES.get(b, b)}: {reason}" for b, reason in a.get("refused", {}).items()]
    return f"{_NAMES.get(a['backend'], a['backend'])} ×{a['calls']} ({', '.join(facts)}" + \
        ("; " + "; ".join(why) if why else "") + ")"


def kernel_items(report, raw: bool = False) -> list[tuple[str, str]]:
    k = getattr(report, "kernels", None)
    if not k:
        return []
    fit = getattr(getattr(report, "memory", None), "fit", None)
    return record_items(k, budget=getattr(getattr(fit, "budget", None), "device", None),
                        torch_version=report.torch_version, raw=raw)


def record_items(k: dict, *, budget=None, torch_version: str | None = None, raw: bool = False) -> list[tuple[str, str]]:
    """The header lines of a kernels record; ``budget``: the DeviceSpec the question names (a
    memory budget's device, a roofline's)."""
    import torch
    version = (torch_version or torch.__version__).split("+")[0]
    target = k.get("target")
    budget = _cuda_name(budget)
    if not (target or budget or k.get("attention") or k.get("dropout") or k.get("notes")):
        return []                      # a run on its own device's kernels with nothing to tell
    if target:
        source = {"named": "named", "default": "no GPU named: the default", "local": "this machine's GPU"}
        head = (f"{target['name']} (cc {target['capability']}, {source.get(target['source'], target['source'])}): "
                f"its kernel choices by PyTorch {version}'s rules, on {k['route']}")
    else:
        head = f"{k['device']}: as this PyTorch dispatched them ({k['route']})"
    if budget and (not target or target["name"] != budget):
        head += f"; the question names {budget}, whose kernels this run did not take (it ran as {k['device']})"
    items = [("kernels", head)]
    items += [("attention", attention_text(a, target)) for a in k.get("attention", [])]
    d = k.get("dropout")
    if d:
        items.append(("dropout", f"{d['kernel']} ×{d['calls']}, mask in {d['mask_dtype']}"
                                 + (" (1 byte per element)" if d["mask_dtype"] == "bool" else " (the input's dtype)")))
    w = k.get("workspace")
    if w:
        size = f"{w['cublas_bytes']:,} B" if raw else f"{w['cublas_bytes'] / 2**20:.4g} MiB"
        items.append(("workspace", f"cuBLAS {size} per {w['per']} ({w['how']}), {w['counted']}"))
    items += [("note", n) for n in k.get("notes", [])]
    return items


def _cuda_name(device) -> str | None:
    """The name of a DeviceSpec that is a CUDA device with kernel rules, else None."""
    if device is None or device.compute_capability is None or (device.vendor or "NVIDIA") != "NVIDIA":
        return None
    return device.name


__all__ = ["attention_text", "kernel_items", "record_items"]
