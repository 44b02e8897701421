"""A torch.export program (.pt2) counts with the module tree of the model it was exported
from: each op is attributed to the submodule its node's nn_module_stack names."""

import json

import torch
from torch import nn

import flopmeter
from flopmeter.cli import main


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.proj = nn.Linear(d, 2 * d)
        self.act = nn.GELU()

    def forward(self, x):
        return self.act(self.proj(x))


class TwoParts(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Block(8)
        self.decoder = nn.Linear(16, 4)

    def forward(self, x):
        return self.decoder(self.encoder(x))


def _saved(tmp_path, model, x):
    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(model, (x,)), path)
    return path


def _totals(d):
    out = {}

    def walk(node):
        out[node["path"]] = (node["type"], node["calls"], node["total"]["macs"])
        for child in node["children"]:
            walk(child)
    walk(d["modules"])
    return out


def test_exported_program_keeps_the_eager_module_tree(tmp_path, capsys):
    model, x = TwoParts().eval(), torch.randn(3, 8)
    path = _saved(tmp_path, model, x)
    eager = flopmeter.count(model, x)
    assert main([str(path), "--format", "json"]) == 0
    exported = _totals(json.loads(capsys.readouterr().out))
    expected = {n.path: (n.type, n.calls, n.total.macs) for n in eager.modules()}
    expected[""] = ("TwoParts", 1, eager.macs)
    assert exported == expected
    # the figures themselves: Linear N·in·out for encoder.proj (8 → 16) and the decoder (16 → 4)
    assert exported["encoder.proj"][2] == 3 * 8 * 16 and exported["decoder"][2] == 3 * 16 * 4
    assert exported[""][2] == 3 * 8 * 16 + 3 * 16 * 4


def test_exported_program_depth_one_shows_its_submodules_called(tmp_path, capsys):
    path = _saved(tmp_path, TwoParts().eval(), torch.randn(3, 8))
    assert main([str(path), "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "not called" not in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip().startswith(("encoder", "decoder"))}
    assert set(rows) == {"encoder", "decoder"} and "Block" in rows["encoder"] and "Linear" in rows["decoder"]
