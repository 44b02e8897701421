"""The Lightning callback in a real Trainer.fit: logged step FLOPs, FlopCounterMode, MFU."""

from __future__ import annotations

import copy
import csv

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import flopmeter

L = pytest.importorskip("lightning.pytorch")
from flopmeter.integrations.lightning import FlopmeterCallback  # noqa: E402

B, I, H, O = 8, 12, 24, 4
PEAK = 1e12


class Regressor(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(I, H), nn.ReLU(), nn.Linear(H, O))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def loader():
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(4 * B, I, generator=g), torch.randn(4 * B, O, generator=g))
    return torch.utils.data.DataLoader(data, batch_size=B)


def test_fit_logs_the_traced_step_flops_and_mfu(tmp_path):
    torch.manual_seed(0)
    module = Regressor()
    callback = FlopmeterCallback(peak_flops=PEAK)
    logger = L.loggers.CSVLogger(tmp_path)
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=logger, log_every_n_steps=1, callbacks=[callback],
                        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(module, loader())
    records = callback.records
    assert len(records) == 3

    # The step's FLOPs, written out: forward 2·B·in·out per Linear; backward the weight gradient
    # of each (2·B·in·out) and the input gradient of the second (the batch needs none).
    forward = 2 * B * (I * H + H * O)
    backward = 2 * B * (I * H + H * O) + 2 * B * H * O
    expected = flopmeter.training_flops(module, torch.zeros(B, I), optimizer="adamw")
    assert (expected.forward, expected.backward) == (forward, backward)
    for rec in records:
        assert rec.flops == expected and rec.flops.model_flops == forward + backward
        assert rec.samples == B
        # MFU recomputed from the step time the record holds.
        assert rec.mfu == pytest.approx(rec.flops.model_flops / rec.seconds / PEAK, rel=1e-12)
        assert rec.hfu == rec.mfu           # nothing recomputed

    # FlopCounterMode of the same real step (matmuls only: the MSE loss and AdamW are
    # elementwise, which neither counts under `dot`).
    real = copy.deepcopy(module)
    x, y = next(iter(loader()))
    with FlopCounterMode(display=False) as counter:
        nn.functional.mse_loss(real(x), y).backward()
    assert counter.get_total_flops() == expected.forward + expected.backward

    rows = list(csv.DictReader(open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv")))
    logged = [r for r in rows if r.get("flopmeter/step_flops")]
    assert len(logged) == 3
    for row, rec in zip(logged, records):
        assert float(row["flopmeter/step_flops"]) == forward + backward
        seconds = float(row["flopmeter/step_seconds"])
        assert float(row["flopmeter/mfu"]) == pytest.approx((forward + backward) / seconds / PEAK, rel=1e-6)
        assert float(row["flopmeter/samples_per_s"]) == pytest.approx(B / seconds, rel=1e-6)


def test_cpu_without_a_peak_is_a_clear_error():
    from flopmeter.errors import OptionsError
    module = Regressor()
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, callbacks=[FlopmeterCallback()],
                        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
    with pytest.raises(OptionsError, match="peak throughput"):
        trainer.fit(module, loader())
