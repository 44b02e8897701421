"""The command line, in process: main(argv) → exit status; stdout, stderr and files."""

import csv
import io
import json
import re
from pathlib import Path

import pytest
import torch

from flopmeter.cli import main

DATA = Path(__file__).parent / "data"
TINY = f"{DATA / 'tiny_model.py'}:build"
# Tiny: conv 3→8 (3×3, pad 1) on 16×16, BatchNorm, ReLU, MaxPool 2, Linear 512 → 10
TINY_MACS = 1 * 8 * 16 * 16 * 3 * 3 * 3 + 8 * 8 * 8 * 10
TINY_PARAMS = (8 * 3 * 3 * 3 + 8) + 2 * 8 + (512 * 10 + 10)


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def mask_versions(text: str) -> str:
    """Golden files hold no torch version, data path or line padding (which follows their length)."""
    text = text.replace(torch.__version__, "<torch>").replace(str(DATA), "<data>")
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def test_python_factory_table_golden(capsys, golden):
    code, out, _ = run(capsys, TINY, "--depth", "-1")
    assert code == 0
    golden("tiny_table.txt", mask_versions(out))


def test_markdown_golden_and_keras_view(capsys, golden):
    code, out, _ = run(capsys, TINY, "--format", "md", "--raw")
    assert code == 0
    assert f"| {TINY_MACS:,} |" in out                    # root row, raw MACs
    golden("tiny_table.md", mask_versions(out))
    code, out, _ = run(capsys, TINY, "--view", "keras")
    assert "features.0 (Conv2d)" in out and "(None, 8, 16, 16)" in out
    assert re.search(rf"Total params:\s+{TINY_PARAMS:,}\n", out)


def test_json_and_csv_carry_exact_numbers(capsys, tmp_path):
    code, out, _ = run(capsys, TINY, "--format", "json")
    d = json.loads(out)
    assert code == 0 and d["totals"]["macs"] == TINY_MACS and d["params"]["count"] == TINY_PARAMS
    code, out, _ = run(capsys, TINY, "--format", "csv", "--depth", "1")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["path"] for r in rows] == ["tiny_model.py:build", "features", "head"]     # the root: the model's name
    assert int(rows[0]["MACs"]) == TINY_MACS
    assert int(rows[2]["MACs"]) == 512 * 10


@pytest.mark.parametrize("suffix, check", [
    (".json", lambda t: json.loads(t)["totals"]["macs"] == TINY_MACS),
    (".md", lambda t: t.startswith("- **model**")),
    (".csv", lambda t: t.startswith("path,depth,calls,type,output")),
    (".txt", lambda t: "tiny_model.py:build" in t and "\x1b[" not in t),
])
def test_output_file_format_from_suffix(capsys, tmp_path, suffix, check):
    target = tmp_path / f"report{suffix}"
    code, out, _ = run(capsys, TINY, "-o", str(target))
    assert code == 0 and out == ""
    assert check(target.read_text())
    assert [p.name for p in tmp_path.iterdir()] == [target.name]      # no temporary files left


def test_ops_view_lists_every_costed_op(capsys):
    code, out, _ = run(capsys, TINY, "--ops", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert [r["op"] for r in rows if int(r["MACs"])] == ["aten.convolution.default", "aten.addmm.default"]
    assert sum(int(r["MACs"]) for r in rows) == TINY_MACS


def test_input_batch_and_dtype_options(capsys):
    bare = f"{DATA / 'tiny_model.py'}:bare"
    code, out, _ = run(capsys, bare, "--input", "2x3x16x16", "--format", "json")
    assert code == 0 and json.loads(out)["totals"]["macs"] == 2 * TINY_MACS
    code, out, _ = run(capsys, TINY, "--batch", "3", "--format", "json")
    d = json.loads(out)
    assert d["inputs"][0]["display"] == "float32[3, 3, 16, 16]"        # --batch resizes the factory's own tensors
    assert d["totals"]["macs"] == 3 * TINY_MACS
    code, out, _ = run(capsys, "torchvision:resnet18", "--dtype", "float16", "--batch", "2", "--format", "json")
    d = json.loads(out)
    assert d["inputs"][0]["display"] == "float16[2, 3, 224, 224]"
    assert d["params"]["bytes_by_dtype"] == {"float16": 2 * 11_689_512}


def test_torchvision_and_timm_and_hf(capsys):
    code, out, _ = run(capsys, "torchvision:resnet18", "--format", "json")
    assert code == 0 and json.loads(out)["params"]["count"] == 11_689_512     # torchvision's num_params
    code, out, _ = run(capsys, "timm:resnet18", "--format", "json")
    assert code == 0 and json.loads(out)["params"]["count"] == 11_689_512
    cfg = json.loads((DATA / "hf_tiny" / "config.json").read_text())
    code, out, _ = run(capsys, f"hf:{DATA / 'hf_tiny'}", "--seq-len", "16", "--batch", "2", "--format", "json")
    d = json.loads(out)
    assert code == 0 and d["inputs"][0]["display"] == "int64[2, 16]" and d["unsupported"] == {}
    d_model, v = cfg["hidden_size"], cfg["vocab_size"]
    assert d["modules"]["children"][1]["path"] == "lm_head"
    assert d["modules"]["children"][1]["total"]["macs"] == 2 * 16 * d_model * v


def test_builtin_hf_config(capsys):
    code, out, _ = run(capsys, "hf:bert-base-uncased", "--seq-len", "8", "--format", "json")
    d = json.loads(out)
    assert code == 0 and d["unsupported"] == {}
    # BERT-base: 12 layers of 768 wide; MLM head ties the 30522 × 768 word embedding
    assert d["params"]["count"] > 100_000_000 and d["inputs"][0] == {"dtype": "int64", "shape": [1, 8],
                                                                      "display": "int64[1, 8]"}


@pytest.mark.filterwarnings("ignore:`torch.jit")
def test_saved_models(capsys, tmp_path):
    from tiny_model import Tiny   # noqa: E402  (tests/data on sys.path below)
    model, x = Tiny().eval(), torch.randn(1, 3, 16, 16)
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "m.pt2")
    code, out, _ = run(capsys, str(tmp_path / "m.pt2"), "--format", "json")
    assert code == 0 and json.loads(out)["totals"]["macs"] == TINY_MACS
    torch.jit.script(model).save(str(tmp_path / "m.ts"))
    code, out, err = run(capsys, str(tmp_path / "m.ts"), "--input", "1x3x16x16", "--trust-pickle", "--format", "json")
    assert code == 0 and json.loads(out)["totals"]["macs"] == TINY_MACS and "TorchScript" in err
    torch.save(model, tmp_path / "whole.pt")
    code, _, err = run(capsys, str(tmp_path / "whole.pt"), "--input", "1x3x16x16")
    assert code == 2 and "--trust-pickle" in err
    code, out, _ = run(capsys, str(tmp_path / "whole.pt"), "--input", "1x3x16x16", "--trust-pickle", "--format", "json")
    assert code == 0 and json.loads(out)["totals"]["macs"] == TINY_MACS
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    code, _, err = run(capsys, str(tmp_path / "weights.pt"), "--input", "1x3x16x16")
    assert code == 2 and "not a model" in err and "file.py:FUNCTION" in err


def test_detection_falls_back_to_real_mode(capsys):
    code, out, err = run(capsys, "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", "--input", "1x3x320x320",
                         "--format", "json")
    assert code == 0
    assert "depends on tensor values" in err and "real mode" in err
    assert json.loads(out)["mode"] == "real"
    code, _, err = run(capsys, "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", "--input", "1x3x320x320",
                       "--mode", "fake")
    assert code == 2 and "hint: count it in real mode" in err


def test_compare_and_diff(capsys, tmp_path):
    code, out, _ = run(capsys, "compare", TINY, "torchvision:resnet18", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [r["macs"] for r in rows] == [TINY_MACS, 1_814_073_344]
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    assert main([f"{DATA / 'tiny_model.py'}:bare", "--input", "1x3x16x16", "-o", str(old)]) == 0
    assert main([f"{DATA / 'tiny_model.py'}:bare", "--input", "2x3x16x16", "-o", str(new)]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "diff", str(old), str(new))
    assert code == 1 and "grew past 0%" in err and "MACs" in err
    assert "+100.00%" in out
    code, _, _ = run(capsys, "diff", str(old), str(new), "--threshold", "150")
    assert code == 0
    code, _, _ = run(capsys, "diff", str(old), str(old))
    assert code == 0


@pytest.mark.parametrize("argv, message, hint", [
    (["torchvision:resnet5"], "unknown torchvision model 'resnet5'", "torchvision:resnet50"),
    (["torchvison:resnet18"], "cannot read model spec", "did you mean 'torchvision:resnet18'?"),
    (["timm:resnet_18"], "unknown timm model", "timm:resnet18"),
    (["hf:gtp2"], "unknown hf model 'gtp2'", "hf:gpt2"),
    (["hf:gpt2", "--seq-len", "5000"], "longer than this model's 1024 positions", "--seq-len 1024"),
    (["torchvision:resnet18", "--convention", "exat"], "unknown FLOP convention 'exat'", "'exact'"),
    (["torchvision:resnet18", "--input", "1x3xfoo"], "cannot read input shape", "1x3x224x224"),
    (["torchvision:resnet18", "--dtype", "float61"], "unknown dtype 'float61'", "did you mean 'float64'?"),
    (["torchvision:resnet18", "--input", "1x4x224x224"], "failed in 'conv1' (Conv2d)", "inputs (float32[1, 4, 224, 224])"),
    (["torchvision:resnet18", "-o", "out.xlsx"], "cannot tell the format", "--format"),
    (["torchvision:resnet18", "-o", "/no/such/dir/r.json"], "does not exist", None),
    ([f"{DATA / 'tiny_model.py'}:buidl"], "has no function 'buidl'", ":build"),
    ([f"{DATA / 'tiny_model.py'}:not_a_model"], "returned int, not a torch.nn.Module", None),
    ([f"{DATA / 'tiny_model.py'}:bare"], "returned no example inputs", "--input"),
    ([str(DATA / "tiny_model.py")], "which function", ":FUNCTION"),
    (["missing.pt2"], "no such file", None),
    (["diff", "missing.json", "other.json"], "cannot read missing.json", None),
])
def test_errors_are_one_line_with_a_hint(capsys, argv, message, hint):
    code, _, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and lines[0].startswith("error: ") and message in lines[0]
    if hint:
        assert len(lines) == 2 and lines[1].startswith("hint: ") and hint in lines[1]
    assert "Traceback" not in err


def test_missing_extra_is_named(capsys, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_timm(name, *a, **kw):
        if name == "timm":
            raise ImportError("no timm")
        return real_import(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", no_timm)
    code, _, err = run(capsys, "timm:resnet18")
    assert code == 2 and "'timm'" in err and "pip install 'flopmeter[zoo]'" in err


def test_debug_shows_the_traceback():
    from flopmeter import InputError
    with pytest.raises(InputError):
        main(["torchvision:resnet5", "--debug"])


def test_python_dash_m_entry_point():
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "flopmeter", TINY, "--format", "json"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and json.loads(done.stdout)["totals"]["macs"] == TINY_MACS
    import jsonschema

    from flopmeter.report.schema import json_schema
    jsonschema.validate(json.loads(done.stdout), json_schema())      # outside the in-process validation too


@pytest.mark.parametrize("name", ["vit_h_14", "fcn_resnet50", "r3d_18"])
def test_torchvision_models_are_built_like_their_published_weights(capsys, name):
    tv = pytest.importorskip("torchvision")
    meta = tv.models.get_model_weights(name).DEFAULT.meta
    code, out, _ = run(capsys, f"torchvision:{name}", "--format", "json")
    d = json.loads(out)
    assert code == 0 and d["unsupported"] == {}
    assert d["params"]["count"] == meta["num_params"]
    assert round(d["totals"]["macs"] / 1e9, 3) == meta["_ops"]          # _ops: GMACs to 3 decimals


def test_causal_counting_is_stated_in_the_report(capsys):
    assert main([TINY, "--format", "json", "--causal", "exact"]) == 0
    assert json.loads(capsys.readouterr().out)["causal"] == "exact"


def test_explain_shows_the_derivation_and_agreement(capsys, tmp_path):
    conv_macs = 1 * 8 * 16 * 16 * 3 * 3 * 3                 # N·C_out·H_out·W_out·(C_in/g)·K_h·K_w
    conv_bias = 1 * 8 * 16 * 16                              # one add per output element
    code, out, _ = run(capsys, "explain", TINY, "features.0", "--check")
    assert code == 0
    assert f"= {conv_macs:,}" in out                         # the substituted closed form's value
    assert re.search(rf"MACs\s+{conv_macs:,}\s+{conv_macs:,}  ✓", out)
    assert re.search(rf"FLOPs \(all\)\s+{2 * conv_macs + conv_bias:,}\s+{2 * conv_macs + conv_bias:,}  ✓", out)
    assert "agrees: yes" in out
    target = tmp_path / "conv.txt"
    assert run(capsys, "explain", TINY, "head", "-o", str(target))[0] == 0
    assert f"= {512 * 10:,}" in target.read_text()          # Linear MACs = N·in·out


def test_explain_without_a_closed_form_and_unknown_paths(capsys):
    code, out, _ = run(capsys, "explain", TINY, "features")
    assert code == 0 and "none:" in out and "aten.convolution" in out
    assert run(capsys, "explain", TINY, "features", "--check")[0] == 1     # nothing to agree with
    code, out, err = run(capsys, "explain", TINY, "features.9")
    assert code == 2 and out == ""
    assert err.startswith("error: no module 'features.9'") and "hint: did you mean" in err
