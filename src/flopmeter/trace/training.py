"""One training step under the recorder: forward with autograd, a loss, backward, an optimizer step.

Runs on the shadow module tree (:func:`.fakes.shadow`) put in train mode — the user's
modules keep their ``training`` flags. Phases stamped on the events:

- ``forward``: the model's forward and the loss (the loss at the root module);
- ``backward``: every op the autograd engine runs in ``loss.backward()``, attributed to the
  module whose forward created the autograd node being run (``node_creation_hook`` tags each
  node with the module stack at creation; backward looks up ``_current_autograd_node()``);
- ``recompute``: a module's forward run again inside backward (``torch.utils.checkpoint``),
  attributed by the module stack as in the forward;
- ``optimizer``: ``optimizer.step()`` on the stand-in parameters (PyTorch's own optimizer,
  ``foreach`` where PyTorch picks it by default: on devices with foreach kernels, i.e. not CPU);
  a parameter that ``TrainSpec.shards`` names is stepped as a tensor of its shard's shape and
  dtype (with a gradient of the same), as a data-parallel rank of a sharded model steps its part.

Master weights (``TrainSpec.master_weights="fp32"``, mixed precision with 16-bit compute
weights): a float32 copy of every 16-bit trainable parameter exists before the step (role
``master``, as the optimizer's state does in a training loop); after backward each 16-bit
gradient is copied into a float32 gradient of its master and dropped, the optimizer steps the
masters (its state in float32), and each master is copied back into its 16-bit weight. Bytes a
parameter holds at the step: 2 (weight) + 4 (master) + 4 (float32 gradient) + the optimizer's
state in float32 (Adam: 4 + 4).

Memory the step keeps: saved-for-backward storages (seen by ``saved_tensors_hooks`` during
forward and loss; parameters and buffers excluded, inputs included) per module, gradient
bytes and optimizer state bytes (and the dtypes of that state), in ``trace.extra["training"]``,
with the storage ids of the gradients and of the optimizer state (the memory timeline gives
them roles of their own).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.autograd.graph import saved_tensors_hooks
from torch.utils._foreach_utils import _get_foreach_kernels_supported_devices

from ..errors import InputError, OptionsError
from .state import gradients_kept

LOSSES = ("sum", "cross-entropy")
OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw")
MASTER_WEIGHTS = ("fp32", "none")
_KEY = "flopmeter.where"


def supported() -> bool:
    """Whether this PyTorch can count a training step: it needs
    ``torch.autograd.graph.node_creation_hook`` (newer releases than 2.11), which tags each
    autograd node with the module that created it, which is how backward ops find their module."""
    return hasattr(torch.autograd.graph, "node_creation_hook")


def _node_creation_hook():
    """``torch.autograd.graph.node_creation_hook``, or a clear error where :func:`supported` is False."""
    if not supported():
        raise OptionsError(f"counting a training step needs a newer PyTorch than {torch.__version__} "
                           "(torch.autograd.graph.node_creation_hook, to attribute backward ops to modules)",
                           hint="upgrade torch, or count the forward only")
    return torch.autograd.graph.node_creation_hook


@dataclass(frozen=True)
class TrainSpec:
    """What a training step does after the forward: ``loss`` (a name from LOSSES or
    ``fn(output) -> scalar tensor``), ``optimizer`` (a name from OPTIMIZERS, or None) and
    ``shards``: (parameter name, shape, dtype) of the part of a parameter the optimizer steps,
    for a rank of a sharded data-parallel model (FSDP2: the rank's local shard); a parameter
    under none of its names is stepped whole."""

    loss: str | Callable = "sum"
    optimizer: str | None = None
    shards: tuple[tuple[str, tuple[int, ...], torch.dtype], ...] = ()
    master_weights: str | None = None          # "fp32": a float32 master copy of 16-bit weights

    def __post_init__(self):
        if self.master_weights not in (None, "fp32"):
            raise OptionsError(f"unknown master weights '{self.master_weights}'",
                               hint="'fp32' (a float32 copy of 16-bit weights that the optimizer updates) or None")
        if self.master_weights and self.optimizer is None:
            raise OptionsError("master weights are what an optimizer updates; there is no optimizer step",
                               hint="add an optimizer (--optimizer adamw), or leave the master weights out")
        if isinstance(self.loss, str) and self.loss not in LOSSES:
            from ..errors import did_you_mean
            raise OptionsError(f"unknown loss '{self.loss}'",
                               hint=did_you_mean(self.loss, LOSSES, otherwise=f"choose one of: {', '.join(LOSSES)}"))
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            from ..errors import did_you_mean
            raise OptionsError(f"unknown optimizer '{self.optimizer}'",
                               hint=did_you_mean(self.optimizer, OPTIMIZERS,
                                                 otherwise=f"choose one of: {', '.join(OPTIMIZERS)}"))

    @property
    def loss_name(self) -> str:
        return self.loss if isinstance(self.loss, str) else getattr(self.loss, "__name__", "callable")


def _float_outputs(result: Any) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []

    def walk(v):
        if isinstance(v, torch.Tensor):
            if v.is_floating_point() and v.requires_grad:
                found.append(v)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
    walk(result)
    return found


def make_loss(loss: str | Callable, result: Any) -> torch.Tensor:
    """The scalar to differentiate: the sum of every float output that needs a gradient, the
    cross-entropy of the logits (``.logits`` of a Hugging Face output, else the first output)
    against class 0, or the user's callable."""
    if callable(loss):
        value = loss(result)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise InputError("the loss callable must return a scalar tensor", hint="for example lambda out: out.sum()")
        return value
    if loss == "cross-entropy":
        logits = result.get("logits") if isinstance(result, dict) else None
        if logits is None:
            outs = _float_outputs(result)
            logits = outs[0] if outs else None
        if logits is None or logits.ndim < 2:
            raise InputError("cross-entropy needs logits of shape (batch, …, classes)",
                             hint="use --loss sum, or a loss callable from Python")
        flat = logits.reshape(-1, logits.shape[-1])
        target = torch.zeros(flat.shape[0], dtype=torch.long, device=flat.device)
        return torch.nn.functional.cross_entropy(flat, target)
    outs = _float_outputs(result)
    if not outs:
        raise InputError("no output of the model needs a gradient (every parameter frozen and no input needs one)",
                         hint="unfreeze a parameter or give an input with requires_grad=True")
    total = outs[0].sum()
    for t in outs[1:]:
        total = total + t.sum()
    return total


def make_optimizer(name: str, params: list[torch.Tensor], device: torch.device):
    foreach = device.type in _get_foreach_kernels_supported_devices()   # PyTorch's default choice
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.1, foreach=foreach)
    if name == "sgd-momentum":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, foreach=foreach)
    if name == "adam":
        return torch.optim.Adam(params, foreach=foreach)
    return torch.optim.AdamW(params, foreach=foreach)


class _Saved:
    """Pack hook: which storages autograd keeps, and in which module they were first saved."""

    def __init__(self, refs, stack):
        self.refs, self.stack = refs, stack
        self.where: dict[int, str] = {}      # storage id → module path

    def pack(self, t: torch.Tensor):
        sid = self.refs.ref(t).storage
        if sid >= 0 and sid not in self.where:
            self.where[sid] = self.stack.current
        return t

    @staticmethod
    def unpack(t):
        return t


def train_step(model, args: tuple, kwargs: dict, recorder, recording, stack, refs, spec: TrainSpec,
               device: torch.device, owners: dict[int, tuple], amp=None, shards: dict | None = None) -> dict:
    """Run the step (see the module docstring); ``owners``: id(stand-in parameter) → (the
    stand-in, the path of the module that owns it); ``shards``: id(stand-in parameter) →
    (shape, dtype) of the part the optimizer steps (:attr:`TrainSpec.shards`).
    Returns the memory facts for ``trace.extra["training"]``; gradients and optimizer state
    are dropped before returning (the stand-ins are cached between counts)."""
    saved = _Saved(refs, stack)

    def tag(node) -> None:
        node.metadata[_KEY] = stack.where()

    def backward_where():
        if stack.stack:                   # a forward run again inside backward (checkpointing)
            recording.phase = "recompute"
            return stack.where()
        recording.phase = "backward"
        node = torch._C._current_autograd_node()
        if node is not None:
            found = node.metadata.get(_KEY)
            if found is not None:
                return found
        return "", ()

    node_creation_hook = _node_creation_hook()
    optimizer = None
    params = [p for p, _ in owners.values()]
    trainable = [p for p in params if p.requires_grad]
    masters = _masters(trainable, recorder, refs) if spec.master_weights else {}
    if masters and shards:
        raise OptionsError("fp32 master weights of a sharded model's parameters are not traced",
                           hint="leave master_weights out for a sharded (FSDP2) model")
    stepped = trainable
    try:
        with recorder, node_creation_hook(tag):
            with saved_tensors_hooks(saved.pack, saved.unpack), amp if amp is not None else contextlib.nullcontext():
                result = model(*args, **kwargs)
                refs.meta(result)
                loss = make_loss(spec.loss, result)
            if not loss.requires_grad:
                raise InputError("the loss does not depend on anything that needs a gradient",
                                 hint="unfreeze a parameter or give an input with requires_grad=True")
            refs.meta(loss)
            recording.where = backward_where
            with gradients_kept(loss, {id(p) for p in params}):
                loss.backward()
            recording.where = stack.where
            recording.phase = "optimizer"
            start = len(recording.events)
            grads = {refs.ref(p.grad).storage: p.grad.untyped_storage().nbytes()
                     for p in trainable if p.grad is not None}
            stepped, stepped_owners = trainable, owners
            if masters:
                for p, m in masters.items():       # 16-bit gradient → float32 gradient of the master, one at a time
                    if p.grad is not None:
                        m.grad = p.grad.to(torch.float32)
                        p.grad = None
                stepped = [masters.get(p, p) for p in trainable]
            if spec.optimizer is not None and stepped:
                if shards and not masters:
                    stepped, stepped_owners = _stepped(trainable, owners, shards)
                optimizer = make_optimizer(spec.optimizer, stepped, device)
                optimizer.step()
                if masters:
                    with torch.no_grad():
                        for p, m in masters.items():
                            p.copy_(m)             # the updated master back into the 16-bit weight
                _attribute_optimizer(recording.events, start, optimizer, stepped_owners, refs, masters)
        state: dict[int, tuple[int, str]] = {}
        if optimizer is not None:
            for per_param in optimizer.state.values():
                for v in per_param.values():
                    if isinstance(v, torch.Tensor):
                        state[refs.ref(v).storage] = (v.untyped_storage().nbytes(), str(v.dtype).removeprefix("torch."))
        state_dtypes: dict[str, int] = {}
        for nbytes, dtype in state.values():
            state_dtypes[dtype] = state_dtypes.get(dtype, 0) + nbytes
        del result, loss
        grad_storages = set(grads) | {refs.ref(t.grad).storage for t in stepped if t.grad is not None}
        info = {"saved": dict(saved.where), "grad_bytes": sum(grads.values()),
                "optimizer_state_bytes": sum(n for n, _ in state.values()), "optimizer_state_dtypes": state_dtypes,
                "grad_storages": sorted(grad_storages), "state_storages": sorted(state)}
        if masters:
            info.update(master_weights="fp32", master_storages=sorted({refs.ref(m).storage for m in masters.values()}),
                        master_bytes=sum(m.untyped_storage().nbytes() for m in masters.values()),
                        master_grad_bytes=sum(m.grad.untyped_storage().nbytes() for m in masters.values()
                                              if m.grad is not None))
        return info
    finally:
        recording.where = stack.where
        for p in params:
            p.grad = None
        for m in masters.values():
            m.grad = None
        optimizer = None


def _stepped(trainable: list, owners: dict[int, tuple], shards: dict[int, tuple]) -> tuple[list, dict]:
    """The tensors the optimizer steps, and their owners: each trainable stand-in, or for one
    in ``shards`` that has a gradient, a new tensor of its shard's shape and dtype with a
    gradient of the same (made under the run's mode: a fake one in a fake run; its values are
    never read there)."""
    stepped, stepped_owners = [], dict(owners)
    for p in trainable:
        part = shards.get(id(p))
        if part is None or p.grad is None:
            stepped.append(p)
            continue
        shape, dtype = part
        with torch.no_grad():
            local = p.new_empty(shape, dtype=dtype)
            grad = p.grad.new_empty(shape, dtype=dtype)
        local.requires_grad_(True)
        local.grad = grad
        stepped.append(local)
        stepped_owners[id(local)] = (local, owners[id(p)][1])
    return stepped, stepped_owners


def _masters(trainable: list[torch.Tensor], recorder, refs) -> dict[torch.Tensor, torch.Tensor]:
    """A float32 master of every 16-bit trainable stand-in, made without an op (it exists before
    the step) and referenced as existing before the run with role ``master``."""
    from torch._subclasses.fake_tensor import FakeTensorMode, unset_fake_temporarily

    sixteen = [p for p in trainable if p.dtype in (torch.float16, torch.bfloat16)]
    if not sixteen:
        dtypes = ", ".join(sorted({str(p.dtype).removeprefix("torch.") for p in trainable})) or "none trainable"
        raise OptionsError(f"fp32 master weights keep a float32 copy of 16-bit weights; the trainable weights "
                           f"are {dtypes}", hint="float32 weights are their own master: leave --master-weights out "
                                                 "(peft keeps LoRA adapters in float32 on a 16-bit base), or count "
                                                 "with 16-bit weights (--dtype bfloat16)")
    masters = {}
    for p in sixteen:
        if isinstance(recorder, FakeTensorMode):
            with unset_fake_temporarily():
                meta = torch.empty_strided(p.shape, p.stride(), dtype=torch.float32, device="meta")
                m = recorder.fake(meta, p.device)
        else:
            with torch.no_grad():
                m = p.detach().to(torch.float32)
        m.requires_grad_(True)
        refs.ref(m, role="master", created=-1)
        masters[p] = m
    return masters


def _attribute_optimizer(events: list, start: int, optimizer, owners: dict[int, tuple], refs,
                         masters: dict | None = None) -> None:
    """Give each optimizer op the module owning the parameter it works on (by the storage of
    the parameter, its gradient, its state or a temporary made from them among the op's
    tensors; a ``foreach`` op over many parameters stays at the root)."""
    from dataclasses import replace

    owner: dict[int, str] = {}
    masters = masters or {}
    for p, path in owners.values():
        m = masters.get(p)
        tensors = [p, p.grad, *[v for v in optimizer.state.get(p, {}).values() if isinstance(v, torch.Tensor)]]
        if m is not None:
            tensors += [m, m.grad, *[v for v in optimizer.state.get(m, {}).values() if isinstance(v, torch.Tensor)]]
        for t in tensors:
            if t is not None:
                owner[refs.ref(t).storage] = path
    for i in range(start, len(events)):
        ev = events[i]
        paths = {owner.get(t.storage) for t in ev.inputs + ev.outputs} - {None}
        if len(paths) == 1:
            path = paths.pop()
            for t in ev.outputs:            # temporaries (denom = sqrt(v)/…) belong to the same parameter
                owner.setdefault(t.storage, path)
            parts = path.split(".") if path else []
            stack = (("", 0),) + tuple((".".join(parts[:k]), 0) for k in range(1, len(parts) + 1))
            events[i] = replace(ev, module=path, stack=stack)
