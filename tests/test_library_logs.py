"""From Python, a count keeps PyTorch's fake-tensor loggers and transformers' loggers quiet
while the model runs (a shape mistake surfaces as the one ModelForwardError, nothing logged
before it), and leaves every logger and handler as it found it."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter import ModelForwardError

SRC = Path(__file__).resolve().parents[1] / "src"
FAKE_TENSOR_LOG = "torch._subclasses.fake_tensor"


def _logging_state() -> dict:
    return {name: (lg.level, lg.disabled, lg.propagate, list(lg.filters), [(h, list(h.filters)) for h in lg.handlers])
            for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}


def _unchanged(before: dict) -> bool:
    """Every logger that existed before is as it was (PyTorch creates more as it imports submodules)."""
    after = _logging_state()
    return {name: after[name] for name in before} == before


def test_a_shape_mistake_raises_with_nothing_logged(capfd):
    model = nn.Linear(10, 20).eval()
    before = _logging_state()
    capfd.readouterr()
    with pytest.raises(ModelForwardError, match="aten.addmm"):
        flopmeter.count(model, input_shape=(1, 11))
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert _unchanged(before)


def test_the_fake_tensor_logger_speaks_again_after_the_count(capfd):
    with pytest.raises(ModelForwardError):
        flopmeter.count(nn.Linear(10, 20).eval(), input_shape=(1, 11))
    capfd.readouterr()
    logging.getLogger(FAKE_TENSOR_LOG).error("said after the count")
    assert "said after the count" in capfd.readouterr().err


class Chatty(nn.Module):
    """Logs on transformers' loggers in its forward, as transformers models do about their inputs."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        logging.getLogger("transformers.modeling_utils").warning("an existing transformers logger")
        logging.getLogger("transformers.models.made_during_the_count").warning("a logger created in the forward")
        return self.lin(x)


def test_transformers_loggers_are_quiet_during_the_count(capfd):
    pytest.importorskip("transformers")
    import transformers  # noqa: F401  (its root logger and handler, as an hf: model has them)
    logging.getLogger("transformers.modeling_utils")
    before = _logging_state()
    capfd.readouterr()
    report = flopmeter.count(Chatty().eval(), input_shape=(2, 4))
    assert report.macs == 2 * 4 * 3
    assert capfd.readouterr() == ("", "")
    assert _unchanged(before)


def test_the_command_line_keeps_transformers_quiet_when_the_count_imports_it(tmp_path):
    """A fresh process: transformers is first imported while the hf: model is built."""
    pytest.importorskip("transformers")
    config = tmp_path / "config.json"     # token ids 50256 outside a 16-word vocabulary: transformers logs that
    config.write_text('{"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2, "vocab_size": 16, '
                      '"n_positions": 16}')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env.pop("TRANSFORMERS_VERBOSITY", None)
    done = subprocess.run([sys.executable, "-m", "flopmeter", f"hf:{config}", "--seq-len", "8", "--format", "csv"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("path,")
    assert done.stderr == ""
