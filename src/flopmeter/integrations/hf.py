"""MFU in the Hugging Face Trainer: ``Trainer(..., callbacks=[FlopmeterTrainerCallback(example_batch)])``.

Each optimizer step is timed from ``on_step_begin`` to ``on_step_end`` (every micro-batch's
forward and backward, then the optimizer step), the device synchronised at both ends. The
callback keeps a record per step (``records``) and adds the averages since the last log to the
Trainer's ``logs`` in ``on_log``: ``flopmeter/step_flops``, ``flopmeter/flops_per_s``,
``flopmeter/samples_per_s`` (``tokens_per_s`` with token ids), ``flopmeter/mfu`` and
``flopmeter/hfu``.

A TrainerCallback does not see the batches, so the step's shape comes from ``example_batch``
(one micro-batch as the collator makes it; fixed-length training, as with packed or
``max_length``-padded text), or, for varying shapes, from the batches a wrapped collator
made: ``data_collator=callback.observe(collator)`` (the collator must run in the main process,
``dataloader_num_workers=0``). The optimizer is the Trainer's (``optimizer="auto"``).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from ..errors import MissingDependencyError, OptionsError

try:
    from transformers import TrainerCallback
except ImportError:                       # pragma: no cover - depends on the environment
    raise MissingDependencyError("transformers", "hf") from None

from ..mfu import optimizer_name
from .loop import Meter


class FlopmeterTrainerCallback(TrainerCallback):
    """Step FLOPs, throughput, MFU and HFU of every optimizer step of a ``transformers.Trainer``.

    ``example_batch``: a micro-batch like those the Trainer feeds the model (a dict of tensors),
    or None with :meth:`observe`. Other arguments as for
    :class:`flopmeter.integrations.lightning.FlopmeterCallback`."""

    def __init__(self, example_batch: Any = None, *, inputs: Callable[[Any], Any] | None = None,
                 loss: Any = "auto", optimizer: str | None = "auto", checkpointing: bool | None = None,
                 autocast: str | None = None, convention: str = "dot", peak_flops: float | None = None,
                 device: Any = None, prefix: str = "flopmeter/", history: int = 1000, maxsize: int = 32):
        self.example_batch, self.prefix = example_batch, prefix
        self.options = dict(inputs=inputs, loss=loss, optimizer=optimizer, checkpointing=checkpointing,
                            autocast=autocast, convention=convention, peak_flops=peak_flops, device=device,
                            history=history, maxsize=maxsize)
        self.meter: Meter | None = None
        self._seen: deque = deque()          # batches the observed collator made, not yet costed
        self._micro = 0
        self._unlogged: list = []

    @property
    def records(self) -> list:
        return list(self.meter.records) if self.meter is not None else []

    def observe(self, collator: Callable[[list], Any]) -> Callable[[list], Any]:
        """The collator, also noting each batch it makes (for the step's shapes)."""
        def collate(features):
            batch = collator(features)
            self._seen.append(dict(batch) if hasattr(batch, "keys") else batch)
            return batch
        return collate

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        options = dict(self.options)
        if options["optimizer"] == "auto":
            options["optimizer"] = optimizer_name(optimizer)
        if options["autocast"] is None:
            options["autocast"] = "bf16" if args.bf16 else "fp16" if args.fp16 else None
        self.meter = Meter(model, **options)

    def on_step_begin(self, args, state, control, **kwargs):
        self._micro = 1
        if self.meter is not None:
            self.meter.stopwatch.start()

    def on_substep_end(self, args, state, control, **kwargs):
        self._micro += 1

    def on_step_end(self, args, state, control, **kwargs):
        if self.meter is None:
            return
        seconds = self.meter.stopwatch.stop()
        if seconds is None:
            return
        micro = max(self._micro, 1)
        batches = [self._seen.popleft() for _ in range(min(micro, len(self._seen)))]
        if not batches:
            if self.example_batch is None:
                raise OptionsError("FlopmeterTrainerCallback needs the shape of the batches",
                                   hint="give example_batch=, or wrap the collator: "
                                        "data_collator=callback.observe(collator)")
            batches = [self.example_batch] * micro
        self._unlogged.append(self.meter.record_micro(batches, seconds))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or not self._unlogged:
            return
        recs, self._unlogged = self._unlogged, []
        per_step = [r.metrics(self.prefix) for r in recs]
        for key in per_step[-1]:
            values = [m[key] for m in per_step if key in m]
            logs[key] = sum(values) / len(values)


__all__ = ["FlopmeterTrainerCallback"]

