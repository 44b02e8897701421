"""Calibration: measure the machine at hand as a :class:`~flopmeter.bench.devices.DeviceSpec`.

Everything is timed with ``torch.utils.benchmark`` (``blocked_autorange``, the median of its
blocks; CUDA is synchronised by its timer), at the thread count given (default: torch's):

- **matrix**: a square ``n × n @ n × n`` product per dtype, ``2·n³`` FLOPs. ``n`` is chosen from
  a short probe so one product takes about ``target_s`` (a slow dtype, such as fp16 on a CPU
  without fp16 units, gets a smaller ``n``), capped at ``max_n``. Dtypes a device cannot
  multiply are left out (listed in ``extra['skipped']``).
- **bandwidth**: ``dst.copy_(src)`` of ``copy_bytes`` each, ``2·copy_bytes`` moved (read + write).
- **vector**: ``torch.add(a, b, out=c)`` on fp32 tensors of ``vector_numel`` elements (4 MiB
  each by default, small enough for a CPU's last-level cache), ``vector_numel`` FLOPs: the
  rate of elementwise arithmetic when memory is not what limits it.
- **overhead**: an eager forward of a chain of tiny ``Linear(8, 8)`` + ``ReLU`` layers on one
  sample, divided by the ops it runs that are not free (as counted by flopmeter): the fixed
  cost per op of module calls, dispatch and kernel launch, which dominates small layers.

``measure(stmt, globals) -> seconds`` can be replaced (tests pass a fake timer).
"""

from __future__ import annotations

import platform
from typing import Callable

import torch

from ..errors import InputError
from .devices import DeviceSpec

Measure = Callable[[str, dict], float]

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
          "int8": torch.int8, "fp8": getattr(torch, "float8_e4m3fn", None)}
CPU_DTYPES = ("fp32", "bf16", "fp16")
CUDA_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8")

_MATMUL = {   # statement per dtype key (a, b are n × n; fp8 needs its scales)
    "fp8": "torch._scaled_mm(a, b.t(), scale_a=s, scale_b=s, out_dtype=torch.bfloat16)",
    "int8": "torch._int_mm(a, b)",
}


def timer_measure(threads: int, min_run_time: float) -> Measure:
    """The default timer: torch.utils.benchmark's blocked_autorange median, in seconds."""
    from torch.utils import benchmark

    def measure(stmt: str, globals_: dict) -> float:
        t = benchmark.Timer(stmt=stmt, globals={"torch": torch, **globals_}, num_threads=threads)
        return t.blocked_autorange(min_run_time=min_run_time).median
    return measure


def _operands(key: str, n: int, device: torch.device) -> dict:
    dtype = DTYPES[key]
    if key == "int8":
        return {"a": torch.randint(-8, 8, (n, n), dtype=torch.int8, device=device),
                "b": torch.randint(-8, 8, (n, n), dtype=torch.int8, device=device)}
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    if key == "fp8":
        return {"a": a.to(dtype), "b": b.to(dtype), "s": torch.ones((), device=device)}
    return {"a": a.to(dtype), "b": b.to(dtype)}


def _matmul(key: str, device: torch.device, measure: Measure, max_n: int, target_s: float) -> tuple[float, int]:
    """(FLOP/s, n) of an n × n product in dtype ``key``."""
    stmt = _MATMUL.get(key, "torch.mm(a, b)")
    probe_n = min(256, max_n)
    t = measure(stmt, _operands(key, probe_n, device))
    rate = 2 * probe_n ** 3 / t
    n = int((rate * target_s / 2) ** (1 / 3)) // 64 * 64      # one product ≈ target_s
    n = max(probe_n, min(max_n, n))
    if n > probe_n:
        t = measure(stmt, _operands(key, n, device))
    return 2 * n ** 3 / t, n


def _tf32(enabled: bool):
    """Set TF32 for matmuls (calibration only); returns a function that restores it."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    return lambda: setattr(torch.backends.cuda.matmul, "allow_tf32", before)


def _overhead(device: torch.device, measure: Measure, layers: int = 32) -> tuple[float, int]:
    """(seconds per op that is not free, ops per forward) of a chain of tiny layers."""
    from ..api import count

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(*[m for _ in range(layers) for m in (torch.nn.Linear(8, 8), torch.nn.ReLU())])
    model = model.to(device).eval()
    x = torch.randn(1, 8, device=device)
    ops = sum(1 for row in count(model, x).ops if row.status != "free")
    t = measure("with torch.inference_mode(): model(x)", {"model": model, "x": x})
    return t / ops, ops


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def calibrate(device: str = "cpu", *, dtypes: tuple[str, ...] | None = None, threads: int | None = None,
              max_n: int | None = None, target_s: float = 0.1, copy_bytes: int | None = None,
              vector_numel: int = 1 << 20, min_run_time: float = 0.5, measure: Measure | None = None) -> DeviceSpec:
    """Measure this machine's matmul throughput per dtype, memory bandwidth, vector throughput
    and per-op overhead; returns a spec named ``local-<device>``."""
    if device not in ("cpu", "cuda"):
        raise InputError(f"cannot calibrate device '{device}'", hint="use --device cpu or --device cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("no CUDA device is available to calibrate", hint="use --device cpu")
    dev = torch.device(device)
    threads = threads or torch.get_num_threads()
    measure = measure or timer_measure(threads, min_run_time)
    max_n = max_n or (2048 if device == "cpu" else 8192)
    copy_bytes = copy_bytes or (256 << 20 if device == "cpu" else 1 << 30)
    dtypes = dtypes or (CPU_DTYPES if device == "cpu" else CUDA_DTYPES)

    matrix: dict[str, float] = {}
    sizes: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for key in dtypes:
        if key not in DTYPES or DTYPES[key] is None:
            skipped[key] = "this torch has no such dtype"
            continue
        restore = _tf32(key == "tf32") if device == "cuda" else (lambda: None)
        try:
            matrix[key], sizes[key] = _matmul(key, dev, measure, max_n, target_s)
        except (RuntimeError, TypeError, NotImplementedError) as exc:     # a dtype this device cannot multiply
            skipped[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        finally:
            restore()
    if "fp32" not in matrix:
        raise InputError(f"could not time an fp32 matrix product on {device}: {skipped.get('fp32')}")

    n = copy_bytes // 4
    src, dst = torch.empty(n, device=dev).fill_(1.0), torch.empty(n, device=dev)
    bandwidth = 2 * n * 4 / measure("dst.copy_(src)", {"src": src, "dst": dst})
    del src, dst

    overhead, overhead_ops = _overhead(dev, measure)
    a, b, c = (torch.rand(vector_numel, device=dev) for _ in range(3))
    vector = vector_numel / measure("torch.add(a, b, out=c)", {"a": a, "b": b, "c": c})

    if device == "cuda":
        name = torch.cuda.get_device_name(dev)
        memory = float(torch.cuda.get_device_properties(dev).total_memory)
    else:
        name = _cpu_name()
        memory = None
    return DeviceSpec(
        name=f"local-{device}", matrix=matrix, vector=vector, bandwidth=bandwidth, kind="calibrated",
        source=f"flopmeter calibrate on {name} ({threads} thread{'s' if threads != 1 else ''}), torch {torch.__version__}",
        memory=memory, overhead=overhead, threads=threads,
        extra={"hardware": name, "matmul_n": sizes, "skipped": skipped, "copy_bytes": copy_bytes,
               "vector_numel": vector_numel, "overhead_ops": overhead_ops, "torch": torch.__version__})


__all__ = ["CPU_DTYPES", "CUDA_DTYPES", "calibrate", "timer_measure"]
