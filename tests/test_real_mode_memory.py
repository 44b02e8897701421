"""A real-mode run is refused before it allocates when its predicted peak (weights, inputs and
activations, from a fake count) exceeds the free memory."""

import pytest

from cli_checks import one_error
from flopmeter.cli import common, main

MODEL = "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Linear(64, 4096), nn.ReLU()).eval()\n"


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "wide.py"
    path.write_text(MODEL)
    return f"{path}:build"


def test_a_real_run_whose_activations_exceed_free_memory_is_refused(spec, monkeypatch, capsys):
    batch = 256
    weights = (64 * 4096 + 4096) * 4
    # the input and the Linear's output are alive together at the peak (float32)
    at_least = weights + batch * 64 * 4 + batch * 4096 * 4
    monkeypatch.setattr(common, "free_memory", lambda: at_least - 1)
    error, hint = one_error(capsys, main([spec, "--input", f"{batch}x64", "--mode", "real"]))
    assert "at its peak in real mode" in error and "--force" in hint


def test_the_same_run_goes_ahead_when_it_fits_or_with_force(spec, monkeypatch, capsys):
    monkeypatch.setattr(common, "free_memory", lambda: 1 << 40)
    assert main([spec, "--input", "256x64", "--mode", "real", "--depth", "0"]) == 0
    monkeypatch.setattr(common, "free_memory", lambda: 1)
    assert main([spec, "--input", "256x64", "--mode", "real", "--depth", "0", "--force"]) == 0
    capsys.readouterr()
