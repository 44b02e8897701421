"""The table of README's "Moving from …": flopmeter's MACs next to ptflops, thop, torchprofile
and fvcore on the same models, each original run as its documentation shows.

Models: torchvision resnet50 and vit_b_16 (1x3x224x224, random weights, eval mode) and one
``nn.MultiheadAttention(256, 8)`` self-attention over 10 tokens (closed form
4·10·256² + 2·8·10·10·32 = 2,672,640 MACs). A tool that is not installed is skipped.

    python benchmarks/compat_numbers.py
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
from torch import nn

import flopmeter


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(256, 8, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


def models() -> dict:
    import torchvision
    return {"resnet50": (torchvision.models.resnet50(), (1, 3, 224, 224)),
            "vit_b_16": (torchvision.models.vit_b_16(), (1, 3, 224, 224)),
            "MHA": (SelfAttention(), (1, 10, 256))}


def tools() -> dict:
    out = {}
    with contextlib.suppress(ImportError):
        from ptflops import get_model_complexity_info

        def ptflops(m, shape, backend="pytorch"):
            return get_model_complexity_info(m, shape[1:], as_strings=False, print_per_layer_stat=False,
                                             backend=backend)
        out["ptflops"] = ptflops
        out["ptflops (aten)"] = lambda m, shape: ptflops(m, shape, "aten")
    with contextlib.suppress(ImportError):
        import thop
        out["thop"] = lambda m, shape: thop.profile(m, (torch.randn(shape),), verbose=False)
    with contextlib.suppress(ImportError):
        import torchprofile
        out["torchprofile"] = lambda m, shape: (torchprofile.profile_macs(m, torch.randn(shape)), None)
    with contextlib.suppress(ImportError):
        from fvcore.nn import FlopCountAnalysis

        def fvcore(m, shape):
            fa = FlopCountAnalysis(m, torch.randn(shape))
            fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return fa.total(), None
        out["fvcore"] = fvcore
    return out


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    counters = tools()
    print("| model | flopmeter | " + " | ".join(counters) + " |")
    print("|---|---:|" + "---:|" * len(counters))
    for name, (model, shape) in models().items():
        model.eval()
        ours = flopmeter.count(model, input_shape=shape)
        cells = []
        for fn in counters.values():
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    macs, params = fn(model, shape)
                    cells.append(f"{macs:,} / {params:,}" if params is not None else f"{macs:,}")
                except Exception as exc:  # noqa: BLE001  (a tool failing is a result too)
                    cells.append(f"fails: {type(exc).__name__}")
        print(f"| {name} MACs / params | {ours.macs:,} / {ours.params.count:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
