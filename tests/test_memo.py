"""The fake mode's dispatch memo (trace/memo.py) changes nothing but speed: a trace recorded
with it equals, event by event and tensor by tensor, one recorded through FakeTensor alone, and
a memo hit makes the results FakeTensor itself makes."""

import json

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor

import flopmeter
from flopmeter import Options
from flopmeter.trace import memo, recorder
from flopmeter.trace.io import trace_to_dict


class Mixed(nn.Module):
    """Views, in-place ops, a Linear on a 3-d input (mm + _unsafe_view), a transposed matmul, an
    out= op, a resize of a storage a view shares, a factory call and a constant from a Python int."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        y = self.fc(x).relu_()                         # [2, 5, 8]
        z = y.transpose(1, 2) @ y                      # [2, 8, 8]
        buf = torch.empty(0, dtype=x.dtype, device=x.device)
        torch.add(z, 1, out=buf)                       # resizes buf's storage
        flat = buf.view(-1)
        buf.resize_(2, 8, 16)                          # the storage 'flat' shares grows
        mask = torch.zeros(4, 4, device=x.device)
        for k, (a, b) in enumerate(((0, 1), (1, 3), (3, 4), (1, 3))):
            mask[a:b, a:b] = k                         # constants (lift_fresh) filled in, one value twice
        scale = torch.tensor(2.5)                      # a lifted constant whose value is read
        return self.norm(y) * scale.item() + flat.sum() + mask.sum() + buf[..., :8].mean()


def _record(model, *args, memo_on: bool, options=None) -> dict:
    saved = recorder.RecordingFakeMode.tensor_key, recorder.RecordingFakeMode._lifted
    if not memo_on:
        recorder.RecordingFakeMode.tensor_key = lambda self, t, ref: None      # no key: FakeTensor alone
        recorder.RecordingFakeMode._lifted = lambda self, args, kwargs: None   # FakeTensor lifts constants too
    try:
        report = flopmeter.count(model, *args, options=options)
    finally:
        recorder.RecordingFakeMode.tensor_key, recorder.RecordingFakeMode._lifted = saved
    return json.loads(json.dumps(trace_to_dict(report.trace), default=str))


@pytest.mark.parametrize("options", [None, Options(memory=True), Options(training=True)], ids=["count", "memory",
                                                                                                 "training"])
def test_trace_with_memo_equals_fakes_alone(options):
    model, x = Mixed(), torch.randn(2, 5, 8)
    if options is not None and options.training:
        model, x = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 3)), torch.randn(2, 5, 8)
    without = _record(model, x, memo_on=False, options=options)
    first = _record(model, x, memo_on=True, options=options)      # fills the memo
    again = _record(model, x, memo_on=True, options=options)      # replays it
    assert first == without
    assert again == without
    ops = {ev[0] for ev in without["events"]}
    assert options is not None or {"aten._unsafe_view", "aten.resize_", "aten.lift_fresh"} <= ops


def test_memo_hit_makes_what_fakes_make():
    """A replayed result has FakeTensor's metadata and aliasing: a view shares its input's
    storage, an in-place op returns its input, an _unsafe_view shares its input's storage."""
    mode = recorder.RecordingFakeMode()
    with mode:
        x = torch.empty(2, 3, 4)
    results = []

    def run(fn):
        from flopmeter.trace.modules import ModuleStack
        from flopmeter.trace.refs import Refs
        rec = recorder.Recording(ModuleStack(list(nn.Identity().named_modules())), Refs())
        with mode.recording_to(rec), mode:
            out = fn(x)
        results.append(out)
        return out

    ops = [lambda t: t.transpose(0, 1), lambda t: t.relu(), lambda t: torch.ops.aten._unsafe_view(t, [6, 4]),
           lambda t: t.add_(1), lambda t: t.max(dim=1)]
    for fn in ops:
        first, second = run(fn), run(fn)           # the second comes from the memo
        for a, b in zip(first if isinstance(first, tuple) else (first,), second if isinstance(second, tuple)
                        else (second,)):
            assert type(b) is FakeTensor and b.fake_mode is mode
            assert (a.shape, a.stride(), a.storage_offset(), a.dtype, a.device, a.requires_grad) == \
                   (b.shape, b.stride(), b.storage_offset(), b.dtype, b.device, b.requires_grad)
            shares = a.untyped_storage()._cdata == x.untyped_storage()._cdata
            assert shares == (b.untyped_storage()._cdata == x.untyped_storage()._cdata)
    assert results[6] is x and results[7] is x                 # add_ returns its input, from the memo too
    assert results[5].untyped_storage()._cdata == x.untyped_storage()._cdata       # _unsafe_view aliases
    assert any(type(r) is memo.Replay for r in memo.MEMO.values())


@pytest.mark.filterwarnings("ignore:Accessing the data pointer of FakeTensor")
@pytest.mark.parametrize("requires_grad", [False, True])
def test_fake_shortcut_makes_what_the_constructor_makes(requires_grad):
    """RecordingFakeMode.fake copies a new fake's attributes in one step: the tensor it makes is
    FakeTensor's own, attribute for attribute, on the same device with the same dispatch keys."""
    from torch._subclasses.fake_tensor import FakeTensor
    mode = recorder.RecordingFakeMode(allow_non_fake_inputs=True)
    target = torch.device("cpu")

    def meta():
        return torch.empty_strided((2, 3), (1, 2), device="meta").requires_grad_(requires_grad)
    mode.fake(meta(), target)                                   # the first: through the constructor, checked
    fast, slow = mode.fake(meta(), target), FakeTensor(mode, meta(), target)
    assert type(fast) is FakeTensor and fast.fake_mode is mode
    assert fast.__dict__ == slow.__dict__
    assert (fast.device, fast.shape, fast.stride(), fast.requires_grad) == (slow.device, slow.shape, slow.stride(),
                                                                             slow.requires_grad)
    assert torch._C._dispatch_keys(fast) == torch._C._dispatch_keys(slow)

    def data_ptr(t):                 # what asking for the data pointer does (raise or answer; warnings: once per process)
        try:
            t.data_ptr()
            return None
        except Exception as exc:  # noqa: BLE001
            return type(exc)
    assert data_ptr(fast) == data_ptr(slow)
    with mode:
        assert (fast + 1).shape == (2, 3)


def test_lifted_constant_is_what_fake_tensor_makes():
    """torch.tensor(number) in the mode: the quick lift gives FakeTensor's own constant fake."""
    values = (3, 2.5, True, -7, float("nan"))
    made, modes = [], []
    for quick in (True, False):
        mode = recorder.RecordingFakeMode(allow_non_fake_inputs=True)
        modes.append(mode)
        if not quick:
            mode._lifted = lambda args, kwargs: None
        from flopmeter.trace.modules import ModuleStack
        from flopmeter.trace.refs import Refs
        rec = recorder.Recording(ModuleStack(list(nn.Identity().named_modules())), Refs())
        with mode.recording_to(rec), mode:
            made.append([torch.tensor(v) for v in values] + [torch.tensor(1.5, dtype=torch.float64),
                                                             torch.tensor([4], dtype=torch.int32)])
    for quick, slow in zip(*made):
        assert type(quick) is FakeTensor and quick.constant is not None
        assert (quick.shape, quick.stride(), quick.dtype, quick.device) == (slow.shape, slow.stride(), slow.dtype,
                                                                            slow.device)
        assert torch.equal(quick.constant, slow.constant) or quick.constant.isnan().all() and slow.constant.isnan().all()
        assert quick.constant.dtype == slow.constant.dtype
        assert quick.untyped_storage().nbytes() == slow.untyped_storage().nbytes()
        assert sorted(quick.__dict__) == sorted(slow.__dict__)
        for fake, mode in ((quick, modes[0]), (slow, modes[1])):        # an in-place write to an alias un-constants it
            assert any(ref() is fake for refs in mode.fake_tensor_converter.constant_storage_mapping.values()
                       for ref in refs)
        assert {k: v for k, v in quick.__dict__.items() if k not in ("constant", "fake_mode")} == \
            {k: v for k, v in slow.__dict__.items() if k not in ("constant", "fake_mode")}


class _AliasWrite(nn.Module):
    """A constant made plain by a write through an alias, then used: FakeTensor caches the op on
    the now-plain tensor; a later genuine constant of the same value must not get that entry."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 1)

    def forward(self, x):
        h = self.lin(x).sum()
        c = torch.tensor(2.0)
        _ = c + 0                      # c seen (and keyed, if constants had key parts) as a constant
        c.view(()).add_(h)             # an alias written: FakeTensor drops c's constant
        _ = c * 3                      # cached by FakeTensor for the plain c
        return x * (torch.tensor(2.0) * 3).item()      # a genuine constant: its value is still known


def test_a_constant_made_plain_through_an_alias_does_not_poison_the_memo():
    x = torch.randn(1, 1)
    expected = _AliasWrite()(x).shape                  # runs eagerly
    assert flopmeter.count(_AliasWrite(), x).trace.events[-1].out.shape == expected
    later = flopmeter.count(nn.Identity(), x)           # the process-wide memo left sound for other models
    assert later.macs == 0


def test_constants_add_nothing_to_the_process_wide_memo_per_count():
    class Nan(nn.Module):
        def forward(self, x):
            mask = torch.zeros(2, 2)
            mask[0, 0] = float("nan")                   # a lifted NaN filled in
            return x + mask.sum()
    x = torch.randn(2, 2)
    flopmeter.count(Nan(), x)
    sizes = len(memo.PARTS), len(memo.MEMO)
    for _ in range(3):
        flopmeter.count(Nan(), x)
    assert (len(memo.PARTS), len(memo.MEMO)) == sizes


def _rows(report) -> list[tuple]:
    return [(row.event.op, row.event.module, row.status, row.cost) for row in report.ops]


@pytest.mark.parametrize("causal", ["full", "exact"])
def test_costs_kept_on_memo_entries_equal_the_formulas(causal):
    """The report costs an op once per memo key and reads later events' costs from the entry
    (OpEvent.memo). Every row, in a first count and in a second one (all hits), equals the row a
    copy of the registry gives — a copy never uses the kept costs — and the kept costs are used."""
    from flopmeter.formulas import REGISTRY
    model, x = Mixed(), torch.randn(2, 5, 8)
    first = flopmeter.count(model, x, options=Options(causal=causal))
    again = flopmeter.count(model, x, options=Options(causal=causal))
    plain = flopmeter.count(model, x, options=Options(causal=causal, registry=REGISTRY.copy()))
    assert _rows(first) == _rows(plain) and _rows(again) == _rows(plain)
    assert again.total == plain.total
    kept = [row.event.memo for row in again.ops if row.event.memo is not None]
    assert len(kept) >= len(again.ops) // 2
    assert all(row.event.memo.costs[(REGISTRY.version, causal)] == (row.status, row.cost)
               for row in again.ops if row.event.memo is not None)


def test_a_formula_changed_after_a_count_is_used_by_the_next_count():
    """The kept costs belong to one version of the registry: a formula registered or replaced on
    the global registry after a count is what the next count uses, and putting it back restores
    the earlier costs."""
    from flopmeter.cost import Cost
    from flopmeter.formulas import REGISTRY
    model, x = nn.Sequential(nn.Linear(4, 4), nn.ReLU()), torch.randn(3, 4)
    before = flopmeter.count(model, x)
    relu_rows = [row for row in before.ops if row.event.op == "aten.relu"]
    assert relu_rows and relu_rows[0].event.memo is not None
    saved = REGISTRY._formulas["aten.relu"]
    REGISTRY.override("aten.relu", lambda ev: Cost(elementwise=1000 * ev.outputs[0].numel), own_bytes=True)
    try:
        changed = flopmeter.count(model, x)
    finally:
        REGISTRY.override("aten.relu", saved[0], own_bytes=saved[1])
    after = flopmeter.count(model, x)
    relu = [row.cost for row in changed.ops if row.event.op == "aten.relu"]
    assert relu == [Cost(elementwise=1000 * 3 * 4)]
    assert _rows(after) == _rows(before)


def test_costs_kept_on_a_pickled_trace_are_not_read_in_another_registry():
    """A trace its user pickles carries the memo entries' kept costs; their registry version is a
    token that never equals a live registry's (a counter would, by chance, in another process with
    other formulas), so the unpickled trace is costed afresh — and the same."""
    import pickle
    from flopmeter.formulas import REGISTRY
    from flopmeter.report.builder import build_report
    model, x = nn.Sequential(nn.Linear(4, 4), nn.ReLU()), torch.randn(2, 4)
    report = flopmeter.count(model, x)
    carried = pickle.loads(pickle.dumps(report.trace))
    entries = [ev.memo for ev in carried.events if ev.memo is not None]
    assert entries and all(entry.costs for entry in entries)
    assert not any((REGISTRY.version, "full") in entry.costs for entry in entries)
    assert _rows(build_report(carried)) == _rows(report)
