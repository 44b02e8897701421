"""--fits and --max-batch for a training step: the answer comes from traces of the whole step
(forward, backward, optimizer), and it holds by the model's own prediction at b and b + 1."""

import json
from pathlib import Path

import pytest
import torch

import flopmeter
from flopmeter import Options
from flopmeter.cli import main
from flopmeter.trace import training

from tiny_model import Tiny

pytestmark = pytest.mark.skipif(not training.supported(),
                                reason="this PyTorch has no torch.autograd.graph.node_creation_hook")

DATA = Path(__file__).parent / "data"


def _step_total(batch: int) -> int:
    """The training step's predicted peak (bytes) at ``batch``, counted apart from the CLI's search."""
    options = Options(training=True, optimizer="adam", inference=False, memory=True)
    report = flopmeter.count(Tiny().eval(), torch.randn(batch, 3, 16, 16), options=options)
    return report.memory.total


def test_max_batch_of_a_training_step(capsys):
    budget = 5_000_000
    code = main([f"{DATA / 'tiny_model.py'}:build", "--train", "--optimizer", "adam", "--fits", f"{budget}B",
                 "--max-batch", "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0
    d = json.loads(out)
    answer = d["memory"]["largest"]["batch"]["answer"]
    assert "training" in d and d["training"]["optimizer"] == "adam"
    assert _step_total(answer) <= budget < _step_total(answer + 1)


def test_a_training_step_needs_more_than_inference():
    x = torch.randn(4, 3, 16, 16)
    inference = flopmeter.count(Tiny().eval(), x, options=Options(memory=True)).memory.total
    step = flopmeter.count(Tiny().eval(), x, options=Options(training=True, optimizer="adam", inference=False,
                                                              memory=True))
    # the step's peak holds at least the weights, their gradients and Adam's two moments (4 × params × 4 bytes)
    params = sum(p.numel() for p in Tiny().parameters())
    assert step.memory.total >= 4 * params * 4
    assert step.memory.total > inference
    assert step.memory.total == step.training["peak_bytes"]
