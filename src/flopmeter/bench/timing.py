"""Measured latency and throughput of a model's forward, timed by ``torch.utils.benchmark``.

``measure(model, *inputs, options=MeasureOptions(...)) -> Measurement``:

- the model runs in eval mode under ``torch.inference_mode()``; its training flags are put
  back afterwards (also when the forward raises). A requested device, dtype or channels-last
  layout is applied to a *copy* of the model, never to the model given;
- a few warm-up calls, then ``Timer.adaptive_autorange``: at least four blocks and at least
  ``min_time`` seconds, continuing until the spread (IQR / median of the blocks) is below
  ``threshold`` or ``max_time`` is spent. The Timer synchronises an accelerator before it
  reads the clock, so CUDA times are whole kernels; on CUDA the p50 is also checked against
  CUDA events (``cuda_event_ms``);
- the Timer runs with the process's thread count (``torch.get_num_threads()``, or
  ``threads``), not the Timer's default of one thread; the thread count and the device
  name are recorded;
- latency percentiles are over the Timer's blocks: a block is ``number_per_run`` calls
  (one call for anything slower than about 10 ms), so for fast models p90/p99 are of block
  means, not of single calls;
- ``warnings`` says when the spread is above ``WARN_SPREAD`` (the Timer's own threshold):
  such a p50 is not to be trusted to a few percent.
"""

from __future__ import annotations

import copy
import platform
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from ..errors import InputError, ModelForwardError, OptionsError

WARN_SPREAD = 0.10      # IQR / median above this: the estimate is too noisy to trust (torch's Timer uses 0.1)


@dataclass(frozen=True)
class MeasureOptions:
    """How to time. ``device``/``dtype``/``channels_last`` convert a copy of the model and the inputs.

    ``layers`` adds a per-module profile (``bench.layers.profile_layers``) joined with the
    model's counted FLOPs and bytes; ``count`` joins the whole model's FLOPs for an achieved
    FLOP/s (a fake-tensor count, no second real forward).
    """

    device: str | None = None
    dtype: torch.dtype | None = None
    channels_last: bool = False
    warmup: int = 3
    min_time: float = 1.0
    max_time: float = 10.0
    threshold: float = 0.05
    threads: int | None = None
    batch_size: int | None = None
    layers: bool = False
    layer_iterations: int = 3
    count: bool = True
    convention: str = "dot"

    def __post_init__(self):
        if self.min_time <= 0 or self.max_time < self.min_time:
            raise OptionsError(f"need 0 < min_time ≤ max_time, got {self.min_time} and {self.max_time}",
                               hint="e.g. min_time=1, max_time=10 (seconds)")
        if self.warmup < 0 or (self.threads is not None and self.threads < 1):
            raise OptionsError("warmup must be ≥ 0 and threads ≥ 1", hint="e.g. warmup=3, threads=4")


@dataclass
class Measurement:
    """Latency of one forward (seconds) over the Timer's blocks, and what it was measured on."""

    times: list[float]               # seconds per call, one per block of number_per_run calls
    number_per_run: int
    batch_size: int
    device: str
    device_name: str
    threads: int
    dtype: str
    channels_last: bool
    torch_version: str
    flops: int | None = None         # counted FLOPs of one forward under `convention`
    bytes: int | None = None         # counted bytes read + written
    convention: str | None = None
    cuda_event_ms: float | None = None
    layers: object | None = None     # bench.layers.LayerProfile when asked for
    report: object | None = field(default=None, repr=False)   # the counted Report of the timed call
    warnings: list[str] = field(default_factory=list)

    def _q(self, q: float) -> float:
        return torch.tensor(self.times, dtype=torch.float64).quantile(q).item()

    @property
    def p50(self) -> float:
        return self._q(0.5)

    @property
    def p90(self) -> float:
        return self._q(0.9)

    @property
    def p99(self) -> float:
        return self._q(0.99)

    @property
    def mean(self) -> float:
        return sum(self.times) / len(self.times)

    @property
    def iqr(self) -> float:
        return self._q(0.75) - self._q(0.25)

    @property
    def spread(self) -> float:
        """IQR / median: the tool's own measure of how far to trust the p50."""
        return self.iqr / self.p50

    @property
    def throughput(self) -> float:
        """Items per second at the median latency."""
        return self.batch_size / self.p50

    @property
    def achieved_flops(self) -> float | None:
        """FLOP/s at the median latency (FLOPs under ``convention``)."""
        return None if self.flops is None else self.flops / self.p50

    def to_dict(self) -> dict:
        d = {f.name: (list(v) if isinstance(v := getattr(self, f.name), list) else v)
             for f in fields(self) if f.name not in ("layers", "report")}
        d.update(p50=self.p50, p90=self.p90, p99=self.p99, mean=self.mean, iqr=self.iqr, spread=self.spread,
                 throughput=self.throughput, achieved_flops=self.achieved_flops)
        if self.layers is not None:
            d["layers"] = self.layers.to_dict()
        return d

    def summary(self) -> str:
        return (f"p50 {1e3 * self.p50:.3f} ms, p90 {1e3 * self.p90:.3f} ms, spread {100 * self.spread:.1f}% "
                f"({len(self.times)} blocks × {self.number_per_run}), {self.throughput:.1f} items/s, "
                f"{self.threads} threads on {self.device_name}")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return name or platform.processor() or platform.machine() or "cpu"


@contextmanager
def eval_for_run(model: nn.Module):
    """Eval mode for the run only; every module's training flag is put back."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in flags:
            m.training = training


def _convert(obj, device, dtype, channels_last):
    if isinstance(obj, torch.Tensor):
        t = obj.to(device=device) if device is not None else obj
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        if channels_last and t.ndim == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        return t
    if isinstance(obj, (list, tuple)):
        return type(obj)(_convert(o, device, dtype, channels_last) for o in obj)
    if isinstance(obj, dict):
        return {k: _convert(v, device, dtype, channels_last) for k, v in obj.items()}
    return obj


def _first_tensor(obj):
    if isinstance(obj, torch.Tensor):
        return obj
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
    for o in items:
        t = _first_tensor(o)
        if t is not None:
            return t
    return None


def prepare(model: nn.Module, args: tuple, kwargs: dict, opts: MeasureOptions):
    """The model and inputs to time: a converted copy when a device, dtype or layout was asked for."""
    tensors = list(model.parameters()) + list(model.buffers())
    if any(t.device.type == "meta" for t in tensors):
        raise InputError("the model's weights are on the meta device; timing needs real weights",
                         hint="build it with real (random) weights, or use `flopmeter bench SPEC`")
    here = tensors[0].device if tensors else torch.device("cpu")
    device = torch.device(opts.device) if opts.device else here
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionsError("--device cuda: no CUDA device is available here", hint="use --device cpu")
    needs_copy = (device != here and not (device.type == here.type == "cuda" and device.index is None)) \
        or (opts.dtype is not None and any(t.is_floating_point() and t.dtype != opts.dtype for t in tensors)) \
        or opts.channels_last
    if needs_copy:
        model = copy.deepcopy(model).to(device=device)
        if opts.dtype is not None:
            model = model.to(opts.dtype)
        if opts.channels_last:
            model = model.to(memory_format=torch.channels_last)
    args = _convert(args, device, opts.dtype, opts.channels_last)
    kwargs = _convert(kwargs, device, opts.dtype, opts.channels_last)
    return model, args, kwargs, device


def cuda_event_ms(fn, iterations: int = 20) -> float:
    """Median of CUDA-event timings of ``fn`` (each call bracketed by two recorded events)."""
    pairs = []
    for _ in range(iterations):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        pairs.append((start, end))
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) for s, e in pairs)
    return times[len(times) // 2]


def _timer_class():
    """torch.utils.benchmark.Timer; its import logs a warning about CUDA_HOME on machines without CUDA."""
    import logging
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from torch.utils.benchmark import Timer
    finally:
        log.setLevel(level)
    return Timer


def _count(model, args, kwargs, opts: MeasureOptions, result: Measurement):
    """The counted cost of the timed call: fake tensors, or the real weights where the forward
    depends on values (detection); a model that cannot be counted is timed all the same, with a warning."""
    from ..api import Options, count
    from ..errors import FlopmeterError

    try:
        try:
            return count(model, *args, kwargs=kwargs, options=Options(convention=opts.convention))
        except ModelForwardError as exc:
            if not exc.data_dependent:
                raise
            with torch.random.fork_rng(devices=[]):
                return count(model, *args, kwargs=kwargs, options=Options(convention=opts.convention, mode="real"))
    except FlopmeterError as exc:
        result.warnings.append(f"not counted, so no achieved FLOP/s: {exc}")
        return None


def measure(model: nn.Module, *args, kwargs: dict | None = None, options: MeasureOptions | None = None) -> Measurement:
    """Time ``model(*args, **kwargs)`` (see the module docstring). The model is left as found."""
    Timer = _timer_class()
    opts = options or MeasureOptions()
    kwargs = dict(kwargs or {})
    run_model, args, kwargs, device = prepare(model, args, kwargs, opts)
    first = _first_tensor((args, kwargs))
    batch = opts.batch_size or (first.shape[0] if first is not None and first.ndim else 1)
    threads = opts.threads or torch.get_num_threads()
    param = next(run_model.parameters(), None)

    def forward():
        with torch.inference_mode():
            return run_model(*args, **kwargs)

    with eval_for_run(run_model):
        prior = torch.get_num_threads()
        torch.set_num_threads(threads)          # warm up with the thread count the Timer will use
        try:
            for _ in range(opts.warmup):
                forward()
        finally:
            torch.set_num_threads(prior)
        timer = Timer(stmt="forward()", globals={"forward": forward}, num_threads=threads)
        m = timer.adaptive_autorange(threshold=opts.threshold, min_run_time=opts.min_time,
                                     max_run_time=opts.max_time)
        result = Measurement(times=list(m.times), number_per_run=m.number_per_run, batch_size=int(batch),
                             device=str(device), device_name=device_name(device), threads=threads,
                             dtype=str(param.dtype).replace("torch.", "") if param is not None else "",
                             channels_last=opts.channels_last, torch_version=torch.__version__)
        if device.type == "cuda":
            result.cuda_event_ms = cuda_event_ms(forward)
            if abs(result.cuda_event_ms / 1e3 - result.p50) > 0.1 * result.p50:
                result.warnings.append(f"CUDA events give {result.cuda_event_ms:.3f} ms against the Timer's "
                                       f"{1e3 * result.p50:.3f} ms (more than 10% apart)")
        report = _count(run_model, args, kwargs, opts, result) if opts.count or opts.layers else None
        if report is not None:
            result.report = report
            result.flops, result.convention = report.flops, report.convention
            result.bytes = report.total.bytes_read + report.total.bytes_written
        if opts.layers:
            from .layers import profile_layers
            result.layers = profile_layers(run_model, args, kwargs, report, device=device,
                                           iterations=opts.layer_iterations, threads=threads)
            result.layers.whole = result.p50
    if len(result.times) < 4:
        result.warnings.append(f"only {len(result.times)} timed block(s) before max_time ({opts.max_time:g} s) ran "
                               f"out: the percentiles are rough; allow more time")
    if result.spread > WARN_SPREAD:
        result.warnings.append(f"the spread (IQR/median) is {100 * result.spread:.1f}% of the median, above "
                               f"{100 * WARN_SPREAD:.0f}%: the timing is too noisy to trust (is the machine busy?)")
    return result


__all__ = ["MeasureOptions", "Measurement", "WARN_SPREAD", "device_name", "eval_for_run", "measure"]
