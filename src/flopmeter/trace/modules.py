"""Attribution of ops to modules: a stack of module paths, kept for one run only.

It uses PyTorch's *global* module hooks (``register_module_forward_pre_hook`` and
``register_module_forward_hook``), which live in torch's registry, not on the user's
modules; both handles are removed in ``finally``. Modules outside the counted model
(say one built inside ``forward``) are not pushed: their ops go to the enclosing module.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from contextlib import contextmanager

import torch
from torch import nn

from .events import to_meta


class ModuleStack:
    def __init__(self, model: nn.Module):
        # named_modules() removes duplicates: a shared module keeps its first (canonical) name
        self.names: dict[int, str] = {id(m): name for name, m in model.named_modules()}
        self.stack: tuple = ()           # ((path, call_index), …), outermost first
        self.current: str = ""           # innermost path, "" before the root is entered
        self._pushed: list[int] = []     # ids of modules pushed, to pop symmetrically
        self.calls: dict[str, int] = defaultdict(int)
        self.outputs: dict[str, list] = defaultdict(list)   # path → output metas per call
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

    def _post(self, module, args, output):
        if not self._pushed or self._pushed[-1] != id(module):
            return
        self._pushed.pop()
        name = self.stack[-1][0]
        if sys.exc_info()[1] is not None and output is None:
            # always_call hooks run inside torch's `except` block when forward raised
            if self.error_stack is None:
                self.error_stack = self.stack
        else:
            self.outputs[name].append(to_meta(output))
        self.stack = self.stack[:-1]
        self.current = self.stack[-1][0] if self.stack else ""

    @contextmanager
    def installed(self):
        pre = nn.modules.module.register_module_forward_pre_hook(self._pre)
        try:
            post = nn.modules.module.register_module_forward_hook(self._post, always_call=True)
        except BaseException:
            pre.remove()
            raise
        try:
            yield self
        finally:
            pre.remove()
            post.remove()
