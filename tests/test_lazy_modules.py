"""Lazy modules are counted on a materialised copy; the user's model stays lazy and untouched
(flopmeter/trace/lazy.py). Failures end in one flopmeter error with a hint."""

import pytest
import torch
from torch import nn
from torch.nn.parameter import is_lazy

import flopmeter
from flopmeter import Options

from guards import assert_unchanged, snapshot

MODES = ["fake", "real"]


def lazy_cnn() -> nn.Module:
    return nn.Sequential(nn.LazyConv2d(4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5), nn.LazyBatchNorm1d())


def all_lazy(model: nn.Module) -> bool:
    lazy = [p for p in model.parameters()]
    return bool(lazy) and all(is_lazy(p) for p in lazy)


@pytest.mark.parametrize("mode", MODES)
def test_lazy_linear(mode):
    model = nn.LazyLinear(5)
    x = torch.randn(2, 3)
    before = snapshot(model)
    r = flopmeter.count(model, x, options=Options(mode=mode))
    assert r.unsupported == {}
    assert r.macs == 2 * 3 * 5                   # rows · in_features (inferred: 3) · out_features
    assert r.total.elementwise == 2 * 5          # bias
    assert r.params.count == 3 * 5 + 5
    assert_unchanged(model, before)
    assert type(model) is nn.LazyLinear and all_lazy(model)     # still lazy afterwards


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("training", [False, True])
def test_lazy_model_counted_and_left_lazy(mode, training):
    model = lazy_cnn().train(training)
    x = torch.randn(2, 3, 8, 8)
    before = snapshot(model)
    r = flopmeter.count(model, x, options=Options(mode=mode))
    assert r.unsupported == {}
    conv = 2 * 4 * 6 * 6 * 3 * 3 * 3                # N·C_out·H·W·C_in·K·K, C_in inferred: 3
    linear = 2 * (4 * 6 * 6) * 5                     # in_features inferred: 144
    assert r.macs == conv + linear
    assert r.params.count == (4 * 3 * 3 * 3 + 4) + (144 * 5 + 5) + 2 * 5
    assert r.module("3").type == "Linear"            # the module that ran (the copy's eager class)
    assert_unchanged(model, before)                  # also: BatchNorm statistics not updated in training
    assert all_lazy(model)
    again = flopmeter.count(model, x, options=Options(mode=mode))   # and can be counted again
    assert again.macs == r.macs


def test_lazy_model_from_input_shape():
    r = flopmeter.count(nn.Sequential(nn.LazyLinear(7)), input_shape=(4, 6))
    assert r.macs == 4 * 6 * 7


def test_lazy_model_on_fake_cuda():
    r = flopmeter.count(lazy_cnn(), input_shape=(2, 3, 8, 8), options=Options(device="cuda"))
    assert r.device == "cuda" and r.macs == 2 * 4 * 6 * 6 * 3 * 3 * 3 + 2 * 144 * 5


def test_partly_initialised_model_shares_its_real_weights():
    eager = nn.Linear(3, 8)
    model = nn.Sequential(eager, nn.ReLU(), nn.LazyLinear(2))
    x = torch.randn(5, 3)
    before = snapshot(model)
    r = flopmeter.count(model, x, options=Options(mode="real"))
    assert r.macs == 5 * 3 * 8 + 5 * 8 * 2
    assert_unchanged(model, before)
    assert is_lazy(model[2].weight) and not is_lazy(model[0].weight)


@pytest.mark.parametrize("mode", MODES)
def test_wrong_input_for_a_lazy_model_is_one_clear_error(mode):
    with pytest.raises(flopmeter.ModelForwardError, match="lazy modules inferred their parameters") as info:
        flopmeter.count(nn.Sequential(nn.LazyConv2d(4, 3)), torch.randn(2, 3), options=Options(mode=mode))
    assert "float32[2, 3]" in info.value.hint
    assert isinstance(info.value.__cause__, RuntimeError)


def test_a_lazy_model_that_cannot_be_copied_is_one_clear_error():
    class Uncopyable(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.LazyLinear(2)

        def __deepcopy__(self, memo):
            raise TypeError("no copies")

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(flopmeter.InputError, match="could not be copied") as info:
        flopmeter.count(Uncopyable(), torch.randn(2, 3))
    assert "run the model once" in info.value.hint


def test_explain_a_lazy_module():
    model = nn.Sequential(nn.LazyLinear(5), nn.ReLU())
    x = torch.randn(2, 3)
    before = snapshot(model)
    e = flopmeter.explain(model, "0", x)
    assert e.type == "Linear" and e.closed.macs == e.total.macs == 2 * 3 * 5
    assert all(e.agrees.values()) and e.params_agree
    assert_unchanged(model, before)


def test_the_cli_counts_a_lazy_model(tmp_path, capsys):
    from flopmeter.cli import main

    src = tmp_path / "lazy_model.py"
    src.write_text("import torch\nfrom torch import nn\n\n"
                   "def build():\n    return nn.Sequential(nn.LazyLinear(16), nn.ReLU(), nn.LazyLinear(4)).eval()\n")
    assert main([f"{src}:build", "--input", "2x8", "--raw"]) == 0
    out = capsys.readouterr().out
    assert f"{2 * 8 * 16 + 2 * 16 * 4:,} MACs" in out
