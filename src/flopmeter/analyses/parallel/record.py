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
            return FakeTensorMode.__torch_dispatch__(self, func, types, args, kwargs)
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
    refs = Refs()
    params = [p for p in model.parameters()]
    names = {id(p): n for n, p in model.named_parameters()}
    kinds: dict[str, set[int]] = {k: set() for k in ("parameters", "buffers", "gradients", "optimizer state",
                                                        "unsharded parameters", "communication buffers", "inputs")}
    for p in params:
        kinds["parameters"].add(refs.ref(local(p), "param", -1).storage)
    for b in model.buffers():
        kinds["buffers"].add(refs.ref(local(b), "buffer", -1).storage)
    for state in optimizer.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor):
                kinds["optimizer state"].add(refs.ref(local(v), "buffer", -1).storage)
    inputs = [refs.ref(ids, "input", -1)]
    kinds["inputs"].add(inputs[0].storage)
    modules = list(model.named_modules())
    stack = ModuleStack(modules, meta=refs.meta)
    recording = Recording(stack, refs)
    resizes: list[tuple[int, int, int]] = []
    fsdp = fsdp_params(model)

    def tag(node) -> None:
        node.metadata[_KEY] = stack.where()

    def backward_where():
        if stack.stack:                   # a checkpointed forward run again inside backward
            recording.phase = "recompute"
            return stack.where()
        recording.phase = "backward"
        node = torch._C._current_autograd_node()
        found = node.metadata.get(_KEY) if node is not None else None
        return found if found is not None else ("", ())

    labels = _accepts_labels(model)
    with quiet_logs(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with stack.installed(), mode.recording_to(recording), resizes_logged(fsdp, refs, resizes), mode, \
                _node_creation_hook()(tag):
            try:
                with amp if amp is not None else contextlib.nullcontext():
                    out = model(input_ids=ids, labels=ids) if labels else model(ids)
                    loss = out.loss if labels and getattr(out, "loss", None) is not None else \
                        make_loss("cross-entropy", out)
                refs.meta(loss)
                recording.where = backward_where
                loss.backward()
            finally:
                recording.where = stack.where
            recording.phase = "optimizer"
            for p in params:
                if p.grad is not None:
                    kinds["gradients"].add(refs.ref(local(p.grad)).storage)
            optimizer.step()
            for fp in fsdp:
                for t in (*fp.all_gather_outputs, *getattr(fp, "_unsharded_inner_tensors", ())):
                    kinds["unsharded parameters"].add(refs.ref(t).storage)
            del out, loss
            optimizer.zero_grad(set_to_none=True)
    storages = refs.close()
    table = []
    for p in params:
        r = refs.id_of(local(p))
        shape = tuple(local(p).shape)
        table.append(ParamInfo(names.get(id(p), "?"), "param", shape, p.dtype, p.requires_grad,
                               tensor=r.id if r else -1, storage=r.storage if r else -1))
    module_table = [ModuleInfo(path, type(m).__name__, stack.calls.get(path, 0), list(stack.outputs.get(path, [])))
                    for path, m in modules]
    trace = Trace(events=recording.events, modules=module_table, params=table, inputs=inputs,
                  options={"mode": "fake", "device": device, "inference": False, "training": True,
                           "loss": "cross-entropy", "optimizer": type(optimizer).__name__.lower()},
                  storages=storages, model=type(model).__name__, torch_version=torch.__version__)
    return StepRecord(trace, resizes, kinds)


__all__ = ["PlanFakeMode", "StepRecord", "fsdp_params", "local", "record_step", "warm_optimizer"]
