"""Attribution of ops to modules: a stack of module paths, kept for one run only.

Each module of the tree the forward runs on — the run's own shadow copy (:func:`.fakes.shadow`),
never the user's modules — gets, for the run, an instance-level ``forward`` that pushes the
module's path, calls the forward it had and pops it again (:meth:`ModuleStack.installed`;
taken off in ``finally``). Nothing is registered in torch's global hook registry, so a forward
running in another thread meanwhile is neither seen nor slowed, and a module call keeps
``nn.Module``'s fast path (a global hook sends every call through the slow one; on vgg16 the
count went from 2.1 to 1.8 times a meta-device forward, measured side by side). A module
whose ``forward`` is called directly is attributed like one called through ``__call__`` (but
from inside its own forward: ``self.forward(item)`` is part of the call it is in).
Modules outside the counted model (say one built inside
``forward``) are not pushed: their ops go to the enclosing module. Each call's outputs are kept
as metadata, and its inputs (positional and keyword) when ``keep_inputs`` is set (``explain``
needs them; a plain count does not).
"""

from __future__ import annotations

import sys
import types
from collections import defaultdict
from contextlib import contextmanager

import torch
from torch import nn

from .events import to_meta


class ModuleStack:
    def __init__(self, modules: list[tuple[str, nn.Module]], *, keep_inputs: bool = False, meta=to_meta):
        """``modules``: the run's ``named_modules()`` pairs (a shared module once, under its first
        and canonical name)."""
        self.keep_inputs = keep_inputs
        self.meta = meta                 # tensor structure → TensorRefs (the run's identities)
        self.modules = modules
        self.names: dict[int, str] = {id(m): name for name, m in modules}
        self.stack: tuple = ()           # ((path, call_index), …), outermost first
        self.current: str = ""           # innermost path, "" before the root is entered
        self.calls: dict[str, int] = defaultdict(int)
        self.outputs: dict[str, list] = defaultdict(list)   # path → output metas per call
        self.inputs: dict[str, list] = defaultdict(list)    # path → (args, kwargs) metas per call
        self.error_stack: tuple | None = None   # the stack of the innermost call the failing exception left
        self._raised: int | None = None         # id() of that exception (never the object: its frames hold tensors)
        self.around: dict | None = None         # path → run(forward, args, kwargs) that calls it (device kernels)

    def call(self, name: str, forward, args: tuple, kwargs: dict):
        """``forward(*args, **kwargs)`` as a call of the module at ``name``."""
        calls = self.calls
        idx = calls[name]
        calls[name] = idx + 1
        outer = self._enter(name, idx)
        try:
            around = self.around.get(name) if self.around else None
            output = forward(*args, **kwargs) if around is None else around(forward, args, kwargs)
        except BaseException as exc:
            # the innermost call it left; the same exception (or one raised while handling it)
            # passing through the outer calls keeps that stack, a later one replaces it
            if self._raised is None or not _caused_by(exc, self._raised):
                self._raised, self.error_stack = id(exc), self.stack
            raise
        finally:
            self.stack, self.current = outer
        self._raised = None                     # an exception caught on the way is over
        if self.keep_inputs:
            self.inputs[name].append((self.meta(args), self.meta(kwargs)))
        self.outputs[name].append(self.meta(output))
        return output

    def where(self) -> tuple[str, tuple]:
        """(innermost module path, whole stack): where an op running now belongs."""
        return self.current, self.stack

    @contextmanager
    def installed(self):
        """Route the forward of every module given through :meth:`call` for the duration; an
        instance-level ``forward`` a module already had (replay's, a compiled module's) is called
        inside. A TorchScript submodule's copy is wrapped too (its call from Python is one call,
        its own submodules run no Python); a scripted *model* runs as is, not wrapped (its
        modules are the user's: :func:`.run.record` pushes its root with :meth:`call`). The
        module's own forward pre-hooks (``weight_norm``'s, say) run inside its call too; its
        forward hooks run in its parent's, as they did under global hooks. The modules must be
        the run's own copies: their hook dicts are changed in place (and put back)."""
        wrapped: list[tuple[dict, object]] = []
        hooks: list[tuple[dict, dict]] = []
        try:
            for name, m in self.modules:
                d = m.__dict__
                own = d.get("forward", _NONE)
                try:
                    forward = m.forward
                except AttributeError:        # a TorchScript container (a scripted ModuleList) has none
                    continue
                d["forward"] = self._wrapper(name, forward)
                wrapped.append((d, own))
                pre = d.get("_forward_pre_hooks")
                if pre:
                    hooks.append((pre, dict(pre)))
                    for k, hook in hooks[-1][1].items():
                        pre[k] = self._pre_hook(name, hook)
            yield self
        finally:
            for d, own in wrapped:
                if own is _NONE:
                    d.pop("forward", None)
                else:
                    d["forward"] = own
            for pre, originals in hooks:
                pre.update(originals)

    def _wrapper(self, name: str, forward):
        call = self.call

        def forward_in_stack(*args, **kwargs):
            if self.stack and self.current == name and sys._getframe(1).f_code not in _MODULE_CALLS:
                return forward(*args, **kwargs)     # its forward calling self.forward(…): part of this call
            return call(name, forward, args, kwargs)
        forward_in_stack.__wrapped__ = forward       # inspect.signature(module.forward) still reads the model's
        for attr in ("__self__", "__func__"):         # what a bound method has (self.forward.__func__ is …)
            value = getattr(forward, attr, _NONE)
            if value is not _NONE:
                setattr(forward_in_stack, attr, value)
        return forward_in_stack

    def _pre_hook(self, name: str, hook):
        """``hook`` run as part of the next call of the module at ``name``."""
        def hook_in_stack(*args, **kwargs):
            outer = self._enter(name, self.calls[name])
            try:
                return hook(*args, **kwargs)
            finally:
                self.stack, self.current = outer
        return hook_in_stack

    def _enter(self, name: str, idx: int) -> tuple[tuple, str]:
        """Push call ``idx`` of the module at ``name``; returns what to restore (stack, current)."""
        outer = self.stack, self.current
        self.stack = outer[0] + ((name, idx),)
        self.current = name
        return outer


_NONE = object()
# nn.Module's own calls of ``self.forward`` (``module(…)``, under jit tracing too): a new call even
# inside the module's own forward (a recursion through ``self(…)``, pushed under global hooks too)
def _codes(*functions) -> frozenset:
    """The code objects of ``functions`` and of the functions nested in them (``_call_impl``
    calls the forward from a nested ``inner`` when the module has hooks)."""
    out, todo = set(), [f.__code__ for f in functions]
    while todo:
        code = todo.pop()
        out.add(code)
        todo.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return frozenset(out)


_MODULE_CALLS = _codes(nn.Module._call_impl, nn.Module._slow_forward)


def _caused_by(exc: BaseException | None, earlier: int) -> bool:
    """Whether ``exc`` is the exception with id ``earlier`` (alive: it is being raised) or was
    raised while handling it (its ``__cause__``/``__context__`` chain, which keeps it alive)."""
    for _ in range(100):                     # a chain can cycle; a long one is cut short
        if exc is None:
            return False
        if id(exc) == earlier:
            return True
        exc = exc.__cause__ or exc.__context__
    return False
