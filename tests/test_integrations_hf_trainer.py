"""The Hugging Face Trainer callback in a real Trainer.train: step FLOPs, FlopCounterMode, MFU."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import flopmeter

transformers = pytest.importorskip("transformers")
from flopmeter.integrations.hf import FlopmeterTrainerCallback  # noqa: E402

BATCH, T, PEAK = 2, 16, 1e12


def tiny_gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=64,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg)


class Blocks(torch.utils.data.Dataset):
    def __init__(self, n=8, length=T):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 64, (n, length), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def args(tmp_path, **kw):
    kw = {"max_steps": 3, **kw}
    return transformers.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=BATCH,
                                          logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
                                          disable_tqdm=True, **kw)


class Logs(transformers.TrainerCallback):
    """What the Trainer's loggers receive, after the flopmeter callback added its figures."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


class InOrder(transformers.Trainer):
    def _get_train_sampler(self, *args, **kwargs):
        return torch.utils.data.SequentialSampler(self.train_dataset)


def example():
    ids = torch.zeros(BATCH, T, dtype=torch.long)
    return {"input_ids": ids, "labels": ids}


def test_train_logs_the_traced_step_flops_and_mfu(tmp_path):
    model = tiny_gpt2()
    callback = FlopmeterTrainerCallback(example(), peak_flops=PEAK)
    seen = Logs()
    trainer = transformers.Trainer(model=model, args=args(tmp_path), train_dataset=Blocks(),
                                   callbacks=[callback, seen])
    trainer.train()
    expected = flopmeter.training_flops(model, example(), optimizer="adamw")
    assert len(callback.records) == 3
    for rec in callback.records:
        assert rec.flops == expected
        assert (rec.samples, rec.tokens) == (BATCH, BATCH * T)
        assert rec.mfu == pytest.approx(expected.model_flops / rec.seconds / PEAK, rel=1e-12)
    logged = [h for h in seen.logs if "flopmeter/mfu" in h]
    assert len(logged) == 3
    for h, rec in zip(logged, callback.records):
        assert h["flopmeter/step_flops"] == expected.model_flops
        assert h["flopmeter/mfu"] == pytest.approx(expected.model_flops / h["flopmeter/step_seconds"] / PEAK)
        assert h["flopmeter/tokens_per_s"] == pytest.approx(BATCH * T / h["flopmeter/step_seconds"])

    # FlopCounterMode of the same real step. Both count the matmuls of forward and backward
    # (FlopCounterMode counts the same mm / addmm / bmm / attention kernels as `dot`); AdamW
    # and the elementwise ops (GELU, layer norm, softmax, the loss) count in neither.
    real = copy.deepcopy(model).train()
    batch = {k: v.clone() for k, v in Blocks()[0].items()}
    batch = {k: torch.stack([v] * BATCH) for k, v in batch.items()}
    with FlopCounterMode(display=False) as counter:
        real(**batch).loss.backward()
    assert counter.get_total_flops() == expected.forward + expected.backward


def test_observed_collator_costs_each_shape(tmp_path):
    model = tiny_gpt2()
    callback = FlopmeterTrainerCallback(peak_flops=PEAK)
    collate = callback.observe(transformers.default_data_collator)
    data = [Blocks(2, 8)[0], Blocks(2, 8)[1], Blocks(2, 24)[0], Blocks(2, 24)[1], Blocks(2, 8)[0], Blocks(2, 8)[1]]
    trainer = InOrder(model=model, args=args(tmp_path, dataloader_num_workers=0), train_dataset=data,
                      data_collator=collate, callbacks=[callback])
    trainer.train()
    shapes = [rec.flops.signature[1][0][1][1] for rec in callback.records]
    assert shapes == [(BATCH, 8), (BATCH, 24), (BATCH, 8)]
    for rec, n in zip(callback.records, (8, 24, 8)):
        ids = torch.zeros(BATCH, n, dtype=torch.long)
        assert rec.flops == flopmeter.training_flops(model, {"input_ids": ids, "labels": ids})


def test_gradient_accumulation_counts_every_micro_batch(tmp_path):
    model = tiny_gpt2()
    callback = FlopmeterTrainerCallback(example(), peak_flops=PEAK, convention="all")
    trainer = transformers.Trainer(model=model, args=args(tmp_path, gradient_accumulation_steps=2, max_steps=2),
                                   train_dataset=Blocks(), callbacks=[callback])
    trainer.train()
    one = flopmeter.training_flops(model, example(), optimizer="adamw", convention="all")
    assert len(callback.records) == 2
    for rec in callback.records:
        # Two forwards and backwards, one optimizer step (AdamW's elementwise ops count under `all`).
        assert (rec.flops.forward, rec.flops.backward) == (2 * one.forward, 2 * one.backward)
        assert rec.flops.optimizer == one.optimizer > 0
        assert (rec.samples, rec.tokens) == (2 * BATCH, 2 * BATCH * T)
