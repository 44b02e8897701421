"""State a model holds outside its registered parameters and buffers — plain tensor attributes,
tensors in dicts, nested containers, helper objects, closures, module-level globals, views of
them, a module kept through ``object.__setattr__``, a parameter of a helper object — comes back
unchanged after a count that writes it (fake mode, real mode, a training step with Adam; also
when the forward raises after the write), and the count still sees the write's cost. Backend
flags a forward flips (cudnn, matmul TF32, mkldnn, flush-denormal, …) are put back too."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn
from torch.utils._mode_utils import no_dispatch

import flopmeter
from flopmeter import ModelForwardError, Options

from guards import assert_unchanged, snapshot

GLOBAL_TABLE = torch.arange(3.0)          # a module-level tensor a forward writes


class Holder:
    """A plain Python object holding a tensor (not a module)."""

    def __init__(self, t):
        self.t = t


def _closure_over(t):
    def bump():
        return t
    return bump


# where the written tensor lives: (attach it to the model, reach it from the forward)
ROUTES = {
    "attribute": (lambda m, t: setattr(m, "table", t), lambda m: m.table),
    "dict": (lambda m, t: setattr(m, "tables", {"a": t}), lambda m: m.tables["a"]),
    "nested": (lambda m, t: setattr(m, "nested", [{"x": [torch.ones(1), t]}]), lambda m: m.nested[0]["x"][1]),
    "helper": (lambda m, t: setattr(m, "helper", Holder(t)), lambda m: m.helper.t),
    "closure": (lambda m, t: setattr(m, "bump", _closure_over(t)), lambda m: m.bump()),
    "global": (lambda m, t: None, lambda m: GLOBAL_TABLE),
    "slice": (lambda m, t: setattr(m, "table", t), lambda m: m.table[1:]),
}
TWIN_REACH = {"slice": lambda m: m.table[1:]}        # the twin holds the tensor as a registered buffer

# how it is written
WRITES = {
    "add_": lambda t, x: t.add_(1),
    "setitem": lambda t, x: t.__setitem__(0, 5.0),
    "out=": lambda t, x: torch.mul(t, 2, out=t),
    "copy_": lambda t, x: t.copy_(x[0]),
    "unsqueeze_": lambda t, x: t.unsqueeze_(0),
    "foreach": lambda t, x: torch._foreach_add_([t], 1),
}

COUNTS = {
    "fake": Options(),
    "real": Options(mode="real"),
    "train-adam": Options(training=True, optimizer="adam"),
    "train-adam-real": Options(mode="real", training=True, optimizer="adam"),
}


class Writes(nn.Module):
    """Writes one tensor it holds outside its parameters and buffers, then raises when asked."""

    def __init__(self, route: str, write: str, fail: bool = False, registered: bool = False):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.fail = fail
        self.write = WRITES[write]
        if registered:
            self.register_buffer("table", torch.arange(3.0))
            self.reach = TWIN_REACH.get(route, lambda m: m.table)
        else:
            ROUTES[route][0](self, GLOBAL_TABLE if route == "global" else torch.arange(3.0))
            self.reach = ROUTES[route][1]

    def forward(self, x):
        self.write(self.reach(self), x)
        y = self.lin(x)
        if self.fail:
            raise RuntimeError("deliberate failure after the write")
        return y


def _tensors(root, found=None, seen=None) -> dict[int, torch.Tensor]:
    """Every tensor reachable from ``root`` through module and object attributes, dicts, lists,
    tuples and closure cells (gradients included)."""
    found = {} if found is None else found
    seen = set() if seen is None else seen
    if id(root) in seen:
        return found
    seen.add(id(root))
    if isinstance(root, torch.Tensor):
        found[id(root)] = root
        if root.grad is not None:
            found[id(root.grad)] = root.grad
        return found
    if isinstance(root, dict):
        children = list(root.values())
    elif isinstance(root, (list, tuple, set)):
        children = list(root)
    elif isinstance(root, types.FunctionType):
        children = [c.cell_contents for c in root.__closure__ or ()]
    elif isinstance(root, (type, types.ModuleType, types.BuiltinFunctionType, types.MethodType)):
        children = []
    elif hasattr(root, "__dict__"):
        children = list(vars(root).values())
    else:
        children = []
    for child in children:
        _tensors(child, found, seen)
    return found


def _state(model) -> dict:
    """Values, metadata, version counters and gradients of every reachable tensor, and the
    module-level tensor."""
    tensors = _tensors(model)
    tensors[id(GLOBAL_TABLE)] = GLOBAL_TABLE
    return {key: (t, t.detach().clone(), t.shape, t.stride(), t.storage_offset(), t._version, t.requires_grad,
                  t.grad is None) for key, t in tensors.items()}


def _assert_same(before: dict, model) -> None:
    after = _state(model)
    assert after.keys() == before.keys(), "the tensors reachable from the model changed"
    for key, (t, value, shape, stride, offset, version, requires_grad, no_grad) in before.items():
        assert t.shape == shape and t.stride() == stride and t.storage_offset() == offset, f"{t}: metadata changed"
        assert torch.equal(t.detach(), value), f"values changed: {value} → {t}"
        assert t._version == version, "version counter changed"
        assert t.requires_grad == requires_grad and (t.grad is None) == no_grad


def _count(model, options, x):
    return flopmeter.count(model, x, options=options)


def _forward_cost(report):
    return report.by_phase.get("forward", report.total) if report.by_phase else report.total


CASES = [(route, "add_") for route in ROUTES] + \
        [("attribute", write) for write in WRITES if write != "add_"]


@pytest.mark.parametrize("count", list(COUNTS))
@pytest.mark.parametrize("route,write", CASES)
def test_written_unregistered_tensor_comes_back_and_is_counted(route, write, count):
    x = torch.randn(2, 3)
    model = Writes(route, write)
    before, guarded = _state(model), snapshot(model)
    report = _count(model, COUNTS[count], x)
    _assert_same(before, model)
    assert_unchanged(model, guarded)
    twin = Writes(route, write, registered=True)          # the same ops on a registered buffer
    assert _forward_cost(report) == _forward_cost(_count(twin, COUNTS[count], x))
    again = _count(model, COUNTS[count], x)         # the state as found, so the same count
    assert again.total == report.total
    _assert_same(before, model)


@pytest.mark.parametrize("count", list(COUNTS))
@pytest.mark.parametrize("route,write", CASES)
def test_written_unregistered_tensor_comes_back_when_the_forward_raises(route, write, count):
    model = Writes(route, write, fail=True)
    x = torch.randn(2, 3)
    before, guarded = _state(model), snapshot(model)
    with pytest.raises(ModelForwardError, match="deliberate failure"):
        _count(model, COUNTS[count], x)
    _assert_same(before, model)
    assert_unchanged(model, guarded)


class HiddenNorm(nn.Module):
    """A BatchNorm kept out of the module tree (``object.__setattr__``), in train mode."""

    def __init__(self, registered: bool = False, fail: bool = False):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.fail = fail
        if registered:
            self.bn = nn.BatchNorm1d(3)
        else:
            object.__setattr__(self, "bn", nn.BatchNorm1d(3))

    def forward(self, x):
        y = self.bn(self.lin(x))
        if self.fail:
            raise RuntimeError("deliberate failure after the write")
        return y


@pytest.mark.parametrize("fail", [False, True], ids=["returns", "raises"])
@pytest.mark.parametrize("count", list(COUNTS))
def test_batchnorm_held_outside_the_module_tree_keeps_its_statistics(count, fail):
    model = HiddenNorm(fail=fail)
    assert "bn" not in model._modules
    before = _state(model)
    x = torch.randn(4, 3)
    if fail:
        with pytest.raises(ModelForwardError):
            _count(model, COUNTS[count], x)
    else:
        report = _count(model, COUNTS[count], x)
        assert _forward_cost(report) == _forward_cost(_count(HiddenNorm(registered=True), COUNTS[count], x))
    _assert_same(before, model)
    assert model.bn.num_batches_tracked.item() == 0
    assert all(p.grad is None for p in model.bn.parameters())


class HelperParameter(nn.Module):
    """A parameter held by a helper object: the backward of a training step reaches it."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.helper = Holder(nn.Parameter(torch.ones(3)))

    def forward(self, x):
        return self.lin(x) * self.helper.t


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_training_step_leaves_no_gradient_on_a_parameter_outside_the_tree(mode):
    model = HelperParameter()
    model.helper.t.grad = None
    before = _state(model)
    report = flopmeter.count(model, torch.randn(2, 3), options=Options(mode=mode, training=True, optimizer="adam"))
    assert report.by_phase["backward"].elementwise > 0
    _assert_same(before, model)
    assert model.helper.t.grad is None


def test_training_step_leaves_an_existing_gradient_as_it_was():
    model = HelperParameter()
    model.helper.t.grad = torch.full((3,), 7.0)
    before = _state(model)
    for mode in ("fake", "real"):
        flopmeter.count(model, torch.randn(2, 3), options=Options(mode=mode, training=True, optimizer="adam"))
        _assert_same(before, model)


def test_fake_mode_never_writes_the_tensor_even_during_the_run():
    seen = []

    class Peeks(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.table = torch.zeros(3)

        def forward(self, x):
            self.table.add_(1)
            with no_dispatch():                       # the real memory, read past the fake mode
                seen.append(self.table.tolist())
            return self.lin(x)

    model = Peeks()
    flopmeter.count(model, torch.randn(2, 3))
    assert seen == [[0.0, 0.0, 0.0]]
    assert torch.equal(model.table, torch.zeros(3))


def test_a_write_then_a_read_of_the_same_tensor_sees_the_write_in_real_mode():
    class Counts(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.steps = torch.zeros((), dtype=torch.long)

        def forward(self, x):
            self.steps.add_(1)
            return self.lin(x) * self.steps.item()       # data-dependent: reads the written value

    model = Counts()
    report = flopmeter.count(model, torch.randn(2, 3), options=Options(mode="real"))
    assert model.steps.item() == 0 and model.steps._version == 0
    assert report.macs == 2 * 3 * 3


FLAGS = [
    ("cudnn.benchmark", lambda: torch.backends.cudnn.benchmark,
     lambda v: setattr(torch.backends.cudnn, "benchmark", v), lambda v: not v),
    ("cudnn.deterministic", lambda: torch.backends.cudnn.deterministic,
     lambda v: setattr(torch.backends.cudnn, "deterministic", v), lambda v: not v),
    ("cudnn.enabled", lambda: torch.backends.cudnn.enabled,
     lambda v: setattr(torch.backends.cudnn, "enabled", v), lambda v: not v),
    ("cudnn.allow_tf32", lambda: torch.backends.cudnn.allow_tf32,
     lambda v: setattr(torch.backends.cudnn, "allow_tf32", v), lambda v: not v),
    ("cuda.matmul.allow_tf32", lambda: torch.backends.cuda.matmul.allow_tf32,
     lambda v: setattr(torch.backends.cuda.matmul, "allow_tf32", v), lambda v: not v),
    ("cuda.matmul.allow_fp16_reduced_precision_reduction",
     lambda: torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
     lambda v: setattr(torch.backends.cuda.matmul, "allow_fp16_reduced_precision_reduction", v), lambda v: not v),
    ("mkldnn.enabled", lambda: torch.backends.mkldnn.enabled,
     lambda v: setattr(torch.backends.mkldnn, "enabled", v), lambda v: not v),
    ("mkldnn.deterministic", lambda: torch.backends.mkldnn.deterministic,
     lambda v: setattr(torch.backends.mkldnn, "deterministic", v), lambda v: not v),
    ("cudnn.conv.fp32_precision", lambda: torch.backends.cudnn.conv.fp32_precision,
     lambda v: setattr(torch.backends.cudnn.conv, "fp32_precision", v), lambda v: "ieee" if v == "tf32" else "tf32"),
    ("mha fast path", torch.backends.mha.get_fastpath_enabled, torch.backends.mha.set_fastpath_enabled,
     lambda v: not v),
    ("flash_sdp", torch.backends.cuda.flash_sdp_enabled, torch.backends.cuda.enable_flash_sdp, lambda v: not v),
    ("math_sdp", torch.backends.cuda.math_sdp_enabled, torch.backends.cuda.enable_math_sdp, lambda v: not v),
    ("opt_einsum.enabled", lambda: torch.backends.opt_einsum.enabled,
     lambda v: setattr(torch.backends.opt_einsum, "enabled", v), lambda v: not v),
    ("autocast cpu", lambda: torch.is_autocast_enabled("cpu"),
     lambda v: torch.set_autocast_enabled("cpu", v), lambda v: not v),
    ("warn_always", torch.is_warn_always_enabled, torch.set_warn_always, lambda v: not v),
    ("flush_denormal", lambda: (torch.full((1,), 1e-40) * 1.0).item() == 0.0, torch.set_flush_denormal,
     lambda v: not v),
]


@pytest.mark.parametrize("fail", [False, True], ids=["returns", "raises"])
@pytest.mark.parametrize("mode", ["fake", "real"])
@pytest.mark.parametrize("name,get,put,flip", FLAGS, ids=[f[0] for f in FLAGS])
def test_backend_flag_a_forward_flips_is_put_back(name, get, put, flip, mode, fail):
    before = get()
    target = flip(before)

    class Flips(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            put(target)
            if fail:
                raise RuntimeError("deliberate failure after the flip")
            return self.lin(x)

    try:
        if fail:
            with pytest.raises(ModelForwardError):
                flopmeter.count(Flips(), torch.randn(2, 3), options=Options(mode=mode))
        else:
            flopmeter.count(Flips(), torch.randn(2, 3), options=Options(mode=mode))
        assert get() == before, f"{name} stayed flipped"
    finally:
        if get() != before:
            put(before)


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_an_input_the_forward_writes_in_place_comes_back(mode):
    model = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(3, 3))
    x = torch.randn(2, 3)
    value = x.clone()
    report = flopmeter.count(model, x, options=Options(mode=mode))
    assert torch.equal(x, value) and x._version == 0
    assert report.macs == 2 * 3 * 3
