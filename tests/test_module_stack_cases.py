"""The module stack without global hooks: cases that global module hooks would attribute and
the instance-level forwards must attribute too."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter import Options

from guards import assert_unchanged, snapshot


class Layers(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 3), nn.ReLU()])     # scripted: no forward of its own

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class HasScriptedChild(nn.Module):
    """A plain model holding a TorchScript submodule (the old global hooks pushed it: its
    ``__call__`` is ``nn.Module``'s)."""

    def __init__(self):
        super().__init__()
        self.scripted = torch.jit.script(Layers())
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.scripted(x))


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_a_scripted_submodule_is_a_call_of_its_own(mode):
    model = HasScriptedChild()
    x = torch.randn(2, 4)
    scripted_forward = model.scripted.__dict__["forward"]
    before = snapshot(model)
    r = flopmeter.count(model, x, options=Options(mode=mode))
    assert {ev.module for ev in r.trace.events if ev.op == "aten.addmm"} == {"scripted", "head"}
    calls = {m.path: m.calls for m in r.trace.modules}
    assert calls["scripted"] == 1
    node = {n.path: n for n in r.root.walk()}["scripted"]
    assert node.total.macs == 2 * 4 * 3                       # N·in·out of its Linear
    assert_unchanged(model, before)
    assert "forward" not in model.__dict__ and "forward" not in model.head.__dict__
    assert model.scripted.__dict__["forward"] is scripted_forward      # TorchScript keeps its method there


class UsesItsBoundForward(nn.Module):
    """Reads ``self.forward.__func__`` / ``__self__`` (what a bound method has; code that checks
    whether a forward is overridden or compiles it reads them)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        assert self.forward.__func__ is type(self).forward
        assert self.forward.__self__ is self
        return self.lin(x)


def test_a_forward_reading_its_bound_method_attributes_still_runs():
    model = nn.Sequential(UsesItsBoundForward())
    r = flopmeter.count(model, torch.randn(2, 4))
    assert r.macs == 2 * 4 * 4
    assert {ev.module for ev in r.trace.events if ev.op == "aten.addmm"} == {"0.lin"}


class ForwardIsAProperty(nn.Module):
    """``forward`` a property (a data descriptor): an instance-level ``forward`` cannot shadow it."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    @property
    def forward(self):
        return lambda x: self.lin(x) * 2


@pytest.mark.xfail(strict=True, reason="known limitation: a class-level data descriptor forward ignores the instance "
                                       "__dict__ wrapper, so the module is never pushed")
def test_a_module_whose_forward_is_a_property_is_still_a_call():
    model = nn.Sequential(ForwardIsAProperty())
    r = flopmeter.count(model, torch.randn(2, 4))
    assert {m.path: m.calls for m in r.trace.modules}["0"] == 1
    assert {ev.module for ev in r.trace.events if ev.op == "aten.mul"} == {"0"}


class HooksItsChildOnFirstCall(nn.Module):
    """Registers a forward pre-hook on its child from inside its forward (after the stack was
    installed): the hook's op belongs to the child, as it did under the old global pre-hook."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        if not self.lin._forward_pre_hooks:
            self.lin.register_forward_pre_hook(lambda m, args: (args[0].exp(),))
        return self.lin(x)


@pytest.mark.xfail(strict=True, reason="known limitation: only pre-hooks present when the stack is installed are "
                                       "wrapped; one registered during the forward runs in the parent")
def test_a_pre_hook_registered_during_the_forward_runs_in_its_module():
    r = flopmeter.count(HooksItsChildOnFirstCall(), torch.randn(2, 4))
    assert {ev.module for ev in r.trace.events if ev.op == "aten.exp"} == {"lin"}


class RaisesCaughtThenFails(nn.Module):
    """A child's exception caught by the forward, then a later child's uncaught one."""

    def __init__(self):
        super().__init__()
        self.tried = Raises(ValueError("caught by the parent"))
        self.lin = nn.Linear(4, 4)
        self.fails = Raises(RuntimeError("the real failure"))

    def forward(self, x):
        try:
            self.tried(x)
        except ValueError:
            pass
        return self.fails(self.lin(x))


class Raises(nn.Module):
    def __init__(self, exc):
        super().__init__()
        self.exc = exc

    def forward(self, x):
        raise self.exc


class WrapsItsChildsError(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Raises(KeyError("inner"))

    def forward(self, x):
        try:
            return self.inner(x)
        except KeyError as exc:
            raise RuntimeError("wrapped") from exc


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_a_failure_after_a_caught_one_names_the_module_that_failed(mode):
    with pytest.raises(flopmeter.ModelForwardError) as info:
        flopmeter.count(RaisesCaughtThenFails(), torch.randn(2, 4), options=Options(mode=mode))
    assert info.value.module == "fails"
    assert "the real failure" in str(info.value)


def test_an_error_raised_while_handling_a_childs_names_the_child():
    with pytest.raises(flopmeter.ModelForwardError) as info:
        flopmeter.count(nn.Sequential(WrapsItsChildsError()), torch.randn(2, 4))
    assert info.value.module == "0.inner"


class MapsOverAList(nn.Module):
    """Calls ``self.forward`` on each item of a list input (a direct call of its own forward:
    part of the one call), or ``self(…)`` when ``through_call`` (a new call, as torch sees it)."""

    def __init__(self, through_call: bool = False):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.through_call = through_call

    def forward(self, x):
        if isinstance(x, list):
            return torch.stack([self(t) if self.through_call else self.forward(t) for t in x])
        return self.lin(x)


class CallsItTwice(nn.Module):
    def __init__(self, through_call: bool):
        super().__init__()
        self.block = MapsOverAList(through_call)

    def forward(self, x):
        return self.block([x, x]).sum(0)


def test_a_forward_calling_its_own_forward_is_one_call():
    r = flopmeter.count(CallsItTwice(through_call=False), torch.randn(2, 4))
    calls = {m.path: m.calls for m in r.trace.modules}
    assert calls["block"] == 1 and calls["block.lin"] == 2
    assert {ev.stack for ev in r.trace.events if ev.op == "aten.addmm"} == {
        (("", 0), ("block", 0), ("block.lin", i)) for i in range(2)}


@pytest.mark.parametrize("hooked", [False, True])      # with a hook, torch calls forward from a nested function
def test_a_forward_calling_itself_through_call_is_a_call_each_time(hooked):
    model = CallsItTwice(through_call=True)
    if hooked:
        model.block.register_forward_hook(lambda m, args, out: None)
    r = flopmeter.count(model, torch.randn(2, 4))
    calls = {m.path: m.calls for m in r.trace.modules}
    assert calls["block"] == 3 and calls["block.lin"] == 2


def test_a_root_with_hooks_is_pushed():
    model = nn.Sequential(nn.Linear(4, 4))
    model.register_forward_pre_hook(lambda m, args: (args[0] * 2,))
    model.register_forward_hook(lambda m, args, out: out * 3)
    r = flopmeter.count(model, torch.randn(2, 4))
    assert {m.path: m.calls for m in r.trace.modules}[""] == 1
    # the pre-hook's op in the root's call, the forward hook's after it (as under global hooks)
    assert [ev.stack for ev in r.trace.events if ev.op in ("aten.mul",)] == [(("", 0),), ()]
    assert {ev.stack for ev in r.trace.events if ev.op == "aten.addmm"} == {(("", 0), ("0", 0))}


class CopiesItsChild(nn.Module):
    """Deep-copies a child inside the forward and runs the copy (a module outside the counted
    model: its ops belong to the enclosing module, and it runs on its own weights)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        twin = copy.deepcopy(self.lin)
        return self.lin(x) + twin(x)


@pytest.mark.xfail(strict=True, reason="known limitation: the copy's __dict__ keeps the wrapper, a closure over the "
                                       "original's bound forward: the copy runs as a second call of 'lin', "
                                       "on the original's weights")
def test_a_deep_copy_made_in_the_forward_is_not_the_original():
    r = flopmeter.count(CopiesItsChild(), torch.randn(2, 4), options=Options(mode="real"))
    assert {m.path: m.calls for m in r.trace.modules}["lin"] == 1
