"""Generate ``docs/formulas.md`` from the registered closed forms:

    python -m flopmeter.layers.docs > docs/formulas.md

Every registered module type needs an entry in ``EXAMPLES`` (a configuration and input
shapes); its formulas are written out symbolically from that example, and each closed form
gets one worked example with the numbers substituted. A type without an example is listed
as undocumented, which the test suite refuses.
"""

from __future__ import annotations

import inspect
import sys

import torch
from torch import nn

from ..trace.events import TensorMeta
from .attention import attention
from .registry import LAYERS, LayerCall
from .transformer import decoder_estimate

UNDOCUMENTED = "no documented formula (add an example to flopmeter.layers.docs.EXAMPLES)"
F32, I64 = torch.float32, torch.int64


def _x(*shape, dtype=F32):
    return TensorMeta(tuple(shape), dtype)


# type → (module factory, inputs); modules are built on the meta device (no weights)
EXAMPLES = {
    nn.Linear: (lambda: nn.Linear(512, 1000), (_x(1, 512),)),
    nn.Conv1d: (lambda: nn.Conv1d(16, 32, 5, padding=2), (_x(1, 16, 100),)),
    nn.Conv2d: (lambda: nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), (_x(1, 3, 224, 224),)),
    nn.Conv3d: (lambda: nn.Conv3d(3, 8, 3, padding=1, groups=1), (_x(1, 3, 8, 32, 32),)),
    nn.ConvTranspose1d: (lambda: nn.ConvTranspose1d(16, 8, 4, stride=2, padding=1), (_x(1, 16, 50),)),
    nn.ConvTranspose2d: (lambda: nn.ConvTranspose2d(512, 256, 2, stride=2), (_x(1, 512, 16, 16),)),
    nn.ConvTranspose3d: (lambda: nn.ConvTranspose3d(8, 4, 2, stride=2), (_x(1, 8, 4, 8, 8),)),
    nn.BatchNorm1d: (lambda: nn.BatchNorm1d(64).eval(), (_x(8, 64),)),
    nn.BatchNorm2d: (lambda: nn.BatchNorm2d(64).train(), (_x(8, 64, 56, 56),)),
    nn.BatchNorm3d: (lambda: nn.BatchNorm3d(8).eval(), (_x(2, 8, 4, 16, 16),)),
    nn.InstanceNorm1d: (lambda: nn.InstanceNorm1d(16), (_x(2, 16, 100),)),
    nn.InstanceNorm2d: (lambda: nn.InstanceNorm2d(16, affine=True), (_x(2, 16, 32, 32),)),
    nn.InstanceNorm3d: (lambda: nn.InstanceNorm3d(8), (_x(2, 8, 4, 16, 16),)),
    nn.GroupNorm: (lambda: nn.GroupNorm(32, 256), (_x(2, 256, 14, 14),)),
    nn.LayerNorm: (lambda: nn.LayerNorm(768), (_x(1, 128, 768),)),
    nn.RMSNorm: (lambda: nn.RMSNorm(4096), (_x(1, 128, 4096),)),
    nn.Softmax: (lambda: nn.Softmax(dim=-1), (_x(1, 12, 128, 128),)),
    nn.LogSoftmax: (lambda: nn.LogSoftmax(dim=-1), (_x(32, 1000),)),
    nn.Softmin: (lambda: nn.Softmin(dim=-1), (_x(32, 10),)),
    nn.Dropout: (lambda: nn.Dropout(0.1).train(), (_x(32, 768),)),
    nn.PReLU: (lambda: nn.PReLU(64), (_x(1, 64, 56, 56),)),
    nn.Threshold: (lambda: nn.Threshold(0.1, 0.0), (_x(1, 64, 56, 56),)),
    nn.GLU: (lambda: nn.GLU(), (_x(8, 1024),)),
    nn.MaxPool1d: (lambda: nn.MaxPool1d(2), (_x(1, 16, 100),)),
    nn.MaxPool2d: (lambda: nn.MaxPool2d(3, stride=2, padding=1), (_x(1, 64, 112, 112),)),
    nn.MaxPool3d: (lambda: nn.MaxPool3d(2), (_x(1, 8, 8, 16, 16),)),
    nn.AvgPool1d: (lambda: nn.AvgPool1d(3, stride=2, ceil_mode=True), (_x(1, 16, 100),)),
    nn.AvgPool2d: (lambda: nn.AvgPool2d(2), (_x(1, 64, 56, 56),)),
    nn.AvgPool3d: (lambda: nn.AvgPool3d(2), (_x(1, 8, 8, 16, 16),)),
    nn.AdaptiveAvgPool1d: (lambda: nn.AdaptiveAvgPool1d(7), (_x(1, 16, 100),)),
    nn.AdaptiveAvgPool2d: (lambda: nn.AdaptiveAvgPool2d(1), (_x(1, 2048, 7, 7),)),
    nn.AdaptiveAvgPool3d: (lambda: nn.AdaptiveAvgPool3d(2), (_x(1, 8, 5, 5, 5),)),
    nn.AdaptiveMaxPool1d: (lambda: nn.AdaptiveMaxPool1d(3), (_x(1, 16, 8),)),
    nn.AdaptiveMaxPool2d: (lambda: nn.AdaptiveMaxPool2d((3, 3)), (_x(1, 16, 8, 8),)),
    nn.AdaptiveMaxPool3d: (lambda: nn.AdaptiveMaxPool3d(2), (_x(1, 8, 5, 5, 5),)),
    nn.MultiheadAttention: (lambda: nn.MultiheadAttention(256, 8, batch_first=True),
                            (_x(1, 10, 256), _x(1, 10, 256), _x(1, 10, 256))),
    nn.Embedding: (lambda: nn.Embedding(50257, 768), (_x(1, 128, dtype=I64),)),
    nn.RNN: (lambda: nn.RNN(32, 64, num_layers=2), (_x(20, 4, 32),)),
    nn.LSTM: (lambda: nn.LSTM(32, 64, bidirectional=True), (_x(20, 4, 32),)),
    nn.GRU: (lambda: nn.GRU(32, 64, batch_first=True), (_x(4, 20, 32),)),
    nn.RNNCell: (lambda: nn.RNNCell(32, 64), (_x(4, 32),)),
    nn.LSTMCell: (lambda: nn.LSTMCell(32, 64), (_x(4, 32),)),
    nn.GRUCell: (lambda: nn.GRUCell(32, 64), (_x(4, 32),)),
}
# types built without arguments (activations) run on a ResNet-sized feature map
DEFAULT_INPUT = (_x(1, 64, 56, 56),)


def example(t: type):
    """(module, LayerCall) for type ``t``, or None when it has no documented example."""
    make, inputs = EXAMPLES.get(t, (t, DEFAULT_INPUT))
    try:
        with torch.device("meta"):
            module = make()
    except TypeError:                 # a type that needs arguments and has no example
        return None
    return module, LayerCall(inputs)


FAMILIES = ("linear", "conv", "norm", "activation", "pool", "attention", "embedding", "recurrent")


def _families():
    """{module name: {closed form: [types]}}, families in the order of FAMILIES, then any others."""
    families: dict[str, dict] = {}
    for t in LAYERS.types():
        fn = LAYERS.form(t)
        families.setdefault(fn.__module__, {}).setdefault(fn, []).append(t)
    rank = {f"{__package__}.{name}": i for i, name in enumerate(FAMILIES)}
    return dict(sorted(families.items(), key=lambda item: rank.get(item[0], len(rank))))


def _entry(t: type) -> str:
    found = example(t)
    if found is None:
        return f"- `nn.{t.__name__}`: {UNDOCUMENTED}"
    d = LAYERS.derive(*found)
    return f"- `nn.{t.__name__}` (example `{d.layer}` on {d.inputs}): " + "; ".join(f"`{f}`" for f in d.symbolic())


def render_markdown() -> str:
    out = ["# Closed-form layer formulas", "",
           "Generated from the registered closed forms by `python -m flopmeter.layers.docs > docs/formulas.md`;",
           "a test checks that this page is up to date and that every registered layer has its formulas here.",
           "", "Each closed form counts primitive quantities — MACs, dot products, elementwise and transcendental",
           "ops — from which FLOPs follow under every convention: `dot` = 2·MACs, `all` = 2·MACs + elementwise +",
           "transcendental, `exact` = 2·MACs − dots + elementwise + transcendental, `mac` = MACs. The formulas",
           "below are written for each layer's example configuration (a bias adds a term, and so on); the",
           "docstrings say what changes with the configuration. `flopmeter.explain(model, path, inputs)` shows",
           "the same derivation for a module of a real model, next to its traced aten ops.", ""]
    for module_name, forms in _families().items():
        doc = (sys.modules[module_name].__doc__ or "").strip()
        out += [f"## {module_name.rsplit('.', 1)[-1]}", "", doc, ""]
        for fn, types in forms.items():
            out += [f"### {', '.join(t.__name__ for t in types)}", "", inspect.cleandoc(fn.__doc__ or ""), ""]
            out += [_entry(t) for t in types] + [""]
            found = example(types[0])
            if found is not None:
                out += ["Worked example:", "", "```text", LAYERS.derive(*found).render(), "```", ""]
    out += ["## Functions", "", "### attention", "", inspect.cleandoc(attention.__doc__), "",
            "Grouped-query example:", "", "```text",
            attention("Llama-style attention block", N=1, L_q=128, L_k=128, d=4096, h=32, h_kv=8,
                      causal="exact").render(), "```", "",
            "### decoder_estimate", "", inspect.cleandoc(decoder_estimate.__doc__), "", "```text",
            decoder_estimate(layers=12, d_model=768, vocab=50257, context=1024).render(), "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
