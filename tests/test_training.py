"""A training step traced on fake tensors: backward and optimizer counts against closed forms
and against PyTorch's FlopCounterMode run on real tensors; frozen layers, inputs without
gradients and checkpointing; the user's model untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import flopmeter
from flopmeter import ModelForwardError, Options
from flopmeter.trace import training

from guards import assert_unchanged, snapshot

pytestmark = pytest.mark.skipif(not training.supported(),
                                reason="this PyTorch has no torch.autograd.graph.node_creation_hook")

TRAIN = Options(training=True)


def phase_macs(report, path: str = "") -> dict[str, int]:
    return {p: c.macs for p, c in report.module(path).by_phase.items()}


# -- closed forms -----------------------------------------------------------------

@pytest.mark.parametrize("input_grad", [True, False])
def test_bias_free_linear_backward_is_two_or_one_forward(input_grad):
    b, d_in, d_out = 5, 12, 7
    x = torch.randn(b, d_in, requires_grad=input_grad)
    r = flopmeter.count(nn.Linear(d_in, d_out, bias=False), x, options=TRAIN)
    forward = b * d_in * d_out                                   # B·D_in·D_out MACs
    macs = phase_macs(r)
    assert macs["forward"] == forward
    # grad weight gᵀ·x (B·D_in·D_out) always; grad input g·W (B·D_out·D_in) only when x needs one
    assert macs["backward"] == (2 if input_grad else 1) * forward


def test_frozen_middle_linear_computes_only_its_input_gradient():
    model = nn.Sequential(nn.Linear(6, 10, bias=False), nn.Linear(10, 8, bias=False), nn.Linear(8, 3, bias=False))
    model[1].weight.requires_grad_(False)
    b = 4
    r = flopmeter.count(model, torch.randn(b, 6), options=TRAIN)
    assert phase_macs(r, "0") == {"forward": b * 6 * 10, "backward": b * 6 * 10}        # weight grad only (x needs none)
    assert phase_macs(r, "1") == {"forward": b * 10 * 8, "backward": b * 10 * 8}        # input grad only (frozen)
    assert phase_macs(r, "2") == {"forward": b * 8 * 3, "backward": 2 * b * 8 * 3}      # both
    grads = r.training["grad_bytes"]
    assert grads == (6 * 10 + 8 * 3) * 4                       # float32 gradients of the two trainable weights


class Checkpointed(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(8, 16, bias=False)
        self.block = nn.Sequential(nn.Linear(16, 32, bias=False), nn.ReLU(), nn.Linear(32, 16, bias=False))
        self.out = nn.Linear(16, 2, bias=False)

    def forward(self, x):
        return self.out(checkpoint(self.block, self.inp(x), use_reentrant=False))


@pytest.mark.parametrize("early_stop", [False, True])
def test_checkpointed_block_forward_is_counted_twice(early_stop):
    from torch.utils.checkpoint import set_checkpoint_early_stop

    b = 3
    with set_checkpoint_early_stop(early_stop):
        r = flopmeter.count(Checkpointed(), torch.randn(b, 8), options=TRAIN)
    first, last = b * 16 * 32, b * 32 * 16                    # the block's two Linears' forward MACs
    macs = phase_macs(r, "block")
    assert macs["forward"] == first + last
    # run again inside backward; PyTorch's default early stop ends the recompute once every
    # tensor backward needs is back — the last Linear's output is not one of them
    assert macs["recompute"] == first + (0 if early_stop else last)
    assert macs["backward"] == 2 * (first + last)             # input and weight grads of both Linears
    assert r.module("block").calls == 2
    # nothing of the checkpointed block is saved for backward but its input (saved by the checkpoint)
    assert "block.0" not in r.training["saved_by_module"] and "block.1" not in r.training["saved_by_module"]


def test_adam_step_is_six_elementwise_and_one_sqrt_per_parameter():
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    r = flopmeter.count(model, torch.randn(2, 5), options=Options(training=True, optimizer="adam"))
    p = sum(t.numel() for t in model.parameters())              # 5·4 + 4 + 4·3 + 3 = 39
    tensors = len(list(model.parameters()))                      # 4
    opt = r.by_phase["optimizer"]
    # torch/optim/adam.py _single_tensor_adam (CPU default), per element: exp_avg.lerp_,
    # exp_avg_sq.mul_, .addcmul_, .sqrt() (transcendental), / sqrt(bias_correction2), .add_(eps),
    # param.addcdiv_ — plus step_t += 1 once per parameter tensor
    assert opt.elementwise == 6 * p + tensors
    assert opt.transcendental == p
    assert opt.macs == 0
    # each parameter's ops belong to the module that owns it: Linear 0 has 5·4 + 4 elements in 2 tensors
    first = r.module("0").by_phase["optimizer"]
    assert (first.elementwise, first.transcendental) == (6 * 24 + 2, 24)
    # two float32 moments per element and one float32 step per tensor
    assert r.training["optimizer_state_bytes"] == 2 * p * 4 + tensors * 4


@pytest.mark.parametrize("name,per_element", [("adamw", 7), ("sgd", 1), ("sgd-momentum", 1)])
def test_other_optimizers_per_element(name, per_element):
    model = nn.Linear(6, 5)
    r = flopmeter.count(model, torch.randn(2, 6), options=Options(training=True, optimizer=name))
    p, tensors = 6 * 5 + 5, 2
    opt = r.by_phase["optimizer"]
    # AdamW = Adam + param.mul_(1 − lr·wd); SGD: param.add_(grad, −lr); SGD with momentum on its
    # first step copies the gradient into the buffer (a clone, bytes only) then adds it: 1
    steps = tensors if name.startswith("adam") else 0
    assert opt.elementwise == per_element * p + steps
    state = {"adamw": 2 * p * 4 + tensors * 4, "sgd": 0, "sgd-momentum": p * 4}[name]
    assert r.training["optimizer_state_bytes"] == state


def test_narayanan_training_flops_for_gpt2_shaped_model():
    transformers = pytest.importorskip("transformers")
    bsz, s, l, h, heads, v = 2, 16, 2, 64, 4, 96
    cfg = transformers.GPT2Config(n_layer=l, n_embd=h, n_head=heads, vocab_size=v, n_positions=s,
                                  attn_implementation="eager", resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    model = transformers.GPT2LMHeadModel(cfg)
    ids = torch.zeros(bsz, s, dtype=torch.long)
    r = flopmeter.count(model, ids, options=Options(training=True, loss="cross-entropy"))
    traced = sum(c.flops("dot") for p, c in r.by_phase.items() if p in ("forward", "backward"))
    # Narayanan et al. 2021: 72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h)) = 72Bslh² + 12Bs²lh + 6BshV
    expected = 72 * bsz * s * l * h * h + 12 * bsz * s * s * l * h + 6 * bsz * s * h * v
    assert traced == expected
    assert sum(r.unsupported.values()) == 0


# -- the user's model -------------------------------------------------------------

class BadBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("deliberate backward failure")


class RaisesInBackward(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return BadBackward.apply(self.bn(self.lin(x)))


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_model_untouched_after_training_count(mode):
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2)).eval()
    x = torch.randn(3, 4)
    before = snapshot(model)
    flopmeter.count(model, x, options=Options(training=True, optimizer="adam", mode=mode))
    assert_unchanged(model, before)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_model_untouched_when_backward_raises(mode):
    model = RaisesInBackward().eval()
    x = torch.randn(3, 4)
    before = snapshot(model)
    with pytest.raises(ModelForwardError, match="deliberate backward failure"):
        flopmeter.count(model, x, options=Options(training=True, mode=mode))
    assert_unchanged(model, before)
    # the cached stand-ins carry no gradient into the next count
    r = flopmeter.count(model.lin, x, options=TRAIN)
    assert r.by_phase["backward"].macs == 3 * 4 * 4


def test_training_by_phase_in_json_and_inference_json_unchanged():
    model = nn.Linear(3, 2)
    d = flopmeter.count(model, torch.randn(1, 3), options=TRAIN).to_dict(ops=False)
    assert set(d["totals_by_phase"]) == {"forward", "backward"}
    # x needs no gradient but the weight's gradient needs x: addmm saves it (1·3 float32)
    assert d["training"]["loss"] == "sum" and d["training"]["saved_bytes"] == 1 * 3 * 4
    plain = flopmeter.count(model, torch.randn(1, 3)).to_dict(ops=False)
    assert "totals_by_phase" not in plain and "by_phase" not in plain["modules"]


def test_unknown_optimizer_is_an_options_error():
    with pytest.raises(flopmeter.OptionsError, match="adma"):
        Options(training=True, optimizer="adma")


def test_cli_train_and_generate(capsys):
    from flopmeter.cli import main

    assert main(["torchvision:resnet18", "--input", "2x3x32x32", "--train", "--optimizer", "sgd", "--format", "json",
                 "--raw"]) == 0
    import json
    d = json.loads(capsys.readouterr().out)
    assert d["training"]["optimizer"] == "sgd" and d["training"]["grad_bytes"] == d["params"]["bytes"]
    assert set(d["totals_by_phase"]) == {"forward", "backward", "optimizer"}
    # SGD without momentum keeps no state; one add per parameter element
    assert d["training"]["optimizer_state_bytes"] == 0
    assert d["totals_by_phase"]["optimizer"]["elementwise"] == d["params"]["count"]


def test_cli_optimizer_without_train_is_a_user_error(capsys):
    from flopmeter.cli import main

    assert main(["torchvision:resnet18", "--optimizer", "adam"]) == 2
    err = capsys.readouterr().err
    assert "error: --loss, --optimizer and --autocast describe a training step" in err and "hint: add --train" in err


def test_training_trace_saved_and_reloaded_gives_the_same_report(tmp_path):
    from flopmeter.api import report_from_trace
    from flopmeter.trace.io import load_trace, save_trace

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    r = flopmeter.count(model, torch.randn(3, 4), options=Options(training=True, optimizer="adam"))
    save_trace(r.trace, tmp_path / "step.fmtrace")
    again = report_from_trace(load_trace(tmp_path / "step.fmtrace"))
    assert again.to_dict() == r.to_dict()


def test_loss_callable():
    model = nn.Linear(6, 3, bias=False)
    b = 4
    r = flopmeter.count(model, torch.randn(b, 6),
                        options=Options(training=True, loss=lambda out: (out * out).mean()))
    assert r.trace.options["loss"] == "<lambda>"
    assert phase_macs(r)["backward"] == b * 6 * 3             # weight gradient only
    # the loss at the root (a Linear has no children): square (b·3) and mean (b·3 − 1 adds + 1 divide)
    loss_ops = sum(row.cost.elementwise for row in r.ops if row.event.phase == "forward" and row.op != "aten.mm")
    assert loss_ops == b * 3 + (b * 3 - 1) + 1


@pytest.mark.parametrize("name,per_element,transcendental", [("adam", 6, 1), ("adamw", 7, 1), ("sgd", 1, 0)])
def test_foreach_optimizers_count_as_the_for_loop(monkeypatch, name, per_element, transcendental):
    """PyTorch picks foreach on devices with foreach kernels (CUDA); made to pick it on CPU here,
    the ``_foreach_*`` ops count the same per element as the for-loop."""

    monkeypatch.setattr(training, "_get_foreach_kernels_supported_devices", lambda: ["cpu"])
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    r = flopmeter.count(model, torch.randn(2, 5), options=Options(training=True, optimizer=name))
    assert any(row.op.startswith("aten._foreach_") for row in r.ops)
    p, tensors = 39, 4
    opt = r.by_phase["optimizer"]
    assert opt.elementwise == per_element * p + (tensors if name.startswith("adam") else 0)
    assert opt.transcendental == transcendental * p
    assert not r.unsupported_by_phase


def test_autocast_shows_the_weight_copies_it_makes():
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    b = 8
    r = flopmeter.count(model, torch.randn(b, 16), options=Options(training=True, autocast="bf16"))
    params = 16 * 32 + 32 + 32 * 4 + 4
    assert r.training["autocast_copy_bytes"] == params * 2           # one bfloat16 copy of every weight and bias
    # saved for backward, all bfloat16: the input copy (Linear 0's weight gradient), the ReLU's
    # output, and Linear 2's weight copy (its input gradient); Linear 0 needs no input gradient
    assert r.training["saved_by_module"] == {"0": b * 16 * 2, "1": b * 32 * 2, "2": 32 * 4 * 2}
    assert r.trace.options["autocast"] == "bfloat16"


def test_step_peak_closed_form():
    b, d_in, d_out = 3, 5, 7
    r = flopmeter.count(nn.Linear(d_in, d_out, bias=False), torch.randn(b, d_in),
                        options=Options(training=True, optimizer="sgd"))
    # alive together when backward's mm writes the weight gradient (float32): the weight, the
    # input, the output y (kept by the caller), the loss, the ones it is seeded with, grad W
    peak = 4 * (d_out * d_in + b * d_in + b * d_out + 1 + 1 + d_out * d_in)
    assert r.training["peak_bytes"] == peak and r.training["peak_phase"] == "backward"
    assert r.training["saved_bytes"] == 4 * b * d_in          # mm saves x for the weight gradient


@pytest.mark.parametrize("name,per_element", [("adam", 6), ("adamw", 7)])
def test_fused_adam_counts_as_the_for_loop(monkeypatch, name, per_element):
    """``fused=True`` (opt-in in PyTorch): ``_foreach_add_`` on the steps, then one ``_fused_adam(w)_``."""

    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    monkeypatch.setattr(training, "make_optimizer", lambda n, params, device: cls(params, fused=True))
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    r = flopmeter.count(model, torch.randn(2, 5), options=Options(training=True, optimizer=name))
    assert any(row.op == f"aten._fused_{name}_" for row in r.ops)
    p, tensors = 39, 4
    opt = r.by_phase["optimizer"]
    assert (opt.elementwise, opt.transcendental) == (per_element * p + tensors, p)


def test_per_sample_divides_every_phase(capsys):
    import json

    from flopmeter.cli import main

    assert main(["torchvision:resnet18", "--input", "2x3x32x32", "--train", "--per-sample", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert sum(c["macs"] for c in d["totals_by_phase"].values()) == d["totals"]["macs"]
