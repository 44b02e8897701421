"""The memory options of the count command: --memory, --weights, --fits, --max-batch, --context,
--view memory; answers checked against the model's own prediction at b and b + 1."""

import json
import re
from pathlib import Path

import pytest
import torch

import flopmeter
from flopmeter.cli import main
from flopmeter.frontends import InputRequest, resolve

DATA = Path(__file__).parent / "data"
TINY = f"{DATA / 'tiny_model.py'}:build"


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _total(spec, batch, weights="stored", seq_len=None, dtype=None):
    """The predicted peak at ``batch`` by a plain count with memory (not the search's code)."""
    resolved = resolve(spec, InputRequest(batch=batch, seq_len=seq_len, dtype=dtype))
    args, kwargs = resolved.make_inputs(torch.device("meta"))
    r = flopmeter.count(resolved.model, *args, kwargs=kwargs, options=flopmeter.Options(memory=True))
    return flopmeter.memory.analyse(r, weights=weights).total


def test_memory_json_and_columns(capsys):
    code, out, _ = run(capsys, TINY, "--memory", "--format", "json")
    d = json.loads(out)
    assert code == 0
    params = (8 * 3 * 3 * 3 + 8 + 2 * 8 + 8 * 8 * 8 * 10 + 10) * 4
    assert d["memory"]["weights"]["params"] == params
    assert d["memory"]["timeline"]["before_run"]["input"] == 1 * 3 * 16 * 16 * 4
    code, out, _ = run(capsys, TINY, "--memory")
    assert "act. peak (B)" in out and "peak " in out and "eager lifetimes" in out
    code, out, _ = run(capsys, TINY, "--memory", "--view", "keras")
    assert "act. peak (B)" in out


def test_memory_view_has_the_timeline_and_formats(capsys):
    code, out, _ = run(capsys, TINY, "--view", "memory", "--depth", "1")
    assert code == 0
    assert "leaves alive (B)" in out and "weights by format" in out
    rows = {line.split("│")[0].strip(): line for line in out.splitlines() if "│" in line}
    assert {"int4", "bfloat16", "stored  ← used"} <= set(rows)            # one table of formats, the used one marked
    assert any(ch in out for ch in "▁▂▃▄▅▆▇█") and "▲ the peak" in out and "(own axis)" in out


def test_weights_format_changes_the_total(capsys):
    code, out, _ = run(capsys, TINY, "--weights", "bf16", "--format", "json")
    d = json.loads(out)["memory"]
    assert d["weights"]["format"] == "bfloat16"
    floats = 8 * 3 * 3 * 3 + 8 + 2 * 8 + 8 * 8 * 8 * 10 + 10 + 2 * 8          # params + BN running stats
    assert d["weights"]["total"] == floats * 2 + 8                                # num_batches_tracked stays int64
    assert d["total"] == d["timeline"]["peak"]["bytes"] - (floats * 4 + 8) + d["weights"]["total"]


def test_fits_says_yes_and_no(capsys):
    code, out, _ = run(capsys, TINY, "--fits", "1GB", "--format", "json")
    assert json.loads(out)["memory"]["fits"]["fits"] is True
    code, out, _ = run(capsys, TINY, "--fits", "10KB")
    assert code == 0 and re.search(r"^fits +no:", out, re.M) and "short by" in out


def test_max_batch_fits_at_b_and_not_at_b_plus_one(capsys):
    budget = 2_000_000
    code, out, _ = run(capsys, TINY, "--fits", str(budget), "--max-batch", "--format", "json")
    s = json.loads(out)["memory"]["largest"]["batch"]
    b = s["answer"]
    assert code == 0 and b > 1
    from tiny_model import Tiny

    def total(n):              # a plain count with memory at batch n (not the search's code)
        return flopmeter.count(Tiny(), input_shape=(n, 3, 16, 16), options=flopmeter.Options(memory=True)).memory.total
    assert total(b) <= budget < total(b + 1)
    assert len(s["traces"]) <= 6 and {t["x"] for t in s["traces"]} >= {b, b + 1}


def test_resnet50_max_batch_on_a_t4(capsys):
    pytest.importorskip("torchvision")
    code, out, _ = run(capsys, "torchvision:resnet50", "--fits", "T4", "--max-batch", "--format", "json")
    s = json.loads(out)["memory"]["largest"]["batch"]
    budget = 16 * 2**30 - 2 * 2**30                    # the T4's 16 GiB less the table's 2 GiB reserve
    assert code == 0 and s["budget"] == budget
    b = s["answer"]
    assert _total("torchvision:resnet50", b) <= budget < _total("torchvision:resnet50", b + 1)
    assert [t["why"] for t in s["traces"]][:2] == ["start", "start"] and len(s["traces"]) <= 6


def test_decoder_context_search_on_a_tiny_config(capsys):
    pytest.importorskip("transformers")
    spec = f"hf:{DATA / 'hf_tiny'}"
    budget = 600_000
    code, out, _ = run(capsys, spec, "--seq-len", "8", "--fits", str(budget), "--max-batch", "--format", "json")
    d = json.loads(out)["memory"]
    assert code == 0 and d["kv_cache"]["per_token"] == 2 * 2 * 2 * 16 * 4     # K,V · layers · kv heads · head dim · fp32
    ctx = d["largest"]["context"]
    n = ctx["answer"]
    assert ctx["limit"] == 64
    if n < 64:
        assert _total(spec, 1, seq_len=n) <= budget < _total(spec, 1, seq_len=n + 1)
    else:
        assert _total(spec, 1, seq_len=64) <= budget


@pytest.mark.parametrize("argv, error", [
    (["--max-batch"], "--max-batch needs a budget"),
    (["--weights", "int5"], "unknown weight format"),
    (["--fits", "80 bananas"], "cannot read the memory budget"),
    (["--context", "64"], "--context is the prompt length"),
])
def test_mistakes_end_in_error_and_hint(capsys, argv, error):
    code, out, err = run(capsys, TINY, *argv)
    assert code == 2 and error in err and "hint:" in err and "Traceback" not in err


def test_memory_from_a_saved_trace(capsys, tmp_path):
    target = tmp_path / "tiny.fmtrace"
    code, live, _ = run(capsys, TINY, "--memory", "--format", "json", "--save-trace", str(target))
    code, loaded, _ = run(capsys, str(target), "--memory", "--format", "json")
    assert code == 0
    assert json.loads(loaded)["memory"]["timeline"] == json.loads(live)["memory"]["timeline"]
    code, _, err = run(capsys, str(target), "--fits", "1GB", "--max-batch")
    assert code == 2 and "saved trace" in err


@pytest.mark.zoo
def test_llama_7b_at_4k_context_on_an_h100(capsys):
    pytest.importorskip("transformers")
    code, out, _ = run(capsys, "hf:llama-7b", "--dtype", "float16", "--context", "4096", "--fits", "H100",
                       "--max-batch", "--format", "json")
    d = json.loads(out)["memory"]
    b = d["largest"]["batch"]["answer"]
    budget = 80 * 2**30
    assert d["kv_cache"]["bytes"] == 4096 * 2 * 32 * 32 * 128 * 2      # tokens · K,V · layers · heads · head dim · fp16
    assert _total("hf:llama-7b", b, seq_len=4096, dtype=torch.float16) <= budget
    assert _total("hf:llama-7b", b + 1, seq_len=4096, dtype=torch.float16) > budget
