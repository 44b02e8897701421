"""MFU in Lightning: ``trainer = Trainer(callbacks=[FlopmeterCallback(device="h100")])``.

Each training batch is timed from ``on_train_batch_start`` to ``on_train_batch_end`` (forward,
backward and the optimizer step of automatic optimisation), the device synchronised at both
ends, and ``flopmeter/step_flops``, ``flopmeter/flops_per_s``, ``flopmeter/samples_per_s``
(``tokens_per_s`` when the batch has token ids), ``flopmeter/mfu`` and ``flopmeter/hfu`` are
logged with ``pl_module.log_dict`` (on step). The FLOPs are those of the module's forward on
``inputs(batch)`` (default: the first element of a tuple or list batch, a dict batch as keyword
arguments), the loss, backward and the configured optimizer (``optimizer="auto"``), traced once
per batch shape. Under DDP each rank counts its local batch: the FLOPs are per rank.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import MissingDependencyError

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:                       # pragma: no cover - depends on the environment
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError:
        raise MissingDependencyError("lightning", "lightning") from None

from ..mfu import optimizer_name
from .loop import Meter


def default_inputs(batch: Any) -> Any:
    """A Lightning batch's model inputs: the first element of an ``(x, y, …)`` tuple or list;
    a dict or a tensor as it is."""
    if isinstance(batch, (list, tuple)) and batch:
        return batch[0]
    return batch


class FlopmeterCallback(Callback):
    """Log step FLOPs, throughput, MFU and HFU of every training batch.

    ``module``: the attribute of the LightningModule whose forward the step runs (default: the
    LightningModule itself). ``inputs``: batch → the model's inputs. ``loss``: as for
    :func:`flopmeter.training_flops` (under ``dot`` a loss adds no FLOPs). ``optimizer``:
    ``"auto"`` (the trainer's first optimizer), a name, or None. ``peak_flops`` / ``device``: the
    peak (see :func:`flopmeter.mfu.resolve_peak`; on CPU one of them is needed). ``records``
    keeps the last ``history`` steps.
    """

    def __init__(self, *, module: str | None = None, inputs: Callable[[Any], Any] | None = default_inputs,
                 loss: Any = "auto", optimizer: str | None = "auto", checkpointing: bool | None = None,
                 autocast: str | None = None, convention: str = "dot", peak_flops: float | None = None,
                 device: Any = None, prefix: str = "flopmeter/", history: int = 1000, maxsize: int = 32):
        super().__init__()
        self.module, self.prefix = module, prefix
        self.options = dict(inputs=inputs, loss=loss, optimizer=optimizer, checkpointing=checkpointing,
                            autocast=autocast, convention=convention, peak_flops=peak_flops, device=device,
                            history=history, maxsize=maxsize)
        self.meter: Meter | None = None

    @property
    def records(self) -> list:
        return list(self.meter.records) if self.meter is not None else []

    def on_train_start(self, trainer, pl_module) -> None:
        model = getattr(pl_module, self.module) if self.module else pl_module
        options = dict(self.options)
        if options["optimizer"] == "auto":
            options["optimizer"] = optimizer_name(trainer.optimizers[0]) if trainer.optimizers else None
        self.meter = Meter(model, **options)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.meter is not None:
            self.meter.stopwatch.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.meter is None:
            return
        seconds = self.meter.stopwatch.stop()
        if seconds is None:
            return
        rec = self.meter.record(batch, seconds)
        pl_module.log_dict(rec.metrics(self.prefix), on_step=True, on_epoch=False, batch_size=rec.samples or 1)


__all__ = ["FlopmeterCallback", "default_inputs"]
