"""Put back the Python attributes a forward writes onto its own modules.

Some models cache tensors they compute in ``forward`` on themselves (timm's LeViT keeps its
attention biases in a dict attribute, keyed by device). Counted on fake tensors, such a cache
would keep a fake tensor, and the model's next real forward would return fake results. The
guard records every module's attributes, and the contents of its plain dict and list
attributes, before the run and restores them afterwards (also when the forward raises).
"""

from __future__ import annotations

from torch import nn

_MISSING = object()


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return len(a) == len(b) and all(b.get(k, _MISSING) is v for k, v in a.items())
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


class AttributeGuard:
    def __init__(self, model: nn.Module):
        self._saved = []
        for module in model.modules():
            attrs = vars(module)
            contents = {k: (v, v.copy()) for k, v in attrs.items() if type(v) in (dict, list)}
            self._saved.append((attrs, attrs.copy(), contents))

    def restore(self) -> None:
        for attrs, before, contents in self._saved:
            if attrs.keys() != before.keys() or any(attrs[k] is not v for k, v in before.items()):
                attrs.clear()
                attrs.update(before)
            for container, copy in contents.values():
                if not _same(copy, container):
                    container.clear()
                    container.update(copy) if isinstance(container, dict) else container.extend(copy)
