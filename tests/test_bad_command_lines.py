"""A table of bad command lines: each ends in exit status 2 with exactly one ``error:`` line and
one ``hint:`` line on stderr, no traceback, nothing on stdout and no raw control character."""

import json
import re
from pathlib import Path

import pytest

from flopmeter.cli import main

RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
TINY_GPT2 = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 1, "n_embd": 8, "n_head": 2,
             "vocab_size": 16, "n_positions": 16, "bos_token_id": 0, "eos_token_id": 0}


def _model(tmp: Path) -> str:
    f = tmp / "net.py"
    f.write_text("from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Linear(4, 4), nn.ReLU()).eval()\n")
    return f"{f}:build"


def _report(tmp: Path, edit=None) -> str:
    good = tmp / "good.json"
    if not good.exists():
        assert main([_model(tmp), "--input", "1x4", "-o", str(good)]) == 0
    if edit is None:
        return str(good)
    data = json.loads(good.read_text())
    edit(data)
    bad = tmp / "bad.json"
    bad.write_text(json.dumps(data))
    return str(bad)


def _file(tmp: Path, name: str, content) -> str:
    p = tmp / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(p)


def _hf(tmp: Path) -> str:
    pytest.importorskip("transformers")
    return "hf:" + _file(tmp, "config.json", json.dumps(TINY_GPT2))


SPEC = {"schema": "flopmeter.device/1", "name": "box", "matrix": {"fp32": 1e12}, "vector": 1e11,
        "bandwidth": -1e11, "source": "the test"}

# name → argv built in a temporary folder
CASES = {
    "empty_dtype": lambda t: [_model(t), "--input", "1x4", "--dtype", ""],
    "blank_dtype": lambda t: [_model(t), "--input", "1x4", "--dtype", "  "],
    "empty_fits": lambda t: [_model(t), "--input", "1x4", "--fits", ""],
    "huge_fits": lambda t: [_model(t), "--input", "1x4", "--fits", "9" * 400 + "GB"],
    "batch_past_int64": lambda t: [_model(t), "--input", "1x4", "--batch", "99999999999999999999"],
    "batch_zero": lambda t: [_model(t), "--input", "1x4", "--batch", "0"],
    "batch_negative": lambda t: [_model(t), "--input", "1x4", "--batch=-3"],
    "batch_not_a_number": lambda t: [_model(t), "--input", "1x4", "--batch", "two"],
    "seq_len_zero": lambda t: [_model(t), "--input", "1x4", "--seq-len", "0"],
    "depth_minus_5": lambda t: [_model(t), "--input", "1x4", "--depth=-5"],
    "context_negative": lambda t: [_model(t), "--input", "1x4", "--memory", "--context=-5"],
    "bench_min_time_nan": lambda t: ["bench", _model(t), "--min-time", "nan"],
    "bench_min_time_inf": lambda t: ["bench", _model(t), "--min-time", "inf"],
    "bench_min_time_negative": lambda t: ["bench", _model(t), "--min-time=-1"],
    "bench_max_time_zero": lambda t: ["bench", _model(t), "--max-time", "0"],
    "bench_threads_zero": lambda t: ["bench", _model(t), "--threads", "0"],
    "bench_batch_list_past_int64": lambda t: ["bench", _model(t), "--batch", "1,99999999999999999999"],
    "bench_layer_iterations_zero": lambda t: ["bench", _model(t), "--layers", "--layer-iterations", "0"],
    "bench_depth_minus_2": lambda t: ["bench", _model(t), "--depth=-2"],
    "calibrate_min_run_time_negative": lambda t: ["calibrate", "--min-run-time=-1"],
    "calibrate_threads_zero": lambda t: ["calibrate", "--threads", "0"],
    "calibrate_empty_dtypes": lambda t: ["calibrate", "--dtypes", ""],
    "diff_threshold_negative": lambda t: ["diff", _report(t), _report(t), "--threshold=-5"],
    "diff_threshold_nan": lambda t: ["diff", _report(t), _report(t), "--threshold", "nan"],
    "diff_negative_macs": lambda t: ["diff", _report(t), _report(t, lambda d: d["totals"].update(macs=-1))],
    "diff_huge_params": lambda t: ["diff", _report(t), _report(t, lambda d: d["params"].update(count=10**40))],
    "diff_deep_nesting": lambda t: ["diff", _report(t), _file(t, "deep.json", "[" * 100_000 + "]" * 100_000)],
    "diff_invalid_utf8": lambda t: ["diff", _report(t), _file(t, "bin.json", b"{\"a\": \"\xff\"}")],
    "diff_huge_integer": lambda t: ["diff", _report(t), _file(t, "big.json", "[" + "9" * 10_000 + "]")],
    "diff_not_a_report": lambda t: ["diff", _report(t), _file(t, "list.json", "[1, 2, 3]")],
    "diff_malformed_op_rows": lambda t: ["diff", _report(t), _report(t, lambda d: d.update(ops=[{"op": 1}])),
                                         "--by", "op"],
    "roofline_empty_device": lambda t: ["roofline", _model(t), "--input", "1x4", "--device-spec", ""],
    "roofline_unknown_device": lambda t: ["roofline", _model(t), "--input", "1x4", "--device-spec", "a1000x"],
    "roofline_negative_bandwidth": lambda t: ["roofline", _model(t), "--input", "1x4", "--device-spec",
                                              _file(t, "box.json", json.dumps(SPEC))],
    "roofline_malformed_spec": lambda t: ["roofline", _model(t), "--input", "1x4", "--device-spec",
                                          _file(t, "box.json", "{oops")],
    "roofline_top_zero": lambda t: ["roofline", _model(t), "--input", "1x4", "--device-spec", "a100", "--top", "0"],
    "scaling_depth_minus_3": lambda t: ["scaling", _model(t), "--input-size", "4:16", "--depth=-3"],
    "compare_batch_zero": lambda t: ["compare", _model(t), _model(t), "--input", "1x4", "--batch", "0"],
    "sweep_jobs_zero": lambda t: ["sweep", _model(t), "--jobs", "0", "-o", str(t / "rows.jsonl")],
    "sweep_empty_task": lambda t: ["sweep", _model(t), "--task", "", "-o", str(t / "rows.jsonl")],
    "generate_without_new": lambda t: [_hf(t), "--generate", "16+"],
    "generate_zero_prompt": lambda t: [_hf(t), "--generate", "0+5"],
    "generate_words": lambda t: [_hf(t), "--generate", "a+b"],
    "generate_past_positions": lambda t: [_hf(t), "--seq-len", "1", "--generate", "8+9"],
    "generate_with_train": lambda t: [_hf(t), "--seq-len", "1", "--generate", "2+2", "--train"],
    "explain_unknown_module_with_escapes": lambda t: ["explain", _model(t), "\x1b]0;pwned\x07", "--input", "1x4"],
    "calibrate_cache_home_a_file": lambda t: ["calibrate", "--min-run-time", "0.001"],
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_command_line_is_one_error_and_one_hint(tmp_path, capfd, monkeypatch, name):
    if name == "calibrate_cache_home_a_file":
        monkeypatch.setenv("XDG_CACHE_HOME", _file(tmp_path, "cache", "a file"))
    argv = CASES[name](tmp_path)
    capfd.readouterr()
    code = main(argv)
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, err
    assert [line.split(":")[0] for line in lines] == ["error", "hint"], err
    assert len(lines[1]) > len("hint: ") + 5, lines[1]
    assert "Traceback" not in err and out == ""
    assert not RAW_CONTROL.search(err), repr(err)


def test_the_table_has_at_least_thirty_cases():
    assert len(CASES) >= 30
