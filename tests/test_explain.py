"""``flopmeter.explain``: a module's closed form next to its traced ops, and whether they agree."""

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter import Cost, InputError, Options

import models
from guards import assert_unchanged, snapshot


def test_closed_form_agrees_with_the_traced_conv():
    model = models.small_cnn()
    e = flopmeter.explain(model, "2", torch.randn(1, 1, 28, 28))
    assert e.type == "Conv2d" and len(e.calls) == 1
    assert e.closed.macs == e.total.macs == 1 * 32 * 28 * 28 * 16 * 3 * 3     # N·C_out·H·W·C_in·K·K
    assert e.agrees == {"dot": True, "all": True, "exact": True, "mac": True}
    assert e.params_agree and e.params == 32 * 16 * 3 * 3 + 32
    assert [r.op for r in e.ops] == ["aten.convolution"]
    text = e.render()
    assert "MACs = N·C_out·H_out·W_out·(C_in/g)·K_h·K_w = 1·32·28·28·16·3·3 = 3,612,672" in text
    assert "agrees: yes" in text


def test_module_without_closed_form_says_so_and_shows_its_ops():
    e = flopmeter.explain(models.KerasCNN(), "", torch.randn(1, 3, 16, 16))
    assert e.derivation is None and e.closed is None and e.agrees == {}
    assert e.reason == "no closed form for KerasCNN"
    assert {r.op for r in e.ops} >= {"aten.convolution", "aten.max_pool2d_with_indices", "aten.mm"}
    assert "none: no closed form for KerasCNN" in e.render()


def test_unsupported_configuration_gives_its_reason():
    model = nn.Sequential(nn.Embedding(10, 4, max_norm=1.0))
    e = flopmeter.explain(model, "0", torch.randint(0, 10, (2, 3)))
    assert e.derivation is None and "max_norm" in e.reason


def test_keyword_arguments_reach_the_closed_form():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2)

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    e = flopmeter.explain(Block(), "attn", torch.randn(5, 2, 8))
    assert e.calls[0].kwargs == {"need_weights": False}
    assert all(e.agrees.values()) and e.params_agree


def test_module_called_twice_sums_its_closed_form_over_the_calls():
    e = flopmeter.explain(models.CalledTwice(), "fc", torch.randn(2, 8))
    assert len(e.calls) == 2
    assert e.closed.macs == e.total.macs == 2 * (2 * 8 * 8)
    assert all(e.agrees.values())


def test_disagreement_is_reported():
    # an override of the conv formula that forgets the bias: the closed form notices
    registry = flopmeter.REGISTRY.copy()
    registry.override("aten.convolution", lambda ev: Cost(macs=1))
    e = flopmeter.explain(nn.Conv2d(1, 2, 3), "", torch.randn(1, 1, 5, 5), options=Options(registry=registry))
    assert not any(e.agrees.values())
    assert "✗ differs" in e.render() and "agrees: no" in e.render()


def test_causal_option_reaches_trace_and_closed_form():
    mha = nn.MultiheadAttention(8, 2)
    x, mask = torch.randn(4, 1, 8), torch.ones(4, 4, dtype=torch.bool).triu(1)
    kw = {"attn_mask": mask, "is_causal": True, "need_weights": False}
    full = flopmeter.explain(mha, "", x, x, x, kwargs=kw)
    exact = flopmeter.explain(mha, "", x, x, x, kwargs=kw, options=Options(causal="exact"))
    assert all(full.agrees.values()) and all(exact.agrees.values())
    h, l, e = 2, 4, 4
    assert full.closed.macs - exact.closed.macs == 2 * h * (l * l - l * (l + 1) // 2) * e   # masked pairs


def test_unknown_path_suggests_close_names_and_model_is_untouched():
    model, x = models.small_cnn(), torch.randn(1, 1, 28, 28)
    before = snapshot(model)
    with pytest.raises(InputError) as info:
        flopmeter.explain(model, "22", x)
    assert "'2'" in info.value.hint
    flopmeter.explain(model, "0", x, options=Options(mode="real"))
    assert_unchanged(model, before)


def test_rich_renders_the_same_text():
    pytest.importorskip("rich")
    e = flopmeter.explain(nn.Linear(3, 2), "", torch.randn(4, 3))
    assert e.__rich__().plain == e.render() == str(e)


def test_a_module_that_did_not_run_says_so():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.spare = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            return self.used(x)

    e = flopmeter.explain(Unused(), "spare", torch.randn(2, 3))
    assert e.calls == [] and e.derivation is None and e.reason == "the module did not run in this forward"
    assert e.total == Cost() and e.ops == []
