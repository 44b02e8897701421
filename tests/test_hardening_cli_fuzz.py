"""One line per mistake: every case of the fuzz list ends in exactly one `error:`
line and one `hint:` line on stderr, exit status 2, no traceback, and nothing from PyTorch's
logger (its fake-tensor module logs every failing op at length)."""

import json
import re
from pathlib import Path

import pytest
import torch

from flopmeter.cli import main


def _factories(tmp: Path) -> Path:
    f = tmp / "user_models.py"
    f.write_text(
        "import torch\nfrom torch import nn\n\n"
        "def needs_args(width, depth):\n    return nn.Linear(width, depth)\n\n"
        "def raises():\n    raise RuntimeError('the factory exploded')\n\n"
        "def linear():\n    return nn.Linear(4, 3).eval()\n")
    return f


def _report(tmp: Path, name: str, edit) -> Path:
    """A valid report (from a real count) with one edit applied."""
    f = _factories(tmp)
    good = tmp / "good.json"
    assert main([f"{f}:linear", "--input", "1x4", "-o", str(good)]) == 0
    data = json.loads(good.read_text())
    edit(data)
    out = tmp / name
    out.write_text(json.dumps(data))
    return out


def _hf(tmp: Path, config) -> str:
    pytest.importorskip("transformers")
    f = tmp / "config.json"
    f.write_text(json.dumps(config))
    return f"hf:{f}"


GPT2_TINY = {"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2, "vocab_size": 16, "n_positions": 16}
# (its token ids 50256 lie outside the tiny vocabulary: transformers logs a warning we keep quiet)


def _case(tmp: Path, name: str) -> list[str]:
    f = _factories(tmp)
    lin = f"{f}:linear"
    if name == "file_with_syntax_error":
        bad = tmp / "broken.py"
        bad.write_text("import torch\n\ndef build(:\n    pass\n")
        return [f"{bad}:build"]
    if name == "file_raising_at_import":
        bad = tmp / "raising.py"
        bad.write_text("import torch\nraise ValueError('boom at import')\n")
        return [f"{bad}:build"]
    if name == "file_calling_sys_exit_at_import":
        bad = tmp / "exits.py"
        bad.write_text("import sys\nsys.exit('giving up')\n")
        return [f"{bad}:build"]
    if name == "factory_needing_arguments":
        return [f"{f}:needs_args"]
    if name == "factory_raising":
        return [f"{f}:raises"]
    if name in ("empty_pt2", "empty_pt"):
        p = tmp / ("m.pt2" if name == "empty_pt2" else "m.pt")
        p.write_bytes(b"")
        return [str(p)]
    if name in ("garbage_pt2", "garbage_pt", "garbage_pt_trusted"):
        p = tmp / ("m.pt2" if name == "garbage_pt2" else "m.pt")
        p.write_bytes(bytes(range(256)) * 3)
        return [str(p)] + (["--trust-pickle"] if name.endswith("trusted") else [])
    if name == "directory_as_model":
        d = tmp / "model.pt2"
        d.mkdir()
        return [str(d)]
    if name == "output_under_dev_null":
        return [lin, "--input", "1x4", "-o", "/dev/null/x.json"]
    if name == "real_mode_input_out_of_memory":
        return [lin, "--input", "1x3x100000x100000", "--mode", "real"]
    if name == "dimension_overflowing_int64":
        return [lin, "--input", "1x99999999999999999999"]
    if name in ("dtype_int64_for_float_model", "dtype_bool_for_float_model"):
        return [lin, "--input", "1x4", "--dtype", name.split("_")[1]]
    if name == "device_cuda_real_without_gpu":
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
        return [lin, "--input", "1x4", "--device", "cuda", "--mode", "real"]
    if name == "wrong_input_width_fake_tensor_logs":
        return [lin, "--input", "1x5"]
    if name == "config_num_attention_heads_0":
        return [_hf(tmp, {**GPT2_TINY, "model_type": "bert", "num_attention_heads": 0})]
    if name == "config_json_list":
        return [_hf(tmp, [GPT2_TINY])]
    if name == "config_unknown_model_type":
        return [_hf(tmp, {**GPT2_TINY, "model_type": "lama"})]
    if name == "config_100000_layers":
        return [_hf(tmp, {**GPT2_TINY, "n_layer": 100000})]
    if name == "config_architecture_not_a_model":
        return [_hf(tmp, {**GPT2_TINY, "architectures": ["pipeline"]})]
    if name == "diff_report_missing_totals":
        bad = _report(tmp, "bad.json", lambda d: d.pop("totals"))
        return ["diff", str(bad), str(bad)]
    if name == "diff_report_missing_column":
        bad = _report(tmp, "bad.json", lambda d: d["totals"].pop("bytes_read"))
        return ["diff", str(tmp / "good.json"), str(bad)]
    if name == "diff_report_non_numeric":
        bad = _report(tmp, "bad.json", lambda d: d["totals"].update(macs="lots"))
        return ["diff", str(tmp / "good.json"), str(bad)]
    if name == "diff_threshold_nan":
        good = _report(tmp, "same.json", lambda d: None)
        return ["diff", str(good), str(good), "--threshold", "nan"]
    if name == "unknown_option_value":
        return [lin, "--mode", "bogus"]
    if name == "missing_spec":
        return []
    if name == "depth_minus_5":
        return [lin, "--input", "1x4", "--depth", "-5"]
    raise AssertionError(name)


# case → a word or two the error line must contain (what the user needs to see)
CASES = {
    "file_with_syntax_error": "broken.py:3",
    "file_raising_at_import": "raising.py:2",
    "file_calling_sys_exit_at_import": "exits.py:2",
    "factory_needing_arguments": "width, depth",
    "factory_raising": "user_models.py:8",
    "empty_pt2": "is empty",
    "empty_pt": "is empty",
    "garbage_pt2": "not a zip archive",
    "garbage_pt": "m.pt",
    "garbage_pt_trusted": "cannot load m.pt",
    "directory_as_model": "is a directory",
    "output_under_dev_null": "/dev/null",
    "real_mode_input_out_of_memory": "120 GB",
    "dimension_overflowing_int64": "2^63",
    "dtype_int64_for_float_model": "int64",
    "dtype_bool_for_float_model": "bool",
    "device_cuda_real_without_gpu": "CUDA",
    "wrong_input_width_fake_tensor_logs": "aten.addmm",
    "config_num_attention_heads_0": "'num_attention_heads' must be positive",
    "config_json_list": "JSON list",
    "config_unknown_model_type": "unknown model_type 'lama'",
    "config_100000_layers": "100,000 layers",
    "config_architecture_not_a_model": "'pipeline'",
    "diff_report_missing_totals": "no 'totals'",
    "diff_report_missing_column": "totals.bytes_read",
    "diff_report_non_numeric": "'lots', not a number",
    "diff_threshold_nan": "--threshold",
    "depth_minus_5": "--depth",
    "unknown_option_value": "invalid choice: 'bogus'",
    "missing_spec": "required: spec",
}

_TORCH_LOG = re.compile(r"^[DIWEC]\d{4} \d\d:\d\d:\d\d|torch/_subclasses|fake_tensor\.py|bos_token_id", re.M)


@pytest.mark.parametrize("name", list(CASES))
def test_one_error_line_per_mistake(tmp_path, capfd, name):
    argv = _case(tmp_path, name)
    capfd.readouterr()
    code = main(argv)
    out, err = capfd.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["error", "hint"], err
    assert CASES[name] in lines[0], lines[0]
    assert len(lines[1]) > len("hint: ") + 10
    assert "Traceback" not in err and not _TORCH_LOG.search(err)
    assert out == ""
    assert not (tmp_path / "x.json").exists()


def test_hint_for_unknown_model_type_gives_three_closest(tmp_path, capfd):
    main(_case(tmp_path, "config_unknown_model_type"))
    err = capfd.readouterr().err
    hint = err.strip().splitlines()[1]
    assert len(re.findall(r"'[^']+'", hint)) == 3 and "'llama'" in hint
    assert len(err) < 400                     # not the list of every known type


def test_debug_shows_the_traceback(tmp_path, capfd):
    argv = _case(tmp_path, "factory_raising") + ["--debug"]
    with pytest.raises(Exception, match="factory exploded|the factory exploded"):
        main(argv)


def test_layer_limit_can_be_raised(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("FLOPMETER_MAX_LAYERS", "3")
    argv = _case(tmp_path, "config_num_attention_heads_0")      # any hf config will do
    config = {**GPT2_TINY, "n_layer": 4}
    Path(argv[0][3:]).write_text(json.dumps(config))
    assert main(argv) == 2 and "4 layers" in capfd.readouterr().err
    monkeypatch.setenv("FLOPMETER_MAX_LAYERS", "4")
    assert main(argv + ["--format", "json", "--seq-len", "16"]) == 0
