"""One training step of the parallel program, recorded on fake tensors as rank 0 sees it.

The recorder is flopmeter's own (:class:`~flopmeter.trace.recorder.RecordingFakeMode` with a
:class:`~flopmeter.trace.recorder.Recording`, a module stack and tensor references), so every op
of the step is an event with its module and phase, costed later by the same formulas as any
count. Ops on DTensors are recorded as the ops on their local shards that DTensor runs (the mode
hands an op with DTensor arguments back to DTensor, as FakeTensorMode does, and records the local
ops it then receives); FLOPs, bytes and memory are therefore per rank.

The step is a steady-state one: the optimizer's state exists before it starts (made by one step
on zero gradients outside the recording) and the gradients of the previous step are gone
(``zero_grad(set_to_none=True)``). Phases: ``forward`` (the model and its loss), ``backward``
(ops attributed to the module whose forward made their autograd node), ``recompute`` (a
checkpointed layer's forward run again inside backward) and ``optimizer``.

FSDP2 frees and re-allocates its unsharded parameters by resizing their storages, which no op
shows; the recording wraps the two methods that do it on the program's own ``FSDPParam`` objects
(``alloc_all_gather_outputs`` and ``free_unsharded_param``, put back afterwards) and logs each
storage's new size at that point of the event sequence.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

from ...errors import FlopmeterError, ModelForwardError
from ...trace.model import ModuleInfo, ParamInfo, Trace
from ...trace.modules import ModuleStack
from ...trace.quiet import quiet_logs
from ...trace.recorder import Recording, RecordingFakeMode
from ...trace.refs import Refs
from ...trace.training import _KEY, _node_creation_hook, make_loss

# DTensor's sharding propagation runs an op once on global-shape fakes of the active fake mode to
# learn its output's metadata (the first time it meets each op schema in a process); that op is
# not part of the program, so it is not recorded
_SHADOW = frozenset({"_propagate_tensor_meta_non_cached"})
_SHADOW_DEPTH = 16


def _in_shadow() -> bool:
    frame = sys._getframe(2)
    for _ in range(_SHADOW_DEPTH):
        if frame is None:
            return False
        if frame.f_code.co_name in _SHADOW:
            return True
        frame = frame.f_back
    return False


class PlanFakeMode(RecordingFakeMode):
    """The recording fake mode; an op with tensor-subclass arguments (DTensor) is handed back to
    the subclass unrecorded (what FakeTensorMode does), and its local ops are recorded when they
    arrive. The ops of DTensor's sharding propagation (``_SHADOW``) run unrecorded."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if any(t is not FakeTensor and not issubclass(t, FakeTensor) for t in types):
            return NotImplemented
        if self.recording is not None and not self._depth and _in_shadow():
            self._depth += 1                 # and the ops it runs inside (decompositions) unrecorded too
            try:
                return FakeTensorMode.__torch_dispatch__(self, func, types, args, kwargs)
            finally:
                self._depth -= 1
        return super().__torch_dispatch__(func, types, args, kwargs)


def local(t):
    """The local shard of a DTensor, else the tensor."""
    return getattr(t, "_local_tensor", t)


@dataclass
class StepRecord:
    trace: Trace
    resizes: list[tuple[int, int, int]]         # (event index, storage id, new bytes)
    kinds: dict[str, set[int]]                  # memory kind → storage ids
    param_storages: dict[int, str] = field(default_factory=dict)


def fsdp_params(model: nn.Module) -> list:
    """The FSDPParam objects of every ``fully_shard``ed module of ``model``."""
    found = []
    for m in model.modules():
        get = getattr(m, "_get_fsdp_state", None)
        group = getattr(get(), "_fsdp_param_group", None) if get is not None else None
        if group is not None:
            found.extend(group.fsdp_params)
    return found


@contextlib.contextmanager
def resizes_logged(params: list, refs: Refs, log: list):
    """Log (event index, storage id, bytes) after each alloc/free of an FSDPParam's unsharded storage."""
    def wrap(fp, name):
        original = getattr(fp, name)

        def logged(*args, **kwargs):
            result = original(*args, **kwargs)
            for t in (*fp.all_gather_outputs, *getattr(fp, "_unsharded_inner_tensors", ())):
                log.append((refs.events, refs.ref(t).storage, t.untyped_storage().nbytes()))
            return result
        fp.__dict__[name] = logged

    try:
        for fp in params:
            wrap(fp, "alloc_all_gather_outputs")
            wrap(fp, "free_unsharded_param")
        yield
    finally:
        for fp in params:
            fp.__dict__.pop("alloc_all_gather_outputs", None)
            fp.__dict__.pop("free_unsharded_param", None)


def _accepts_labels(model: nn.Module) -> bool:
    import inspect
    try:
        return "labels" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def warm_optimizer(optimizer, params: list[torch.Tensor]) -> None:
    """One step on zero gradients (unrecorded), so the recorded step finds the optimizer's state
    as every step after the first does; then the gradients are dropped."""
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def record_step(model: nn.Module, mode: PlanFakeMode, ids: torch.Tensor, optimizer, *, amp=None,
                device: str = "cpu") -> StepRecord:
    """Record forward (with the loss), backward and the optimizer step of ``model`` on token ids
    ``ids`` (fakes of ``mode``); see the module docstring."""
    step = _Step(model, mode, optimizer, amp)
    inputs = [step.refs.ref(ids, "input", -1)]
    step.kinds["inputs"].add(inputs[0].storage)
    try:
        step.run(ids)
    except FlopmeterError:
        raise
    except Exception as exc:
        raise _step_error(exc, step.recording, step.stack) from exc
    return step.result(inputs, device)


class _Step:
    """The recorder's state for one step: tensor references, memory kinds, module stack, events."""

    def __init__(self, model: nn.Module, mode: PlanFakeMode, optimizer, amp):
        self.model, self.mode, self.optimizer, self.amp = model, mode, optimizer, amp
        self.refs = refs = Refs()
        self.params = [p for p in model.parameters()]
        self.kinds: dict[str, set[int]] = {k: set() for k in (
            "parameters", "buffers", "gradients", "optimizer state", "unsharded parameters", "inputs")}
        for p in self.params:
            self.kinds["parameters"].add(refs.ref(local(p), "param", -1).storage)
        for b in model.buffers():
            self.kinds["buffers"].add(refs.ref(local(b), "buffer", -1).storage)
        for state in optimizer.state.values():
            for v in state.values():
                if isinstance(v, torch.Tensor):
                    self.kinds["optimizer state"].add(refs.ref(local(v), "buffer", -1).storage)
        self.modules = list(model.named_modules())
        self.stack = ModuleStack(self.modules, meta=refs.meta)
        self.recording = Recording(self.stack, refs)
        self.resizes: list[tuple[int, int, int]] = []
        self.fsdp = fsdp_params(model)

    def tag(self, node) -> None:
        node.metadata[_KEY] = self.stack.where()

    def backward_where(self):
        if self.stack.stack:              # a checkpointed forward run again inside backward
            self.recording.phase = "recompute"
            return self.stack.where()
        self.recording.phase = "backward"
        node = torch._C._current_autograd_node()
        found = node.metadata.get(_KEY) if node is not None else None
        return found if found is not None else ("", ())

    def run(self, ids: torch.Tensor) -> None:
        model, refs, recording, kinds = self.model, self.refs, self.recording, self.kinds
        labels = _accepts_labels(model)
        with quiet_logs(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with self.stack.installed(), self.mode.recording_to(recording), \
                    resizes_logged(self.fsdp, refs, self.resizes), self.mode, _node_creation_hook()(self.tag):
                try:
                    with self.amp if self.amp is not None else contextlib.nullcontext():
                        out = model(input_ids=ids, labels=ids) if labels else model(ids)
                        loss = out.loss if labels and getattr(out, "loss", None) is not None else \
                            make_loss("cross-entropy", out)
                    refs.meta(loss)
                    recording.where = self.backward_where
                    loss.backward()
                finally:
                    recording.where = self.stack.where
                recording.phase = "optimizer"
                for p in self.params:
                    if p.grad is not None:
                        kinds["gradients"].add(refs.ref(local(p.grad)).storage)
                self.optimizer.step()
                for fp in self.fsdp:
                    for t in (*fp.all_gather_outputs, *getattr(fp, "_unsharded_inner_tensors", ())):
                        kinds["unsharded parameters"].add(refs.ref(t).storage)
                del out, loss
                self.optimizer.zero_grad(set_to_none=True)

    def result(self, inputs: list, device: str) -> StepRecord:
        refs, stack = self.refs, self.stack
        storages = refs.close()
        names = {id(p): n for n, p in self.model.named_parameters()}
        table = []
        for p in self.params:
            r = refs.id_of(local(p))
            table.append(ParamInfo(names.get(id(p), "?"), "param", tuple(local(p).shape), p.dtype, p.requires_grad,
                                   tensor=r.id if r else -1, storage=r.storage if r else -1))
        modules = [ModuleInfo(path, type(m).__name__, stack.calls.get(path, 0), list(stack.outputs.get(path, [])))
                   for path, m in self.modules]
        trace = Trace(events=self.recording.events, modules=modules, params=table, inputs=inputs,
                      options={"mode": "fake", "device": device, "inference": False, "training": True,
                               "loss": "cross-entropy", "optimizer": type(self.optimizer).__name__.lower()},
                      storages=storages, model=type(self.model).__name__, torch_version=torch.__version__)
        return StepRecord(trace, self.resizes, self.kinds)


def _step_error(exc: Exception, recording, stack) -> ModelForwardError:
    failure = recording.failure
    module = failure.module if failure is not None else (stack.error_stack[-1][0] if stack.error_stack else "")
    where = f" in {failure.op}" if failure is not None else ""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelForwardError(f"the parallelized training step failed ({recording.phase}) in "
                             f"'{module or 'the root module'}'{where}: {type(exc).__name__}: {first[:300]}",
                             module=module, op=failure.op if failure is not None else None, shapes=None,
                             hint="check that the model runs a training step unparallelized (--tp 1, no --fsdp), "
                                  "then that the tensor-parallel plan fits it; add --debug for the traceback")


__all__ = ["PlanFakeMode", "StepRecord", "fsdp_params", "local", "record_step", "warm_optimizer"]
