"""The command line, in process: main(argv) -> exit status, output on stdout/stderr."""

import json

import pytest

from flopmeter.cli import main

pytest.importorskip("torchvision")


def test_table_for_a_torchvision_model(capsys):
    assert main(["torchvision:resnet18", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "torchvision:resnet18" in out and "1.81 GMACs" in out     # 1,814,073,344 MACs
    assert "layer4" in out and "dot: FLOPs = 2 × MACs" in out
    assert "unsupported  none" in out


def test_json_raw_numbers_and_batch(capsys):
    assert main(["torchvision:resnet18", "--format", "json", "--batch", "2"]) == 0
    single = main(["torchvision:resnet18", "--format", "json"])
    out = capsys.readouterr().out
    first, second = _two_json(out)
    assert single == 0
    assert first["inputs"] == ["float32[2, 3, 224, 224]"]
    assert first["totals"]["macs"] == 2 * second["totals"]["macs"]          # costs scale with batch


def _two_json(text):
    dec = json.JSONDecoder()
    a, end = dec.raw_decode(text)
    b, _ = dec.raw_decode(text[end:].lstrip())
    return a, b


@pytest.mark.parametrize("argv, message, hint", [
    (["torchvision:resnet5"], "unknown torchvision model 'resnet5'", "torchvision:resnet50"),
    (["torchvison:resnet18"], "cannot read model spec", "did you mean 'torchvision:resnet18'?"),
    (["torchvision:resnet18", "--convention", "exat"], "unknown FLOP convention 'exat'", "'exact'"),
    (["torchvision:resnet18", "--input", "1x3xfoo"], "cannot read input shape", "1x3x224x224"),
    (["torchvision:resnet18", "--input", "1x4x224x224"], "failed in 'conv1' (Conv2d)", "shapes"),
])
def test_errors_are_one_line_with_a_hint(capsys, argv, message, hint):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("error: ") and err[1].startswith("hint: ")
    assert message in err[0] and hint in err[1]
    assert "Traceback" not in "\n".join(err)


def test_debug_shows_the_traceback():
    from flopmeter import InputError
    with pytest.raises(InputError):
        main(["torchvision:resnet5", "--debug"])


def test_causal_counting_is_stated_in_the_report(capsys):
    assert main(["torchvision:resnet18", "--format", "json", "--causal", "exact"]) == 0
    assert json.loads(capsys.readouterr().out)["causal"] == "exact"
