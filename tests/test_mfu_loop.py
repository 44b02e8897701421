"""MFUMeter in a plain loop: step FLOPs, rates, MFU and HFU, and the optional extras' errors."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from flopmeter.errors import MissingDependencyError, OptionsError
from flopmeter.integrations.loop import MFUMeter

B, I, H, O = 4, 6, 10, 2
PEAK = 2e9


class Clock:
    """A clock that advances by a fixed step each time it is read."""

    def __init__(self, tick):
        self.now, self.tick = 0.0, tick

    def __call__(self):
        self.now += self.tick
        return self.now


class Net(nn.Module):
    def __init__(self, recompute=False):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(I, H), nn.ReLU(), nn.Linear(H, O))
        self.recompute = recompute

    def forward(self, x):
        return checkpoint(self.body, x, use_reentrant=False) if self.recompute else self.body(x)


def train(model, meter, steps=3):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    records = []
    for _ in range(steps):
        x = torch.randn(B, I)
        model(x).sum().backward()
        opt.step()
        opt.zero_grad()
        records.append(meter.step(x))
    return records


def test_plain_loop_mfu_and_hfu_from_the_formula():
    forward = 2 * B * (I * H + H * O)
    backward = 2 * B * (I * H + H * O) + 2 * B * H * O     # weight gradients; input gradient of the second
    recompute = 2 * B * I * H                                # the checkpointed body up to the early stop
    model = Net(recompute=True)
    logged = []
    with MFUMeter(model, optimizer="sgd", peak_flops=PEAK, clock=Clock(0.5), log=logged.append) as meter:
        records = train(model, meter)
    for rec in records:
        assert rec.seconds == 0.5
        assert rec.flops.model_flops == forward + backward
        assert rec.flops.hardware_flops == forward + backward + recompute
        assert rec.mfu == (forward + backward) / 0.5 / PEAK
        assert rec.hfu == (forward + backward + recompute) / 0.5 / PEAK
        assert rec.samples == B and rec.tokens is None
    assert logged[-1]["flopmeter/samples_per_s"] == B / 0.5
    assert logged[-1]["flopmeter/flops_per_s"] == (forward + backward) / 0.5
    assert meter.counter.traces == 1


def test_measure_times_one_block_and_tokens_are_counted():
    emb = nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 50))
    ids = torch.zeros(3, 7, dtype=torch.long)
    meter = MFUMeter(emb, optimizer=None, device="h100", clock=Clock(0.25))
    with meter.measure(ids):
        pass
    rec = meter.records[-1]
    assert (rec.samples, rec.tokens) == (3, 21)
    assert rec.flops.forward == 2 * 21 * 8 * 50
    assert rec.metrics()["flopmeter/tokens_per_s"] == 21 / 0.25
    assert meter.peak.flops == 67e12 and "H100 SXM" in meter.peak.source and "fp32" in meter.peak.source


def test_meter_needs_a_peak_on_cpu_and_a_started_clock():
    with pytest.raises(OptionsError, match="peak throughput"):
        MFUMeter(Net())
    meter = MFUMeter(Net(), peak_flops=PEAK)
    with pytest.raises(OptionsError, match="before the clock started"):
        meter.step(torch.randn(B, I))


@pytest.mark.parametrize("module, blocked, extra", [
    ("flopmeter.integrations.lightning", ("lightning", "lightning.pytorch", "lightning.pytorch.callbacks",
                                          "pytorch_lightning", "pytorch_lightning.callbacks"), "lightning"),
    ("flopmeter.integrations.hf", ("transformers",), "hf"),
])
def test_a_missing_library_names_the_extra(monkeypatch, module, blocked, extra):
    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(MissingDependencyError) as err:
        importlib.import_module(module)
    assert err.value.hint == f"pip install 'flopmeter[{extra}]'"


def test_stopwatch_synchronises_a_cuda_device_at_both_ends(monkeypatch):
    from flopmeter.mfu import Stopwatch
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    watch = Stopwatch(torch.device("cuda", 0), Clock(1.0))
    watch.start()
    assert watch.stop() == 1.0
    assert calls == [torch.device("cuda", 0)] * 2
    calls.clear()
    cpu = Stopwatch(torch.device("cpu"), Clock(1.0))
    cpu.start()
    cpu.stop()
    assert calls == []


def test_a_mapping_batch_is_passed_as_keyword_arguments():
    from collections import UserDict
    from flopmeter.mfu import batch_counts, signature, split_inputs
    ids = torch.zeros(2, 5, dtype=torch.long)
    batch = UserDict({"input_ids": ids})          # as a tokenizer's BatchEncoding is
    assert split_inputs(batch) == ((), {"input_ids": ids})
    assert signature(batch) == signature({"input_ids": ids})
    assert batch_counts(batch) == (2, 10)
