"""flopmeter.compat: the other counters' call shapes and return types, flopmeter's numbers.

Each test calls the original package (installed by the test extra) and our replacement with
the same arguments, checks that the result types are identical, and checks our numbers
against closed forms written out here."""

import io
import warnings
from collections import Counter

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter import compat
from flopmeter.errors import OptionsError


def cnn():
    # Conv2d(3→8, 3×3, pad 1) → BN → ReLU → global pool → Linear(8→10)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()


CNN_MACS = 1 * 8 * 16 * 16 * 3 * 3 * 3 + 1 * 8 * 10     # N·C_out·H·W·C_in·K·K + N·I·O
CNN_PARAMS = (8 * 3 * 3 * 3 + 8) + 2 * 8 + (8 * 10 + 10)  # conv, BN affine, linear


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(256, 8, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


L, D, H = 10, 256, 8
MHA_MACS = 4 * L * D * D + 2 * H * L * L * (D // H)     # q,k,v,out projections + scores + weighted sum


def test_get_model_complexity_info_resnet50_issue_numbers():
    torchvision = pytest.importorskip("torchvision")
    out = compat.get_model_complexity_info(torchvision.models.resnet50(), (3, 224, 224), as_strings=False,
                                           print_per_layer_stat=False)
    assert out == (4_089_184_256, 25_557_032)     # torchvision's published 4.09 GFLOPS (MACs), 25.6M params


def test_get_model_complexity_info_matches_ptflops_types():
    ptflops = pytest.importorskip("ptflops")
    model = cnn()
    for as_strings in (False, True):
        theirs = ptflops.get_model_complexity_info(model, (3, 16, 16), as_strings=as_strings,
                                                   print_per_layer_stat=False)
        ours = compat.get_model_complexity_info(model, (3, 16, 16), as_strings=as_strings,
                                                print_per_layer_stat=False)
        assert type(ours) is type(theirs) and [type(v) for v in ours] == [type(v) for v in theirs]
    assert compat.get_model_complexity_info(model, (3, 16, 16), as_strings=False,
                                            print_per_layer_stat=False) == (CNN_MACS, CNN_PARAMS)
    # strings in ptflops' own format (its formatter applied to our numbers)
    from ptflops.utils import flops_to_string, params_to_string
    assert compat.get_model_complexity_info(model, (3, 16, 16), print_per_layer_stat=False) == \
        (flops_to_string(CNN_MACS), params_to_string(CNN_PARAMS))
    assert compat._flops_to_string(4_089_184_256) == flops_to_string(4_089_184_256) == "4.09 GMac"
    assert compat._params_to_string(25_557_032, "K", 1) == params_to_string(25_557_032, "K", 1)


def test_get_model_complexity_info_prints_only_when_asked(capsys):
    compat.get_model_complexity_info(cnn(), (3, 16, 16), as_strings=False, print_per_layer_stat=False)
    assert capsys.readouterr().out == ""
    stream = io.StringIO()
    compat.get_model_complexity_info(cnn(), (3, 16, 16), ost=stream)    # ptflops' default prints the layers
    assert "Conv2d" in stream.getvalue() and capsys.readouterr().out == ""


def test_get_model_complexity_info_input_constructor():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 6), nn.Linear(5, 6)

        def forward(self, x, y):
            return self.a(x) + self.b(y)

    macs, params = compat.get_model_complexity_info(
        TwoInputs(), (3,), as_strings=False, print_per_layer_stat=False,
        input_constructor=lambda res: {"x": torch.ones(*res, 4), "y": torch.ones(*res, 5)})
    assert macs == 3 * 4 * 6 + 3 * 5 * 6       # rows·I·O per linear
    assert params == (4 * 6 + 6) + (5 * 6 + 6)


def test_thop_profile_types_and_numbers():
    thop = pytest.importorskip("thop")
    model, x = cnn(), torch.randn(1, 3, 16, 16)
    theirs = thop.profile(model, (x,), verbose=False)
    ours = compat.profile(model, (x,), verbose=False)
    assert [type(v) for v in ours] == [type(v) for v in theirs] == [float, float]
    assert ours == (float(CNN_MACS), float(CNN_PARAMS))
    # thop adds BN, ReLU and pooling operations on top of the dot products
    assert theirs[0] > ours[0]


def test_thop_profile_counts_attention_thop_misses():
    thop = pytest.importorskip("thop")
    model, x = SelfAttention().eval(), torch.randn(1, L, D)
    theirs = thop.profile(model, (x,), verbose=False)
    assert theirs[0] == 0                        # thop has no rule for nn.MultiheadAttention
    assert compat.profile(model, (x,), verbose=False)[0] == MHA_MACS


def test_thop_layer_info():
    macs, params, info = compat.profile(cnn(), (torch.randn(1, 3, 16, 16),), ret_layer_info=True)
    assert info["0"] == (float(8 * 16 * 16 * 3 * 3 * 3), float(8 * 3 * 3 * 3 + 8), {})
    assert sum(v[0] for v in info.values()) == macs


def test_thop_custom_ops_refused():
    with pytest.raises(OptionsError):
        compat.profile(cnn(), (torch.randn(1, 3, 16, 16),), custom_ops={nn.Conv2d: lambda m, x, y: None})


def test_torchprofile_profile_macs():
    torchprofile = pytest.importorskip("torchprofile")
    model, x = SelfAttention().eval(), torch.randn(1, L, D)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torchprofile.profile_macs(model, x)
    ours = compat.profile_macs(model, x)
    assert type(ours) is type(theirs) is int
    assert ours == MHA_MACS
    assert compat.profile_macs(cnn(), (torch.randn(1, 3, 16, 16),)) == CNN_MACS
    per_op = compat.profile_macs(cnn(), torch.randn(1, 3, 16, 16), reduction=None)
    assert isinstance(per_op, dict) and sum(per_op.values()) == CNN_MACS


def test_fvcore_flop_count_analysis():
    fvcore_nn = pytest.importorskip("fvcore.nn")
    model, x = cnn(), torch.randn(1, 3, 16, 16)
    theirs = fvcore_nn.FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    ours = compat.FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    for method in ("total", "by_operator", "by_module", "unsupported_ops"):
        assert type(getattr(ours, method)()) is type(getattr(theirs, method)()), method
    assert ours.total() == CNN_MACS
    assert ours.total("0") == 8 * 16 * 16 * 3 * 3 * 3
    assert ours.by_operator() == Counter({"conv": 8 * 16 * 16 * 3 * 3 * 3, "addmm": 8 * 10})
    assert set(ours.by_module()) == set(theirs.by_module())          # the same module names, root ""
    assert ours.by_module()["5"] == 8 * 10
    assert ours.unsupported_ops() == Counter()
    # fvcore counts BatchNorm and pooling "flops" (one per element), flopmeter's MACs do not
    assert theirs.by_operator()["conv"] == ours.by_operator()["conv"]
    assert theirs.total() > ours.total()


def test_fvcore_counts_attention_fvcore_misses():
    fvcore_nn = pytest.importorskip("fvcore.nn")
    model, x = SelfAttention().eval(), torch.randn(1, L, D)
    theirs = fvcore_nn.FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert theirs.total() == 4 * L * D * D       # only the projections; the attention core is unsupported
    assert compat.FlopCountAnalysis(model, x).total() == MHA_MACS


def test_compat_prints_nothing_and_leaves_model(capsys):
    model = cnn().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 16, 16)
    compat.profile(model, (x,))
    compat.profile_macs(model, x)
    compat.FlopCountAnalysis(model, x).total()
    assert capsys.readouterr().out == ""
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert flopmeter.count(model, x).macs == 2 * CNN_MACS


@pytest.mark.parametrize("nums, fmt", [([1234567, 89], "%.3f"), (5_000_000_000_000, "%.2f"), (999, "%.1f"),
                                       ((1001, 1e9 + 1, 25_557_032), "%.2f"), ([0], "%.2f")])
def test_thop_clever_format_equals_thops(nums, fmt):
    thop = pytest.importorskip("thop")
    assert compat.clever_format(nums, fmt) == thop.clever_format(nums, fmt)


def _two_level():
    from torch import nn
    return nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()),
                         nn.Sequential(nn.Flatten(), nn.Linear(8 * 14 * 14, 10)), nn.Identity()).eval()


def test_fvcore_parameter_count_equals_fvcores():
    fvcore = pytest.importorskip("fvcore.nn")
    import torchvision
    for model in (_two_level(), torchvision.models.resnet18()):
        assert dict(compat.parameter_count(model)) == dict(fvcore.parameter_count(model))
        assert compat.parameter_count(model)["no.such"] == 0           # a defaultdict(int), as fvcore's
        for depth in (1, 3):
            assert compat.parameter_count_table(model, depth) == fvcore.parameter_count_table(model, depth)


def test_fvcore_flop_count_table_has_our_numbers_in_fvcores_layout():
    fvcore = pytest.importorskip("fvcore.nn")
    import torchvision
    for model, x in ((_two_level(), torch.randn(2, 3, 16, 16)), (torchvision.models.resnet18().eval(),
                                                                 torch.randn(1, 3, 64, 64))):
        ours = compat.FlopCountAnalysis(model, x)
        for kwargs in ({}, {"max_depth": 1}, {"show_param_shapes": False}):
            table = compat.flop_count_table(ours, **kwargs)
            assert table == fvcore.flop_count_table(ours, **kwargs)     # fvcore's own layout of the same figures
    # the numbers: conv N·C_out·H·W·C_in·K·K and linear N·in·out, in fvcore's format
    ours = compat.FlopCountAnalysis(_two_level(), torch.randn(2, 3, 16, 16))
    conv, linear = 2 * 8 * 14 * 14 * 3 * 3 * 3, 2 * 8 * 14 * 14 * 10
    lines = compat.flop_count_table(ours).splitlines()
    assert lines[2].split("|")[3].strip() == f"{(conv + linear) / 1e6:.3f}".rstrip("0").rstrip(".") + "M"  # > 1e5
    assert lines[3].split("|")[3].strip() == f"{conv / 1e3:.3f}".rstrip("0").rstrip(".") + "K"
