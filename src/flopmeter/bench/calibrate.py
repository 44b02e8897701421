"""Calibration: measure the machine at hand as a :class:`~flopmeter.devices.DeviceSpec`.

Everything is timed with ``torch.utils.benchmark`` (``blocked_autorange``, the median of its
blocks; CUDA is synchronised by its timer), at the thread count given (default: torch's):

- **matrix**: a square ``n × n @ n × n`` product per dtype, ``2·n³`` FLOPs. ``n`` is chosen from
  a short probe so one product takes about ``target_s`` (a slow dtype, such as fp16 on a CPU
  without fp16 units, gets a smaller ``n``), capped at ``max_n``. Dtypes a device cannot
  multiply are left out (listed in ``extra['skipped']``).
- **op classes with kernels of their own**, in each float dtype timed above: ``conv`` (3 × 3,
  128 → 128 channels on 28 × 28), ``pointwise`` (1 × 1, 128 → 128 channels on 56 × 56: a
  matrix product with a short inner dimension, which oneDNN runs at a fraction of a 3 × 3
  convolution's rate on NCHW tensors), ``grouped`` (3 × 3, 256 channels in groups of 16, on
  28 × 28), ``depthwise`` (3 × 3, 128 channels on 28 × 28) and ``pool`` (3 × 3 max pool,
  stride 2, 64 channels on 56 × 56). Their kernels are not a matrix product's (oneDNN,
  cuDNN), and on a CPU grouped, depthwise and pooling kernels are far slower per FLOP. On a
  CPU each is timed at batch 1 (in cache, so the figure is the kernel's arithmetic rate;
  memory traffic is the roofline's other term) and, as ``<class>:batched``, at batch
  ``batched`` (32), apart because oneDNN picks its kernels by shape and batch (on one core
  of the development machine its NCHW depthwise convolution ran at 7.7–17.7 GFLOP/s across
  the shapes and batches ``benchmarks/roofline.py`` probes). On a GPU one figure, at the batch (up to ``max_batch``) that takes about
  ``target_s``.
- **bandwidth**: ``dst.copy_(src)`` of ``copy_bytes`` each, ``2·copy_bytes`` moved (read + write).
- **vector**: ``torch.add(a, b, out=c)`` on fp32 tensors of ``vector_numel`` elements (128 KiB
  each by default, small enough to stay in a CPU core's L2 cache), ``vector_numel`` FLOPs,
  less the time of the same add on one element (its dispatch): the rate of elementwise
  arithmetic when memory is not what limits it (half the add's time when the difference is
  lost in noise).
- **overhead**: an eager forward of a chain of tiny ``Linear(8, 8)`` + ``ReLU`` layers on one
  sample, divided by the ops it runs that are not free (as counted by flopmeter): the fixed
  cost per op of module calls, dispatch and kernel launch, which dominates small layers.

``clock="cpu"`` times with the process's CPU time (``time.process_time``) instead of the wall
clock: on a CPU shared with other jobs, the time this process waits for a core does not
count. It needs one thread (CPU time of several threads adds up) and a CPU device.

``measure(stmt, globals) -> seconds`` can be replaced (tests pass a fake timer).
"""

from __future__ import annotations

import platform
import time
from typing import Callable

import torch

from ..errors import InputError
from ..devices import DeviceSpec

Measure = Callable[[str, dict], float]

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
          "int8": torch.int8, "fp8": getattr(torch, "float8_e4m3fn", None)}
CPU_DTYPES = ("fp32", "bf16", "fp16")
CUDA_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8")

_MATMUL = {   # statement per dtype key (a, b are n × n; fp8 needs its scales)
    "fp8": "torch._scaled_mm(a, b.t(), scale_a=s, scale_b=s, out_dtype=torch.bfloat16)",
    "int8": "torch._int_mm(a, b)",
}


CLOCKS = ("wall", "cpu")


def timer_measure(threads: int, min_run_time: float, clock: str = "wall") -> Measure:
    """The default timer: torch.utils.benchmark's blocked_autorange median, in seconds, by the
    wall clock (synchronising CUDA) or by the process's CPU time."""
    from torch.utils import benchmark
    timer = {"cpu": {"timer": time.process_time}, "wall": {}}[clock]

    def measure(stmt: str, globals_: dict) -> float:
        t = benchmark.Timer(stmt=stmt, globals={"torch": torch, **globals_}, num_threads=threads, **timer)
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


def _rate(stmt: str, make, flops, pick, device: torch.device, measure: Measure, probe: int, largest: int,
          target_s: float) -> tuple[float, int]:
    """(FLOP/s, size) of ``stmt`` on ``make(size, device)``, which does ``flops(size)``: timed at
    ``probe``, then at the size ``pick(FLOPs)`` that one run of about ``target_s`` does (at most
    ``largest``)."""
    t = measure(stmt, make(probe, device))
    size = max(probe, min(largest, pick(flops(probe) / t * target_s)))
    if size > probe:
        t = measure(stmt, make(size, device))
    return flops(size) / t, size


def _matmul(key: str, device: torch.device, measure: Measure, max_n: int, target_s: float) -> tuple[float, int]:
    """(FLOP/s, n) of an n × n product in dtype ``key``."""
    return _rate(_MATMUL.get(key, "torch.mm(a, b)"), lambda n, dev: _operands(key, n, dev), lambda n: 2 * n ** 3,
                 lambda f: int((f / 2) ** (1 / 3)) // 64 * 64, device, measure, min(256, max_n), max_n, target_s)


# op classes with kernels of their own: (statement, channels, H = W, groups, kernel, stride); a batch of `size`
KERNELS = {
    "conv": ("torch.nn.functional.conv2d(x, w, padding=1, groups=g)", 128, 28, 1, 3, 1),
    "pointwise": ("torch.nn.functional.conv2d(x, w, groups=g)", 128, 56, 1, 1, 1),
    "grouped": ("torch.nn.functional.conv2d(x, w, padding=1, groups=g)", 256, 28, 16, 3, 1),
    "depthwise": ("torch.nn.functional.conv2d(x, w, padding=1, groups=g)", 128, 28, 128, 3, 1),
    "pool": ("torch.nn.functional.max_pool2d(x, 3, 2, 1)", 64, 56, 1, 3, 2),
}


def _kernel(op_class: str, key: str, device: torch.device, measure: Measure, batch: int, max_batch: int,
            target_s: float) -> tuple[float, int]:
    """(FLOP/s, batch) of op class ``op_class`` in dtype ``key``, FLOPs counted as flopmeter
    counts them: a convolution 2 · N · C_out · H_out · W_out · (C_in / g) · K², a max pool
    (window − 1) comparisons per output element."""
    stmt, c, hw, groups, k, stride = KERNELS[op_class]
    dtype = DTYPES[key]
    out = (hw + 2 * (k // 2) - k) // stride + 1

    def make(batch, dev):
        return {"x": torch.randn(batch, c, hw, hw, device=dev).to(dtype),
                "w": torch.randn(c, c // groups, k, k, device=dev).to(dtype), "g": groups}

    def flops(batch):
        if op_class == "pool":
            return batch * c * out * out * (k * k - 1)
        return 2 * batch * c * out * out * (c // groups) * k * k
    return _rate(stmt, make, flops, lambda f: int(f // flops(1)), device, measure, batch, max_batch, target_s)


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
              max_n: int | None = None, max_batch: int | None = None, batched: int = 32, target_s: float = 0.25,
              copy_bytes: int | None = None, vector_numel: int = 1 << 15, min_run_time: float = 0.5,
              clock: str = "wall", measure: Measure | None = None) -> DeviceSpec:
    """Measure this machine's matmul and convolution throughput per dtype, memory bandwidth,
    vector throughput and per-op overhead; returns a spec named ``local-<device>``."""
    if device not in ("cpu", "cuda"):
        raise InputError(f"cannot calibrate device '{device}'", hint="use --device cpu or --device cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("no CUDA device is available to calibrate", hint="use --device cpu")
    dev = torch.device(device)
    threads = threads or torch.get_num_threads()
    if clock not in CLOCKS:
        raise InputError(f"unknown clock '{clock}'", hint="use wall or cpu")
    if clock == "cpu" and (device != "cpu" or threads != 1):
        raise InputError("the cpu clock (process CPU time) needs --device cpu and --threads 1",
                         hint="CPU time of several threads adds up, and GPU time is not CPU time")
    measure = measure or timer_measure(threads, min_run_time, clock)
    max_n = max_n or (2048 if device == "cpu" else 8192)
    max_batch = max_batch or 512
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
        raise InputError(f"could not time an fp32 matrix product on {device}: {skipped.get('fp32')}",
                         hint="check that PyTorch runs a matrix product on this device, or use --device cpu")
    classes: dict[str, dict[str, float]] = {}
    # (class name, first batch, largest batch): on a CPU batch 1 and `batched`; on a GPU one
    # figure at the batch that fills it
    regimes = [(c, 1, max_batch) for c in KERNELS] if device == "cuda" else \
        [(c, 1, 1) for c in KERNELS] + ([(f"{c}:batched", batched, batched) for c in KERNELS] if batched > 1 else [])
    for name, first, largest in regimes:      # float dtypes (fp32 convolutions use TF32 where cuDNN's default allows)
        for key in (k for k in matrix if k in ("fp32", "bf16", "fp16")):
            try:
                classes.setdefault(name, {})[key], sizes[f"{name} {key}"] = _kernel(
                    name.split(":")[0], key, dev, measure, first, largest, target_s)
            except (RuntimeError, NotImplementedError) as exc:
                skipped[f"{name} {key}"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"

    n = copy_bytes // 4
    src, dst = torch.empty(n, device=dev).fill_(1.0), torch.empty(n, device=dev)
    bandwidth = 2 * n * 4 / measure("dst.copy_(src)", {"src": src, "dst": dst})
    del src, dst

    overhead, overhead_ops = _overhead(dev, measure)
    a, b, c = (torch.rand(vector_numel, device=dev) for _ in range(3))
    t_add = measure("torch.add(a, b, out=c)", {"a": a, "b": b, "c": c})
    a1, b1, c1 = (torch.rand(1, device=dev) for _ in range(3))
    t_one = measure("torch.add(a, b, out=c)", {"a": a1, "b": b1, "c": c1})
    vector = vector_numel / (t_add - t_one) if t_add > 2 * t_one else vector_numel / (t_add / 2)

    if device == "cuda":
        name = torch.cuda.get_device_name(dev)
        memory = float(torch.cuda.get_device_properties(dev).total_memory)
    else:
        name = _cpu_name()
        memory = None
    return DeviceSpec(
        name=f"local-{device}", matrix=matrix, vector=vector, bandwidth=bandwidth, kind="calibrated", classes=classes,
        source=f"flopmeter calibrate on {name} ({threads} thread{'s' if threads != 1 else ''}"
               f"{', CPU-time clock' if clock == 'cpu' else ''}), torch {torch.__version__}",
        memory=memory, overhead=overhead, threads=threads,
        extra={"hardware": name, "clock": clock, "sizes": sizes, "skipped": skipped, "copy_bytes": copy_bytes,
               "vector_numel": vector_numel, "overhead_ops": overhead_ops, "torch": torch.__version__})


__all__ = ["CLOCKS", "CPU_DTYPES", "CUDA_DTYPES", "calibrate", "timer_measure"]
