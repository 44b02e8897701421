"""The one walk of a model a count shares (trace/walk.py), and how example inputs become fakes."""

import gc

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter.trace.walk import ModelWalk


class Shared(nn.Module):
    """A module used at two places, a weight tied across two layers, a buffer, a None child."""

    def __init__(self):
        super().__init__()
        block = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        self.a, self.b = block, block
        self.head = nn.Linear(4, 4)
        self.tail = nn.Linear(4, 4)
        self.tail.weight = self.head.weight
        self.register_buffer("scale", torch.ones(4))
        self.nothing = None
        self.norm = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.norm(self.tail(self.head(self.b(self.a(x))))) * self.scale


class OwnListing(nn.Module):
    """A module that lists its submodules its own way: the walk must ask torch."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(2, 2)

    def named_modules(self, *args, **kwargs):
        yield from super().named_modules(*args, **kwargs)


@pytest.mark.parametrize("make", [Shared, OwnListing, lambda: nn.Sequential(OwnListing(), Shared())])
def test_walk_lists_what_torch_lists(make):
    model = make()
    walk = ModelWalk(model)
    assert [(p, id(m)) for p, m in walk.modules()] == [(p, id(m)) for p, m in model.named_modules()]
    expected = ([("param", n, id(t)) for n, t in model.named_parameters(remove_duplicate=False)]
                + [("buffer", n, id(t)) for n, t in model.named_buffers(remove_duplicate=False)])
    assert [(k, n, id(t)) for k, n, t in walk.tensors()] == expected


def test_mapped_walk_names_the_copies():
    model = Shared()
    walk = ModelWalk(model)
    originals = walk.modules()
    copies = {id(m): nn.Identity() for _, m in originals}
    mapped = walk.mapped(copies[id(model)], copies)
    assert [(p, id(m)) for p, m in mapped.modules()] == [(p, id(copies[id(m)])) for p, m in originals]


def test_count_leaves_the_collector_as_it_found_it():
    model = Shared().eval()
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            flopmeter.count(model, torch.randn(3, 4))
            assert gc.isenabled() is enabled
        finally:
            gc.enable()


class TwoInputs(nn.Module):
    def forward(self, x, y):
        y.add_(1)                   # writes y: when y is a view of x, x sees the write
        return x * 2 + y.sum()


def _storage_of_inputs(trace):
    return [r.storage for r in trace.inputs]


def test_an_input_that_views_another_keeps_sharing_its_storage():
    x = torch.randn(4, 4)
    trace, _ = flopmeter.api.run(TwoInputs(), (x, x[1:]), None, None, flopmeter.Options())
    first, second = _storage_of_inputs(trace)
    assert first == second                         # one storage, as in eager PyTorch


def test_an_input_given_twice_is_one_tensor():
    x = torch.randn(4, 4)
    trace, _ = flopmeter.api.run(TwoInputs(), (x, x), None, None, flopmeter.Options())
    assert trace.inputs[0].id == trace.inputs[1].id


def test_distinct_inputs_get_distinct_storages_and_their_metadata():
    x, y = torch.randn(4, 4), torch.randn(4, 4)
    trace, _ = flopmeter.api.run(TwoInputs(), (x, y), None, None, flopmeter.Options())
    a, b = trace.inputs
    assert a.storage != b.storage
    assert (a.shape, a.stride, a.dtype) == ((4, 4), (4, 1), torch.float32)


def test_quick_input_fakes_count_the_same_as_from_tensor():
    """The quick path (fakes made from metadata) against FakeTensor's from_tensor: same trace."""
    from flopmeter.trace import run as run_mod
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten())
    x = torch.randn(2, 3, 10, 10).to(memory_format=torch.channels_last)
    quick = flopmeter.api.run(model, (x,), None, None, flopmeter.Options())[0]
    original = run_mod._unaliased
    run_mod._unaliased = lambda tensors: False               # every input through from_tensor
    try:
        slow = flopmeter.api.run(model, (x,), None, None, flopmeter.Options())[0]
    finally:
        run_mod._unaliased = original
    assert quick.inputs == slow.inputs
    assert [(e.op, e.args, e.out) for e in quick.events] == [(e.op, e.args, e.out) for e in slow.events]


def test_an_inference_mode_input_fails_as_it_does_in_eager():
    """The quick input path keeps no inference flag: such inputs go through from_tensor."""
    class InPlace(nn.Module):
        def forward(self, x):
            return x.add_(1)
    with torch.inference_mode():
        x = torch.randn(2, 3)
    with pytest.raises(RuntimeError, match="[Ii]nference tensor"):
        InPlace()(x)
    with pytest.raises(flopmeter.ModelForwardError, match="[Ii]nference tensor"):
        flopmeter.count(InPlace(), x)
