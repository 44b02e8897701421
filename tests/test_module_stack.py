"""The module stack: ops attributed to modules through the shadow's own forwards, no global hooks."""

from __future__ import annotations

import inspect
import threading

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_mod

import flopmeter
from flopmeter import ModelForwardError, Options

from guards import assert_unchanged, snapshot

_GLOBAL_HOOK_DICTS = ("_global_forward_pre_hooks", "_global_forward_hooks", "_global_forward_hooks_always_called",
                      "_global_forward_hooks_with_kwargs")


def _global_hooks() -> int:
    return sum(len(getattr(module_mod, name)) for name in _GLOBAL_HOOK_DICTS)


class SeesGlobalHooks(nn.Module):
    """Writes down in ``seen`` (not the module's own: the shadow copies lists), from inside its
    forward, how many global module hooks are registered."""

    def __init__(self, seen: "Seen"):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.seen = seen

    def forward(self, x):
        self.seen.values.append(_global_hooks())
        return self.lin(x)


class Seen:
    def __init__(self):
        self.values: list[int] = []


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_a_count_registers_no_global_module_hook(mode):
    seen = Seen()
    outside = _global_hooks()
    r = flopmeter.count(SeesGlobalHooks(seen), torch.randn(2, 4), options=Options(mode=mode))
    assert seen.values == [outside]
    assert {ev.module for ev in r.trace.events if ev.op == "aten.addmm"} == {"lin"}
    assert r.root.children[0].total.macs == 2 * 4 * 4


def test_another_threads_forward_runs_outside_the_count():
    """A forward of a separate model in another thread, during a count, is neither recorded
    nor sent through a hook (its module calls see no global hook)."""
    seen = Seen()
    other = SeesGlobalHooks(seen)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            with torch.no_grad():
                other(torch.randn(1, 4))

    worker = threading.Thread(target=loop)
    worker.start()
    try:
        model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(50)])
        for _ in range(5):
            r = flopmeter.count(model, torch.randn(1, 8))
            assert r.macs == 50 * 8 * 8
    finally:
        stop.set()
        worker.join()
    assert seen.values and set(seen.values) == {_global_hooks()}


class CallsForwardDirectly(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(3, 5)

    def forward(self, x):
        return self.inner.forward(x).relu()


def test_a_forward_called_directly_is_the_modules_call():
    r = flopmeter.count(CallsForwardDirectly(), torch.randn(2, 3))
    where = {ev.op: ev.module for ev in r.trace.events}
    assert where["aten.addmm"] == "inner" and where["aten.relu"] == ""
    calls = {m.path: m.calls for m in r.trace.modules}
    assert calls == {"": 1, "inner": 1}
    assert r.root.children[0].total.macs == 2 * 3 * 5


def test_a_modules_own_pre_hook_runs_in_its_call_and_its_forward_hook_in_its_parents():
    model = nn.Sequential(nn.Linear(4, 4))
    model[0].register_forward_pre_hook(lambda m, args: (args[0] * 2,))
    model[0].register_forward_hook(lambda m, args, out: out + 1)
    x = torch.randn(3, 4)
    before = snapshot(model)
    r = flopmeter.count(model, x)
    where = {ev.op: (ev.module, ev.stack) for ev in r.trace.events}
    assert where["aten.mul"] == ("0", (("", 0), ("0", 0)))      # the pre-hook: inside the call of 0
    assert where["aten.addmm"] == ("0", (("", 0), ("0", 0)))
    assert where["aten.add"] == ("", (("", 0),))                  # the forward hook: after it returned
    assert_unchanged(model, before)


def test_weight_norm_is_counted_in_its_layer():
    """``weight_norm`` (the old API) recomputes the weight in a forward pre-hook."""
    with pytest.warns(FutureWarning):
        layer = nn.utils.weight_norm(nn.Linear(6, 5))
    model = nn.Sequential(layer, nn.ReLU())
    x = torch.randn(2, 6)
    before = snapshot(model)
    r = flopmeter.count(model, x)
    hooked = [ev for ev in r.trace.events if ev.op not in ("aten.addmm", "aten.relu", "aten.t")]
    assert hooked, "weight_norm's ops are recorded"
    assert {ev.module for ev in hooked} == {"0"}
    assert not [ev for ev in r.trace.events if ev.module == ""]
    assert_unchanged(model, before)


class ReadsItsSignature(nn.Module):
    """Reads its own forward's signature (as Hugging Face models do to route keyword arguments)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.names = Seen()

    def forward(self, x, mask=None, *, scale: float = 1.0):
        self.names.values.append(tuple(inspect.signature(self.forward).parameters))
        return self.lin(x) * scale


def test_a_forward_reading_its_own_signature_sees_the_models():
    model = ReadsItsSignature()
    expected = tuple(inspect.signature(model.forward).parameters)
    assert expected == ("x", "mask", "scale")
    flopmeter.count(model, torch.randn(1, 4))
    assert model.names.values == [expected]


class FailsInside(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4), Boom())

    def forward(self, x):
        return self.block(x)


class Boom(nn.Module):
    def forward(self, x):
        raise ValueError("deliberate")


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_a_failure_names_the_innermost_module_and_leaves_no_forward_behind(mode):
    model = FailsInside()
    model.block[0].register_forward_pre_hook(lambda m, args: None)
    x = torch.randn(1, 4)
    before = snapshot(model)
    with pytest.raises(ModelForwardError) as info:
        flopmeter.count(model, x, options=Options(mode=mode))
    assert info.value.module == "block.1"
    assert_unchanged(model, before)
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert _global_hooks() == 0


def test_a_scripted_model_is_one_call_of_its_root():
    model = torch.jit.script(nn.Sequential(nn.Linear(4, 3), nn.ReLU()))
    r = flopmeter.count(model, torch.randn(2, 4), options=Options(mode="real"))
    assert {m.path: m.calls for m in r.trace.modules}[""] == 1
    assert {ev.module for ev in r.trace.events} == {""}
    assert r.macs == 2 * 4 * 3


@pytest.mark.parametrize("mode", ["fake", "real"])
@pytest.mark.parametrize("kind", ["pre", "forward"])
def test_a_hook_that_removes_itself_stays_on_the_users_model(mode, kind):
    """The shadow's hook dicts are copies, but a hook's handle points at the user's dict."""
    model = nn.Sequential(nn.Linear(4, 4))
    handles = {}
    if kind == "pre":
        handles["h"] = model[0].register_forward_pre_hook(lambda m, args: handles["h"].remove(), with_kwargs=False)
    else:
        handles["h"] = model[0].register_forward_hook(lambda m, args, out: handles["h"].remove(), always_call=True)
    x = torch.randn(2, 4)
    before = snapshot(model)
    r = flopmeter.count(model, x, options=Options(mode=mode))
    assert r.macs == 2 * 4 * 4
    assert_unchanged(model, before)
    hooks = model[0]._forward_pre_hooks if kind == "pre" else model[0]._forward_hooks
    assert list(hooks) == [handles["h"].id]
    if kind == "forward":
        assert list(model[0]._forward_hooks_always_called) == [handles["h"].id]
    model(x)                                   # the user's own call still runs it once, and it goes
    assert not hooks


class ScriptedChild(nn.Module):
    def __init__(self):
        super().__init__()
        self.s = torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.s(x))


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_a_scripted_childs_buffers_are_put_back(mode):
    """The shadow's copy of a TorchScript submodule shares its C++ module (tensors and flags)
    with the user's: a train-mode BatchNorm inside it would update the user's statistics."""
    model = ScriptedChild().train()
    x = torch.randn(3, 4)
    before = snapshot(model)
    r = flopmeter.count(model, x, options=Options(mode=mode))
    assert r.macs == 3 * 4 * 4 + 3 * 4 * 2
    assert {m.path: m.calls for m in r.trace.modules}["s"] == 1
    assert_unchanged(model, before)
    assert int(model.s[1].num_batches_tracked) == 0


def test_a_training_count_through_a_scripted_child_is_refused():
    model = ScriptedChild().eval()
    x = torch.randn(3, 4)
    before = snapshot(model)
    with pytest.raises(flopmeter.InputError, match="TorchScript submodule 's'"):
        flopmeter.count(model, x, options=Options(training=True))
    assert_unchanged(model, before)


class ForwardChosenInInit(nn.Module):
    """Picks its forward in ``__init__`` as timm's fasternet does: ``self.forward`` is a method
    bound to the module itself, kept in its ``__dict__``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)
        self.forward = self.forward_slicing

    def forward_slicing(self, x):
        self.last_shape = tuple(x.shape)                 # written on the module that runs
        return self.conv(x)


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_a_forward_bound_in_init_runs_on_the_shadow(mode):
    model = nn.Sequential(ForwardChosenInInit())
    x = torch.randn(1, 2, 3, 3)
    before = snapshot(model)
    r = flopmeter.count(model, x, options=Options(mode=mode))
    assert "last_shape" not in model[0].__dict__          # the user's module did not run
    assert_unchanged(model, before)
    calls = {m.path: m.calls for m in r.trace.modules}
    assert calls["0"] == 1 and calls["0.conv"] == 1
    assert r.root.children[0].children[0].total.macs == 1 * 2 * 3 * 3 * 2      # N·C_out·H·W·C_in


def test_a_scripted_models_buffers_are_put_back():
    model = torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))).train()
    x = torch.randn(3, 4)
    before = snapshot(model)
    r = flopmeter.count(model, x, options=Options(mode="real"))
    assert r.macs == 3 * 4 * 4
    assert_unchanged(model, before)
    assert int(model[1].num_batches_tracked) == 0
