"""Small things: a short Report repr, parameters in B, the fused-attention note,
and per-sample / per-token reports."""

import csv
import io
import json

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter.cli import main
from flopmeter.render import RENDERERS
from flopmeter.render.units import ParamCount, human


def test_report_repr_is_short_and_names_totals_and_convention():
    model = nn.Sequential(*[nn.Linear(64, 64) for _ in range(50)])
    r = flopmeter.count(model, torch.randn(2, 64))
    text = repr(r)
    assert len(text) < 200 and text == str(r)
    assert f"macs={2 * 50 * 64 * 64:,}" in text and "convention='dot'" in text and "model='Sequential'" in text


def test_parameter_counts_in_billions_use_b_and_operation_counts_keep_g():
    assert human(ParamCount(6_738_415_616)) == "6.74B"
    assert human(6_738_415_616) == "6.74G"
    assert human(ParamCount(124_439_808)) == "124M"
    model = nn.Embedding(1_000_000, 2_000, device="meta")            # 2·10⁹ parameters, no memory
    r = flopmeter.count(model, torch.zeros(1, 4, dtype=torch.long, device="meta"))
    text = RENDERERS["table"].report(r)
    params_line = next(line for line in text.splitlines() if line.startswith("params"))
    assert "2B" in params_line and "2G" not in params_line
    assert "│     2B │" in text                                          # the tree's params column
    row = list(csv.DictReader(io.StringIO(RENDERERS["csv"].report(r))))[0]
    assert int(row["params"]) == 1_000_000 * 2_000                        # exact in CSV
    assert json.loads(r.to_json())["params"]["count"] == 2_000_000_000


class Wrap(nn.Module):
    """nn.MultiheadAttention under a parent: in eval mode without grad it takes the fused kernel."""

    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x)[0]


def test_multihead_attention_out_proj_says_it_is_fused_into_the_parent():
    model = Wrap().eval()
    r = flopmeter.count(model, torch.randn(1, 5, 16))
    assert r.module("attn.out_proj").calls == 0
    rows = {row["path"]: row for row in csv.DictReader(io.StringIO(RENDERERS["csv"].report(r, depth=None)))}
    assert rows["attn.out_proj"]["output"] == "fused into 'attn'"
    # its work is in the parent: 3 projections + scores + weighted sum + out_proj (N·L·d² each projection)
    d, L = 16, 5
    assert r.module("attn").total.macs == 4 * L * d * d + 2 * L * L * d


def test_explain_out_proj_says_its_work_is_in_the_parent():
    e = flopmeter.explain(Wrap().eval(), "attn.out_proj", torch.randn(1, 5, 16))
    assert "counted in its parent's fused kernel (fused into 'attn')" in e.render()


def test_an_unused_module_says_not_called():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.spare = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    r = flopmeter.count(Unused(), torch.randn(1, 2))
    rows = list(csv.DictReader(io.StringIO(RENDERERS["csv"].report(r))))
    assert {row["path"]: row["output"] for row in rows}["spare"] == "not called"


def _factory(tmp_path, batch):
    f = tmp_path / "net.py"
    f.write_text("import torch\nfrom torch import nn\n\ndef build():\n"
                 f"    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval(), torch.randn({batch}, 3, 10, 10)\n")
    return f"{f}:build"


def test_per_sample_divides_costs_by_the_batch_but_not_params(tmp_path, capsys):
    spec = _factory(tmp_path, 4)
    assert main([spec, "--format", "json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert main([spec, "--format", "json", "--per-sample"]) == 0
    one = json.loads(capsys.readouterr().out)
    macs_per_image = 8 * 8 * 8 * 3 * 3 * 3                                # C_out·H·W·C_in·K·K
    assert whole["totals"]["macs"] == 4 * macs_per_image
    assert one["totals"]["macs"] == macs_per_image
    assert one["totals"]["flops_by_convention"]["all"] == whole["totals"]["flops_by_convention"]["all"] // 4
    assert one["params"] == whole["params"]
    assert "per sample (totals ÷ batch 4)" in one["model"]


def test_per_token_for_text_models(tmp_path, capsys):
    pytest.importorskip("transformers")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2, "vocab_size": 16,
                               "n_positions": 16, "bos_token_id": 0, "eos_token_id": 0}))
    assert main([f"hf:{cfg}", "--seq-len", "8", "--batch", "2", "--format", "json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert main([f"hf:{cfg}", "--seq-len", "8", "--batch", "2", "--format", "json", "--per-token"]) == 0
    token = json.loads(capsys.readouterr().out)
    assert token["totals"]["macs"] == pytest.approx(whole["totals"]["macs"] / 16)
    assert "per token (totals ÷ 2×8 tokens)" in token["model"]


def test_per_token_refused_for_image_inputs(tmp_path, capsys):
    assert main([_factory(tmp_path, 2), "--per-token"]) == 2
    err = capsys.readouterr().err
    assert "--per-token needs token-id inputs" in err and "hint: use --per-sample" in err


def test_compare_per_sample(tmp_path, capsys):
    spec = _factory(tmp_path, 4)
    assert main(["compare", spec, "--per-sample", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["macs"] == 8 * 8 * 8 * 3 * 3 * 3 and "per sample" in rows[0]["model"]


def test_training_on_a_torch_without_node_creation_hook_is_a_clear_error(monkeypatch):
    """Older PyTorch releases (2.11, say) have no torch.autograd.graph.node_creation_hook: a
    training count says so, in one line, instead of flopmeter failing to import."""
    from flopmeter.errors import OptionsError

    monkeypatch.delattr(torch.autograd.graph, "node_creation_hook", raising=False)
    with pytest.raises(OptionsError, match="needs a newer PyTorch") as exc:
        flopmeter.count(torch.nn.Linear(4, 4), torch.randn(2, 4), options=flopmeter.Options(training=True))
    assert exc.value.hint == "upgrade torch, or count the forward only"
    assert flopmeter.count(torch.nn.Linear(4, 4), torch.randn(2, 4)).macs == 2 * 4 * 4     # inference still counts
