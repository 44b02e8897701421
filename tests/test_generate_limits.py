"""``--generate PROMPT+NEW``: a generation beyond the model's positions is refused with the limit
in the hint, and a value that is not two positive whole numbers is one usage error."""

import json

import pytest

from flopmeter.cli import main

pytest.importorskip("transformers")

TINY = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 1, "n_embd": 8, "n_head": 2,
        "vocab_size": 16, "n_positions": 16, "bos_token_id": 0, "eos_token_id": 0}


@pytest.fixture
def tiny(tmp_path) -> str:
    f = tmp_path / "config.json"
    f.write_text(json.dumps(TINY))
    return f"hf:{f}"


def _one_error(capfd, argv):
    capfd.readouterr()
    assert main(argv) == 2
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["error", "hint"], err
    assert "Traceback" not in err and out == ""
    return lines


def test_generation_within_the_positions_is_counted(tiny, capfd):
    assert main([tiny, "--generate", "8+8", "--format", "json"]) == 0
    data = json.loads(capfd.readouterr().out)
    assert (data["prompt"], data["new"]) == (8, 8)


@pytest.mark.parametrize("lengths", ["8+9", "16+1", "1+16", "17+1"])
def test_generation_beyond_the_positions_is_refused(tiny, capfd, lengths):
    error, hint = _one_error(capfd, [tiny, "--generate", lengths])
    assert "--generate" in error and "16 positions" in error and "within 16" in hint


def test_gpt2_decoding_past_its_1024_positions_is_refused(capfd):
    error, hint = _one_error(capfd, ["hf:gpt2", "--generate", "16+100000000"])
    assert "--generate" in error and "1,024 positions" in error and "within 1,024" in hint


@pytest.mark.parametrize("value", ["16+", "+5", "a+b", "16+-5", "1_0+5", "0+5", "5+0", "16", "16+99999999999999999999",
                                   "1+2+3", ""])
def test_malformed_generate_values_are_one_usage_error(tiny, capfd, value):
    error, _ = _one_error(capfd, [tiny, f"--generate={value}"])
    assert "--generate" in error
