"""Replay keys of objects many blocks share (trace/replay_key.py, ``_shared_object``): within one
count, the key of a plain object every block holds (a Hugging Face configuration) is kept, and
used again only while the object is unchanged — a change between two blocks, or between two
counts, gives the later calls a new key, so they are recorded, never replayed from a template
made before the change. And the shadow a count ran on is freed when the count returns."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter.trace.replay_key import _Ctx, subtree_key

from test_replay import assert_same, both


@pytest.fixture(autouse=True)
def _replay_small_models(monkeypatch):
    monkeypatch.setenv("FLOPMETER_REPLAY_MIN_TWINS", "2")


class Settings:
    """A plain object every block holds, as a Hugging Face model's layers hold its config."""

    def __init__(self):
        self.square = False
        self.opts = {"twice": False}
        self.helper = object()


class Block(nn.Module):
    def __init__(self, settings):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.settings = settings

    def forward(self, x):
        x = self.fc(x)
        if self.settings.square:
            x = x * x                          # one op more
        if self.settings.opts["twice"]:
            x = x + x                          # one op more
        return x


class Net(nn.Module):
    """Six blocks sharing one Settings; ``change(settings)`` runs before block 3."""

    def __init__(self, change=None):
        super().__init__()
        self.settings = Settings()
        self.blocks = nn.ModuleList(Block(self.settings) for _ in range(6))
        self.change = change

    def forward(self, x):
        s = self.settings
        s.__dict__.clear()
        s.__dict__.update(vars(Settings()))    # the same settings at the start of every run
        for i, b in enumerate(self.blocks):
            if i == 3 and self.change is not None:
                self.change(s)
            x = b(x)
        return x


def _ops_of(trace, path: str) -> int:
    """How many ops ran in the module at ``path`` and its submodules."""
    return sum(e.module == path or e.module.startswith(path + ".") for e in trace.events)


def test_blocks_sharing_an_unchanged_object_replay():
    stats = assert_same(Net(), (torch.randn(2, 8),))
    assert stats["replayed_by_type"] == {"Block": 5}        # block 0 recorded, 1-5 replayed


@pytest.mark.parametrize("change, extra_ops", [
    (lambda s: setattr(s, "square", True), 1),               # an attribute bound to another value
    (lambda s: s.opts.__setitem__("twice", True), 1),        # a dict attribute changed in place
    (lambda s: setattr(s, "helper", object()), 0),           # another object (keyed by identity)
    (lambda s: setattr(s, "added", 1), 0),                   # an attribute added
], ids=["rebound", "dict-changed-in-place", "other-object", "added"])
def test_a_shared_object_changed_between_blocks_is_keyed_anew(change, extra_ops):
    (full, _), (fast, _) = both(Net(change), (torch.randn(2, 8),), module_inputs=False, memory=False)
    assert_same(Net(change), (torch.randn(2, 8),))           # the replayed run equals the full one
    stats = fast.extra["replay"]
    # blocks 0 and 3 recorded (3 has a new key), 1-2 and 4-5 replayed from their own template
    assert (stats["recorded"], stats["replayed"]) == (2, 4)
    # the blocks after the change run ``extra_ops`` more ops each, in both runs
    for trace in (full, fast):
        before, after, last = (_ops_of(trace, f"blocks.{i}") for i in (0, 3, 5))
        assert after == before + extra_ops and last == after


def test_a_kept_key_is_not_used_after_the_object_changed():
    settings = Settings()
    block = Block(settings)
    shared: dict = {}
    first = subtree_key(block, _Ctx(shared))
    assert subtree_key(block, _Ctx(shared)) == first == subtree_key(block, _Ctx())
    for change in (lambda s: s.opts.__setitem__("twice", True), lambda s: setattr(s, "square", True),
                   lambda s: setattr(s, "helper", object()), lambda s: setattr(s, "added", [1])):
        before = subtree_key(block, _Ctx(shared))
        change(settings)
        after = subtree_key(block, _Ctx(shared))
        assert after != before
        assert after == subtree_key(block, _Ctx())            # what a fresh walk gives
    settings.added.append(2)                                  # a list attribute changed in place
    assert subtree_key(block, _Ctx(shared)) == subtree_key(block, _Ctx()) != before


def test_a_shared_object_changed_between_two_counts():
    net = Net()
    x = torch.randn(2, 8)
    first = flopmeter.count(net, x)
    net.change = lambda s: setattr(s, "square", True)
    (_, full), (_, fast) = both(net, (x,), module_inputs=False, memory=False)
    assert fast.to_dict() == full.to_dict()
    # blocks 3-5 square their output: three elementwise multiplications of 2 × 8 elements more
    assert fast.total.elementwise == first.total.elementwise + 3 * 2 * 8


def test_the_shadow_is_freed_when_the_count_returns():
    seen = []

    class Noted(Block):
        def forward(self, x):
            seen.append(weakref.ref(self))     # the shadow's copy runs the forward, not the user's module
            return super().forward(x)

    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(Noted(Settings()) for _ in range(4))

        def forward(self, x):
            seen.append(weakref.ref(self))
            for b in self.blocks:
                x = b(x)
            return x

    flopmeter.count(Stack(), torch.randn(2, 8))       # a first count imports what fake mode loads lazily
    seen.clear()
    collecting = gc.isenabled()
    gc.disable()
    try:
        flopmeter.count(Stack(), torch.randn(2, 8))
        # the shadow's root and the blocks that ran (recorded; the rest were replayed): no
        # reference cycle keeps them for the cyclic collector
        assert len(seen) >= 2 and all(ref() is None for ref in seen)
    finally:
        if collecting:
            gc.enable()
