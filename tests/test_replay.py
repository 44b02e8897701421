"""Module replay (trace/replay.py): a replayed run's trace equals the full run's, event for
event, storage for storage, module for module, and so does every report made from it; replay
happens where the computation is provably the same and is refused elsewhere."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter.api import run
from flopmeter.trace import record
from flopmeter.trace.events import TensorRef


@pytest.fixture(autouse=True)
def _replay_small_models(monkeypatch):
    """These models repeat a block 2-6 times; by default only blocks with 8 or more twins are
    candidates (replay.MIN_TWINS), so every block with a twin is one here."""
    monkeypatch.setenv("FLOPMETER_REPLAY_MIN_TWINS", "2")

transformers = pytest.importorskip("transformers")


# -- comparing two traces -----------------------------------------------------------------

def _norm(v):
    """A comparable form of a trace value: TensorRefs with every field (their == compares shape
    and dtype only), tensors and cache objects (kept in module outputs) by metadata."""
    t = type(v)
    if t is TensorRef:
        return ("ref", v.id, v.storage, v.shape, v.stride, v.offset, v.dtype, v.device, v.requires_grad, v.role)
    if t in (tuple, list):
        return (t.__name__, tuple(_norm(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple((k, _norm(x)) for k, x in v.items()))
    if isinstance(v, torch.Tensor):
        return ("tensor", tuple(v.shape), v.stride(), v.dtype, v.untyped_storage().nbytes())
    if hasattr(v, "__dict__") and not isinstance(v, type) and not callable(v):
        layers = getattr(v, "layers", None)
        return (type(v).__name__, _norm({k: x for k, x in vars(v).items() if k != "layers"}),
                tuple(_norm(vars(layer)) for layer in layers or ()))
    return v


def trace_form(trace):
    return {
        "events": [(e.op, e.overload, _norm(e.args), _norm(e.kwargs), _norm(e.out), e.module, e.stack, e.phase)
                   for e in trace.events],
        "modules": [(m.path, m.type, m.calls, _norm(m.outputs), _norm(m.inputs)) for m in trace.modules],
        "storages": {k: (s.nbytes, s.created, s.freed, s.device) for k, s in trace.storages.items()},
        "params": [vars(p) for p in trace.params],
        "inputs": _norm(trace.inputs),
    }


def both(model, args, kwargs=None, *, module_inputs=True, memory=True):
    """(full run, replayed run): traces and reports (memory analysed), replay switched by the
    environment as a user would."""
    out = []
    for value in ("0", "1"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("FLOPMETER_REPLAY", value)
            trace, report = run(model, args, kwargs, None, flopmeter.Options(memory=memory), module_inputs=module_inputs)
        out.append((trace, report))
    return out


def assert_same(model, args, kwargs=None, **kw):
    """The replayed run equals the full run; returns the replayed run's replay counters."""
    (full, rfull), (fast, rfast) = both(model, args, kwargs, **kw)
    assert "replay" not in full.extra
    a, b = trace_form(full), trace_form(fast)
    for part in a:
        assert a[part] == b[part], part
    assert rfull.to_dict() == rfast.to_dict()
    assert rfull.memory.to_dict() == rfast.memory.to_dict()
    assert rfull.memory.timeline.peak == rfast.memory.timeline.peak
    return fast.extra["replay"]


def meta_ids(seq=16):
    return (torch.zeros(1, seq, dtype=torch.long, device="meta"),)


def on_meta(cls, config):
    with torch.device("meta"):
        return cls(config).eval()


# -- models where replay applies ----------------------------------------------------------

def test_llama_replays_all_layers_but_two():
    layers = 6
    cfg = transformers.LlamaConfig(hidden_size=64, num_hidden_layers=layers, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=128, vocab_size=100)
    model = on_meta(transformers.LlamaForCausalLM, cfg)
    stats = assert_same(model, meta_ids())
    # layer 0 recorded, layer 1 recorded in full to confirm that layer_idx only picks the cache slot
    assert stats["replayed_by_type"] == {"LlamaDecoderLayer": layers - 2}
    # the KV cache the replayed layers wrote is there: one layer of keys and values per decoder layer
    (_, full), (_, fast) = both(model, meta_ids())
    assert fast.memory.kv.layers and len(fast.memory.kv.layers) == layers
    # the user's model is as it was: no forward, no watched layer_idx
    for m in model.modules():
        assert "forward" not in vars(m)
        assert type(vars(m).get("layer_idx", 0)) is int


def test_gpt2_and_bert():
    gpt2 = on_meta(transformers.GPT2LMHeadModel, transformers.GPT2Config(n_layer=4, n_embd=64, n_head=4,
                                                                         vocab_size=100, n_positions=64))
    assert assert_same(gpt2, meta_ids())["replayed_by_type"] == {"GPT2Block": 2}
    bert = on_meta(transformers.BertModel, transformers.BertConfig(num_hidden_layers=4, hidden_size=64,
                                                                   num_attention_heads=4, intermediate_size=128,
                                                                   vocab_size=100))
    assert assert_same(bert, meta_ids())["replayed_by_type"] == {"BertLayer": 2}


def test_resnet_blocks():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet50().eval()
    stats = assert_same(model, (torch.randn(1, 3, 64, 64),))
    # per stage: block 0 (with a downsample) is unique, block 1 recorded, the rest replayed: 1 + 2 + 4 + 1
    assert stats["replayed_by_type"]["Bottleneck"] == 8
    # layers without submodules (the ReLUs, convolutions, norms) are not candidates: a few ops each
    assert set(stats["replayed_by_type"]) == {"Bottleneck"}


def test_outputs_that_are_inputs_or_views_of_them():
    class View(nn.Module):
        def __init__(self):
            super().__init__()
            self.same = nn.Identity()          # a submodule: layers without any are not candidates

        def forward(self, x):
            x = self.same(x)
            return x, x[:, 1:], x.t()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = View(), View(), View()

        def forward(self, x):
            outs = [m(x)[1] + 1 for m in (self.a, self.b, self.c)]
            return sum(outs)

    stats = assert_same(Net(), (torch.randn(4, 4),))
    assert stats["replayed_by_type"] == {"View": 2}

    # calls without a single op (dropout in eval returns its input): replayed, nothing to copy
    drop = lambda: nn.Sequential(nn.Dropout(0.1))        # noqa: E731 — a block (layers alone are not candidates)
    model = nn.Sequential(nn.Linear(4, 4), drop(), nn.Linear(4, 4), drop(), drop()).eval()
    stats = assert_same(model, (torch.randn(2, 4),))
    assert stats["replayed_by_type"] == {"Sequential": 2}


# -- models where replay must be refused --------------------------------------------------

class Block(nn.Module):
    def __init__(self, scale=1.0):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.scale = scale
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, x):
        x = self.fc(x)
        return x * x if self.scale > 1 else x


class Stack(nn.Module):
    def __init__(self, block, n=4, **kw):
        super().__init__()
        self.blocks = nn.ModuleList(block(**kw) for _ in range(n))

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


def test_plain_blocks_replay():
    assert assert_same(Stack(Block), (torch.randn(2, 8),))["replayed_by_type"] == {"Block": 3}


class Rotate(nn.Module):
    """A module without state, as ``kernels.use_kernelized_func`` keeps one per layer."""

    def forward(self, x):
        return x.flip(-1)


class HiddenHelper(Block):
    """A block holding a module outside the module tree, in a dict attribute."""

    def __init__(self, helper=Rotate):
        super().__init__()
        self.__dict__["_funcs"] = {"rotate": helper()}

    def forward(self, x):
        return self._funcs["rotate"](super().forward(x))


def test_a_stateless_module_kept_as_a_plain_attribute_replays():
    # each block has its own helper instance; being stateless, they are the same computation
    stats = assert_same(Stack(HiddenHelper), (torch.randn(2, 8),))
    assert stats["replayed_by_type"] == {"HiddenHelper": 3}


def test_a_module_with_state_kept_as_a_plain_attribute_is_not_replayed():
    stats = assert_same(Stack(HiddenHelper, helper=lambda: nn.Linear(8, 8)), (torch.randn(2, 8),))
    assert "HiddenHelper" not in stats["replayed_by_type"]
    assert stats["reasons"]["a module with state kept as a plain attribute"] == 4


def test_a_block_that_writes_a_buffer_is_not_replayed():
    class Counting(Block):
        def forward(self, x):
            self.seen.add_(1)
            return super().forward(x)

    model = Stack(Counting)
    stats = assert_same(model, (torch.randn(2, 8),))
    assert "Counting" not in stats["replayed_by_type"]
    assert stats["reasons"]["an in-place write to a tensor the call did not create"] == 4
    assert all(b.seen.item() == 0 for b in model.blocks)        # the user's buffers untouched


def test_a_block_that_writes_an_attribute_is_not_replayed():
    class Noting(Block):
        def forward(self, x):
            self.calls = getattr(self, "calls", 0) + 1
            return super().forward(x)

    stats = assert_same(Stack(Noting), (torch.randn(2, 8),))
    assert "Noting" not in stats["replayed_by_type"]


def test_blocks_with_a_forward_hook_are_not_replayed():
    model = Stack(Block)
    calls = []
    for b in model.blocks:
        b.register_forward_hook(lambda m, i, o: calls.append(1))
    stats = assert_same(model, (torch.randn(2, 8),))
    assert "Block" not in stats["replayed_by_type"] and stats["reasons"]["a hook on the module"] == 4
    assert len(calls) == 2 * 4          # the hooks ran on every call of both runs

    seen = []
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: seen.append(type(m).__name__))
    try:
        stats = assert_same(Stack(Block), (torch.randn(2, 8),))
    finally:
        handle.remove()
    assert stats["replayed"] == 0 and seen.count("Linear") == 2 * 4


def test_blocks_that_differ_in_an_attribute_replay_only_their_twins():
    model = Stack(Block)
    for b, scale in zip(model.blocks, (1.0, 2.0, 1.0, 2.0)):
        b.scale = scale
    stats = assert_same(model, (torch.randn(2, 8),))
    assert stats["replayed_by_type"] == {"Block": 2}       # blocks 2 and 3 replay blocks 0 and 1
    for b in model.blocks:
        vars(b).pop("scale")
        b.scale = 1.0


def test_a_block_whose_behaviour_depends_on_an_argument_value():
    class Repeat(Block):
        def forward(self, x, n):
            for _ in range(n):
                x = self.fc(x)
            return x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(Repeat() for _ in range(4))

        def forward(self, x):
            for b, n in zip(self.blocks, (1, 2, 1, 3)):
                x = b(x, n)
            return x

    stats = assert_same(Net(), (torch.randn(2, 8),))
    assert stats["replayed_by_type"].get("Repeat") == 1        # only the second n=1 call


def test_a_block_that_reads_an_input_value_is_not_replayed():
    class Reading(Block):
        def forward(self, x, k):
            return self.fc(x)[:, : int(k.item())]       # a value: a fake tensor carries it only as a constant

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(Reading() for _ in range(3))

        def forward(self, x):
            return [b(x, torch.tensor(k)) for b, k in zip(self.blocks, (4, 4, 6))]

    stats = assert_same(Net(), (torch.randn(2, 8),))
    assert "Reading" not in stats["replayed_by_type"]
    assert stats["reasons"]["an input that is a real tensor or carries values"] == 3


def test_random_ops_and_shared_submodules_are_not_replayed():
    class Noisy(Block):
        def forward(self, x):
            return self.fc(x) + torch.rand_like(x)

    stats = assert_same(Stack(Noisy), (torch.randn(2, 8),))
    assert "Noisy" not in stats["replayed_by_type"]

    model = Stack(Block)
    for b in model.blocks[1:]:
        b.fc = model.blocks[0].fc          # one Linear in every block
    stats = assert_same(model, (torch.randn(2, 8),))
    assert "Block" not in stats["replayed_by_type"]


class SpecialLayer(nn.Module):
    """A layer that uses its layer_idx for more than the cache slot."""

    def __init__(self, layer_idx):
        super().__init__()
        self.layer_idx = layer_idx
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        x = self.fc(x)
        return x * 2 if self.layer_idx == 3 else x


class LayerStack(nn.Module):
    """Five layers of one class, given their layer_idx, run in order."""

    def __init__(self, layer):
        super().__init__()
        self.layers = nn.ModuleList(layer(i) for i in range(5))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def test_layer_idx_used_outside_the_cache_is_not_relaxed():
    stats = assert_same(LayerStack(SpecialLayer), (torch.randn(2, 8),))
    assert "SpecialLayer" not in stats["replayed_by_type"]
    assert stats["reasons"]["layer_idx used outside the cache"] == 4      # layer 0 recorded, 1-4 refused


class WidthLayer(SpecialLayer):
    """A layer whose layer_idx reaches an op as a size (in C, no Python use of it to watch)."""

    def forward(self, x):
        return torch.cat([self.fc(x), x.new_zeros(2, self.layer_idx)], 1)[:, :8]


def test_layer_idx_reaching_an_op_is_caught_by_the_second_recording():
    stats = assert_same(LayerStack(WidthLayer), (torch.randn(2, 8),))
    assert "WidthLayer" not in stats["replayed_by_type"]


def test_replay_off_switch_and_real_mode(monkeypatch):
    monkeypatch.setenv("FLOPMETER_REPLAY", "0")
    assert "replay" not in record(Stack(Block), (torch.randn(2, 8),), None).extra
    monkeypatch.delenv("FLOPMETER_REPLAY")
    assert record(Stack(Block), (torch.randn(2, 8),), None).extra["replay"]["replayed"] == 3
    assert "replay" not in record(Stack(Block), (torch.randn(2, 8),), None, mode="real").extra
    # with autograd on (inference=False) nothing is replayed
    assert "replay" not in record(Stack(Block), (torch.randn(2, 8),), None, inference=False).extra


def test_a_saved_replayed_trace_gives_the_same_report(tmp_path):
    from flopmeter.trace.io import load_trace, save_trace
    cfg = transformers.LlamaConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=128, vocab_size=100)
    trace, report = run(on_meta(transformers.LlamaForCausalLM, cfg), meta_ids(), None, None, flopmeter.Options())
    assert trace.replayed                       # the report copied the replayed calls' costs
    save_trace(trace, tmp_path / "llama.fmtrace")
    loaded = load_trace(tmp_path / "llama.fmtrace")
    assert not loaded.replayed                  # not saved: a loaded trace is costed op by op
    assert flopmeter.report_from_trace(loaded).to_dict() == report.to_dict()
