"""Attribution of ops to modules: a stack of module paths, kept for one run only.

It uses PyTorch's *global* module hooks (``register_module_forward_pre_hook`` and
``register_module_forward_hook``), which live in torch's registry, not on the user's
modules; both handles are removed in ``finally``. Modules outside the counted model
(say one built inside ``forward``) are not pushed: their ops go to the enclosing module.
Each call's outputs are kept as metadata, and its inputs (positional and keyword) when
``keep_inputs`` is set (``explain`` needs them; a plain count does not).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules import module as module_mod

from .events import to_meta


class ModuleStack:
    def __init__(self, modules: list[tuple[str, nn.Module]], *, keep_inputs: bool = False, meta=to_meta):
        """``modules``: the run's ``named_modules()`` pairs (a shared module once, under its first
        and canonical name)."""
        self.keep_inputs = keep_inputs
        self.meta = meta                 # tensor structure → TensorRefs (the run's identities)
        self.names: dict[int, str] = {id(m): name for name, m in modules}
        self.stack: tuple = ()           # ((path, call_index), …), outermost first
        self.current: str = ""           # innermost path, "" before the root is entered
        self._pushed: list[int] = []     # ids of modules pushed, to pop symmetrically
        self.calls: dict[str, int] = defaultdict(int)
        self.outputs: dict[str, list] = defaultdict(list)   # path → output metas per call
        self.inputs: dict[str, list] = defaultdict(list)    # path → (args, kwargs) metas per call
        self.error_stack: tuple | None = None   # the stack when a forward first raised

    def _pre(self, module, args):
        name = self.names.get(id(module))
        if name is None:
            return
        idx = self.calls[name]
        self.calls[name] = idx + 1
        self._pushed.append(id(module))
        self.stack = self.stack + ((name, idx),)
        self.current = name

    def _post(self, module, args, *rest):
        # (kwargs, output) normally; torch calls always_call hooks without kwargs when forward raised
        kwargs, output = rest if len(rest) == 2 else ({}, rest[0])
        if not self._pushed or self._pushed[-1] != id(module):
            return
        self._pushed.pop()
        name = self.stack[-1][0]
        if sys.exc_info()[1] is not None and output is None:
            # always_call hooks run inside torch's `except` block when forward raised
            if self.error_stack is None:
                self.error_stack = self.stack
        else:
            if self.keep_inputs:
                self.inputs[name].append((self.meta(args), self.meta(kwargs)))
            self.outputs[name].append(self.meta(output))
        self.stack = self.stack[:-1]
        self.current = self.stack[-1][0] if self.stack else ""

    def where(self) -> tuple[str, tuple]:
        """(innermost module path, whole stack): where an op running now belongs."""
        return self.current, self.stack

    @contextmanager
    def installed(self):
        pre = nn.modules.module.register_module_forward_pre_hook(self._pre)
        try:
            post = nn.modules.module.register_module_forward_hook(self._post, with_kwargs=True, always_call=True)
        except BaseException:
            pre.remove()
            raise
        try:
            yield self
        finally:
            pre.remove()
            post.remove()
            # the handle does not remove the with_kwargs flag torch keeps for it in a separate dict
            module_mod._global_forward_hooks_with_kwargs.pop(post.id, None)
