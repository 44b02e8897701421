"""Report invariants, unsupported ops and strict mode, the registry, serialisation."""

import json

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter import Cost, Options, UnsupportedOpsError
from flopmeter.formulas import REGISTRY

import models


def _unet_report():
    return flopmeter.count(models.UNet(bn=True), torch.randn(1, 1, 32, 32))


def test_parent_total_is_own_plus_children():
    r = _unet_report()
    for node in r.modules():
        assert node.total == node.own + sum((c.total for c in node.children), Cost())
        assert node.params_total == node.params_own + sum(c.params_total for c in node.children)
    assert r.total == sum((row.cost for row in r.ops), Cost())      # op rows sum to the total
    assert r.root.params_total == r.params.count


class _Tree(nn.Module):
    """Nested modules: some with ops of their own next to their children's, one with none in
    inference (Dropout), one called twice."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        self.blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)) for _ in range(2)])
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        x = self.blocks[0](x) * 2
        return self.head(self.drop(x.mean((2, 3))))


@pytest.mark.parametrize("training", [False, True])
def test_every_node_sums_its_rows_per_phase(training):
    """Each module's total and per-phase costs equal the sums of the op rows under its path,
    added up here field by field from the rows (in inference, and in a training step's three
    phases)."""
    from dataclasses import fields
    model, x = _Tree().eval(), torch.randn(2, 3, 10, 10)
    r = flopmeter.count(model, x, options=Options(training=training, optimizer="adam" if training else None))

    def summed(rows) -> Cost:
        return Cost(*(sum(getattr(row.cost, f.name) for row in rows) for f in fields(Cost)))

    phases = {row.event.phase for row in r.ops}
    assert phases == ({"forward", "backward", "optimizer"} if training else {"forward"})
    for node in r.root.walk():
        under = [row for row in r.ops if node.path == "" or row.event.module == node.path
                 or row.event.module.startswith(node.path + ".")]
        assert node.total == summed(under), node.path
        for phase in phases:
            expected = summed([row for row in under if row.event.phase == phase])
            assert node.by_phase.get(phase, Cost()) == expected, (node.path, phase)
    assert r.root.total.macs > 0
    assert (r.module("drop").total == Cost()) is not training      # dropout runs only in a training step


def test_unsupported_ops_are_listed_and_strict_raises():
    class Sorts(nn.Module):
        def forward(self, x):
            return torch.kthvalue(x, 2).values + torch.kthvalue(x, 2).values

    r = flopmeter.count(Sorts(), torch.randn(4, 4))
    assert r.unsupported == {"aten.kthvalue": 2}
    assert [row.status for row in r.ops] == ["unsupported", "unsupported", "costed"]
    with pytest.raises(UnsupportedOpsError, match=r"aten.kthvalue \(×2\)") as info:
        flopmeter.count(Sorts(), torch.randn(4, 4), options=Options(strict=True))
    assert info.value.ops == {"aten.kthvalue": 2}


def test_registry_override_on_a_copy_and_duplicate_registration():
    class Sorts(nn.Module):
        def forward(self, x):
            return torch.kthvalue(x, 2).values

    reg = REGISTRY.copy()
    reg.override("aten.kthvalue", lambda ev: Cost(elementwise=ev.args[0].numel * 2))   # n·log2(n) for n = 4
    r = flopmeter.count(Sorts(), torch.randn(4, 4), options=Options(registry=reg))
    assert r.unsupported == {} and r.total.elementwise == 16 * 2
    assert "aten.kthvalue" not in REGISTRY                 # the global registry is untouched
    with pytest.raises(ValueError, match="already registered"):
        REGISTRY.register("aten.mm")(lambda ev: Cost())


def test_views_are_free_and_every_op_is_classified():
    r = flopmeter.count(models.SelfAttention(32, 4), *(torch.randn(1, 3, 32),) * 3)
    statuses = {row.op: row.status for row in r.ops}
    assert statuses["aten.view"] == statuses["aten.transpose"] == "free"
    assert set(statuses.values()) <= {"costed", "free"}


def test_unknown_convention_suggests_close_match():
    with pytest.raises(flopmeter.OptionsError) as info:
        Options(convention="exat")
    assert info.value.hint == "did you mean 'exact'?"


def test_input_errors():
    with pytest.raises(flopmeter.InputError, match="no example inputs"):
        flopmeter.count(nn.Linear(2, 2))
    with pytest.raises(flopmeter.InputError, match="input_shape"):
        flopmeter.count(nn.Linear(2, 2), input_shape="1x2")
    with pytest.raises(flopmeter.InputError, match="nn.Module"):
        flopmeter.count(lambda x: x, torch.randn(2))


def test_json_round_trip_is_versioned_and_complete():
    r = flopmeter.count(models.small_cnn(), torch.randn(1, 1, 28, 28))
    d = json.loads(r.to_json())
    assert d["schema"] == "flopmeter.report/2"
    assert d["convention"]["name"] == "dot"
    assert d["totals"]["macs"] == r.macs and d["totals"]["flops"] == 2 * r.macs
    assert d["totals"]["flops_by_convention"]["mac"] == r.macs
    assert d["params"]["count"] == r.params.count
    assert d["torch_version"] == torch.__version__
    assert d["inputs"] == [{"dtype": "float32", "shape": [1, 1, 28, 28], "display": "float32[1, 1, 28, 28]"}]
    assert [c["path"] for c in d["modules"]["children"]] == ["0", "1", "2", "3", "4", "5"]
    assert len(d["ops"]) == len(r.ops)


def test_params_split_trainable_frozen_and_bytes_by_dtype():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)).to(torch.float16)
    model[0].requires_grad_(False)
    r = flopmeter.count(model, input_shape=(1, 4))
    assert r.params.count == (16 + 4) + (8 + 2)
    assert r.params.frozen == 16 + 4 and r.params.trainable == 8 + 2
    assert r.params.bytes_by_dtype == {"float16": 2 * 30}
    assert r.inputs[0].dtype == torch.float16              # input_shape follows the model's dtype


def test_in_place_views_are_free():
    class Restride(nn.Module):
        def forward(self, x):
            y = x.clone()
            y.as_strided_((4, 2), (1, 4))
            y.unsqueeze_(0).transpose_(1, 2)
            return y

    r = flopmeter.count(Restride(), torch.randn(2, 4))
    assert r.unsupported == {}
    assert {row.op: row.status for row in r.ops} == {"aten.clone": "costed", "aten.as_strided_": "free",
                                                      "aten.unsqueeze_": "free", "aten.transpose_": "free"}


def test_dataframe_and_rich_views():
    pd = pytest.importorskip("pandas")
    r = _unet_report()
    modules = r.to_dataframe()
    assert isinstance(modules, pd.DataFrame)
    assert modules.loc[modules.path == "", "macs"].item() == r.macs
    ops = r.to_dataframe("ops")
    assert ops["macs"].sum() == r.macs and len(ops) == len(r.ops)
    with pytest.raises(flopmeter.OptionsError):
        r.to_dataframe("layers")
    from rich.console import Console
    console = Console(record=True, width=120)
    console.print(r)
    assert "UNet" in console.export_text()
