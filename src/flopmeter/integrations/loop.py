"""MFU of a plain PyTorch training loop.

    meter = MFUMeter(model, optimizer="adamw", device="h100")
    for batch in loader:
        loss = model(**batch).loss
        loss.backward(); opt.step(); opt.zero_grad()
        record = meter.step(batch)          # the time since the previous step (or since start())
        print(record.mfu, record.metrics())

or time one span exactly: ``with meter.measure(batch): ...``. The step's FLOPs come from
:class:`flopmeter.mfu.StepCounter` (one trace per batch shape, none after a length fit), the
peak from :func:`flopmeter.mfu.resolve_peak`, the time from a device-synchronised clock.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from dataclasses import replace
from typing import Any, Callable, Sequence

from torch import nn

from ..mfu import Peak, StepCounter, StepRecord, Stopwatch, batch_counts, model_device, peak_dtype, resolve_peak


class Meter:
    """What the three integrations share: a step counter, the peak, a synchronised stopwatch
    and the last ``history`` step records."""

    def __init__(self, model: nn.Module, *, optimizer: str | None = "adamw", loss: Any = "auto",
                 checkpointing: bool | None = None, autocast: str | None = None, convention: str = "dot",
                 peak_flops: float | None = None, device: Any = None, inputs: Callable[[Any], Any] | None = None,
                 maxsize: int = 32, history: int = 1000, clock: Callable[[], float] = time.perf_counter):
        self.counter = StepCounter(model, optimizer=optimizer, loss=loss, checkpointing=checkpointing,
                                   autocast=autocast, convention=convention, inputs=inputs, maxsize=maxsize)
        on = model_device(model)
        self.peak: Peak = resolve_peak(peak_flops=peak_flops, device=device, dtype=peak_dtype(model, autocast), on=on)
        self.stopwatch = Stopwatch(on, clock)
        self.records: deque[StepRecord] = deque(maxlen=history)
        self.steps = 0

    def record(self, batch: Any, seconds: float) -> StepRecord:
        """Cost a finished step of ``seconds`` on ``batch`` (after the clock stopped, so that a
        first trace of a new shape is not timed) and keep its record."""
        return self.record_micro([batch], seconds)

    def record_micro(self, batches: Sequence[Any], seconds: float) -> StepRecord:
        """A step over several micro-batches (gradient accumulation): each one's forward,
        backward and recomputation, and one optimizer step."""
        steps = [self.counter.flops(b) for b in batches]
        flops = steps[0] if len(steps) == 1 else replace(
            steps[0], forward=sum(s.forward for s in steps), backward=sum(s.backward for s in steps),
            recompute=sum(s.recompute for s in steps), signature=tuple(s.signature for s in steps))
        counts = [batch_counts(self.counter.model_inputs(b)) for b in batches]
        samples = None if any(c[0] is None for c in counts) else sum(c[0] for c in counts)
        tokens = None if any(c[1] is None for c in counts) else sum(c[1] for c in counts)
        self.steps += 1
        rec = StepRecord(self.steps, seconds, flops, samples, tokens, self.peak)
        self.records.append(rec)
        return rec


class MFUMeter(Meter):
    """Per-step samples/s (tokens/s when the batch has token ids), achieved FLOP/s, MFU and HFU
    of a plain loop. ``step(batch)`` ends the step that began at the previous ``step`` (or at
    ``start()`` / entering the ``with`` block); ``measure(batch)`` times one block. ``log``: a
    callable given each step's ``metrics()`` dict (e.g. ``wandb.log``). Arguments as for
    :class:`flopmeter.mfu.StepCounter` and :func:`flopmeter.mfu.resolve_peak`; ``device`` names a
    row of the device table (the count follows the model's own device)."""

    def __init__(self, model: nn.Module, *, log: Callable[[dict], Any] | None = None, prefix: str = "flopmeter/",
                 **kwargs):
        super().__init__(model, **kwargs)
        self.log, self.prefix = log, prefix

    def __enter__(self) -> "MFUMeter":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopwatch.started = None

    def start(self) -> None:
        self.stopwatch.start()

    def step(self, batch: Any) -> StepRecord:
        seconds = self.stopwatch.stop()
        if seconds is None:
            from ..errors import OptionsError
            raise OptionsError("MFUMeter.step() before the clock started",
                               hint="call meter.start() before the first step, or use `with MFUMeter(...) as meter:`")
        rec = self._finish(batch, seconds)
        self.stopwatch.start()
        return rec

    @contextlib.contextmanager
    def measure(self, batch: Any):
        """Time the block as one step on ``batch``; the record is ``self.records[-1]`` after it."""
        self.stopwatch.start()
        yield self
        self._finish(batch, self.stopwatch.stop())

    def _finish(self, batch: Any, seconds: float) -> StepRecord:
        rec = self.record(batch, seconds)
        if self.log is not None:
            self.log(rec.metrics(self.prefix))
        return rec


__all__ = ["MFUMeter", "Meter"]
