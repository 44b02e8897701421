"""SPEC.md §2's worked examples reproduced through ``flopmeter.explain`` and the closed forms.
Their derivations are kept in tests/golden/explain_worked_examples.txt (``pytest --update-golden``
rewrites it)."""

import torch
from torch import nn

import flopmeter
from flopmeter import Options
from flopmeter.layers import attention

import models

def _explain(model, path, *inputs, **kw):
    e = flopmeter.explain(model, path, *inputs, **kw)
    assert all(e.agrees.values()) and e.params_agree, e.render()
    return e


def _section(title, parts):
    return f"{'=' * 100}\n{title}\n{'=' * 100}\n" + "\n\n".join(parts) + "\n"


def mlp():
    model, x = models.mlp(), torch.randn(1, 10)
    es = [_explain(model, p, x) for p in ("0", "2", "4")]
    assert [e.closed.macs for e in es] == [10 * 20, 20 * 15, 15 * 1]       # N·I·O each
    assert sum(e.closed.macs for e in es) == 515 and sum(e.closed.flops("dot") for e in es) == 1_030
    return _section("MLP 10→20→15→1, bias-free: 200 + 300 + 15 = 515 MACs, 1,030 FLOPs (dot)",
                    [e.render() for e in es])


def small_cnn():
    model, x = models.small_cnn(), torch.randn(1, 1, 28, 28)
    es = [_explain(model, p, x) for p in ("0", "2", "5")]
    assert [e.closed.macs for e in es] == [1 * 16 * 28 * 28 * 1 * 3 * 3,     # N·C_out·H·W·C_in·K·K
                                           1 * 32 * 28 * 28 * 16 * 3 * 3,
                                           32 * 28 * 28 * 10]                 # I·O
    assert sum(e.closed.macs for e in es) == 3_976_448
    return _section("CNN: 112,896 + 3,612,672 + 250,880 = 3,976,448 MACs, 7,952,896 FLOPs (dot)",
                    [e.render() for e in es])


def self_attention():
    x = torch.randn(1, 10, 256)
    model = models.SelfAttention(256, 8)
    projections = [_explain(model, p, x, x, x) for p in ("values", "keys", "queries", "fc_out")]
    assert [e.closed.macs for e in projections] == [1 * 10 * 256 * 256] * 4          # N·L·d²
    block = flopmeter.explain(model, "", x, x, x)
    assert block.derivation is None and "SelfAttention" in block.reason
    # the block as a whole: the multi-head attention closed form, compared with the traced total
    closed = attention("the tutorial's self-attention block", N=1, L_q=10, L_k=10, d=256, h=8, out_bias=True)
    for name in flopmeter.CONVENTIONS:
        assert closed.cost.flops(name) == block.total.flops(name)
    assert closed.cost.macs == 3 * 655_360 + 25_600 + 25_600 + 655_360 == 2_672_640
    return _section("Self-attention, embed 256, 8 heads: 3 × 655,360 + 25,600 + 25,600 + 655,360 = 2,672,640 MACs",
                    [e.render() for e in projections] + [block.render(), closed.render()])


def keras_cnn():
    model, x = models.KerasCNN(), torch.randn(1, 3, 224, 224)
    es = [_explain(model, p, x) for p in ("conv", "pool", "dense")]
    assert [e.derivation.params for e in es] == [16 * 3 * 2 * 2 + 16, 0, 16 * 133 + 133] == [208, 0, 2_261]
    return _section("Keras-style CNN: params 208, 0, 2,261", [e.render() for e in es])


def unet():
    parts, totals = [], []
    for bn in (False, True):
        model, x = models.UNet(bn=bn), torch.randn(1, 1, 256, 256)
        leaves = [p for p, m in model.named_modules() if p and not list(m.children())]
        es = [flopmeter.explain(model, p, x) for p in leaves]
        assert all(all(e.agrees.values()) and e.params_agree for e in es)
        lines = [f"{e.path:<12} {e.type:<16} " + str(next(s for s in e.derivation.steps if s.quantity == "params"))
                 for e in es if e.derivation.params]
        totals.append(sum(e.derivation.params for e in es))
        parts.append(("with a BatchNorm after every 3×3 conv" if bn else "plain") + "\n" + "\n".join(lines)
                     + f"\nΣ params = {totals[-1]:,}")
    assert totals == [7_759_554, 7_765_442]
    up = _explain(models.UNet(), "up.0", torch.randn(1, 1, 256, 256))
    # a transposed convolution: C_in/g·C_out·∏K MACs per *input* position (16×16 here)
    assert up.closed.macs == 1 * 512 * 16 * 16 * 256 * 2 * 2
    return _section("UNet 32-64-128-256-512: 7,759,554 params; 7,765,442 with BatchNorm", parts + [up.render()])


def exact_conv():
    e = _explain(nn.Conv2d(3, 4, 3, bias=False), "", torch.randn(1, 3, 8, 8), options=Options(convention="exact"))
    assert e.closed.flops("exact") == (2 * 3 * 3 ** 2 - 1) * 4 * 6 ** 2 == 7_632     # (2·C_in·K² − 1)·C_out·H·W
    return _section("Bias-free 3×3 conv, 3 → 4 channels, 6×6 output: 7,632 FLOPs (exact)", [e.render()])


def test_worked_examples_through_explain(golden):
    golden("explain_worked_examples.txt", "\n".join(f() for f in (mlp, small_cnn, self_attention, keras_cnn, unet,
                                                                    exact_conv)))
