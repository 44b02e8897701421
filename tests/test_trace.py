"""The trace holds everything: tensor identity, storages and their lifetimes, the module and
parameter tables, phases — and a report built from a saved trace alone equals the live one."""

import ast
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter import Options
from flopmeter.api import report_from_trace
from flopmeter.cli import main
from flopmeter.trace.io import load_trace, save_trace

import models
from guards import assert_unchanged, snapshot

CONVENTIONS = ("dot", "all", "exact", "mac")
SRC = Path(flopmeter.__file__).parent


def _all_conventions(report) -> dict:
    return {c: report.with_convention(c).to_dict() for c in CONVENTIONS}


# -- a report from a saved trace, with the model zoos unimportable --------------------------

_BLOCKER = """
import sys, json
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torchvision', 'timm', 'transformers'):
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
from flopmeter.api import report_from_trace
from flopmeter.trace.io import load_trace
trace = load_trace(sys.argv[1])
r = report_from_trace(trace)
r.model = trace.model
out = {c: r.with_convention(c).to_dict() for c in ('dot', 'all', 'exact', 'mac')}
assert not any(m.split('.')[0] in ('torchvision', 'timm', 'transformers') for m in sys.modules)
print(json.dumps(out))
"""


def _spec_models():
    import torchvision

    from flopmeter.frontends import resolve

    gpt2 = resolve("hf:gpt2")
    args, kwargs = gpt2.make_inputs(torch.device("meta"))
    return [
        ("resnet50", torchvision.models.resnet50(), (torch.randn(1, 3, 224, 224),), {}),
        ("gpt2", gpt2.model, args, kwargs),
        ("mlp", models.mlp(), (torch.randn(1, 10),), {}),
        ("small_cnn", models.small_cnn(), (torch.randn(1, 1, 28, 28),), {}),
        ("self_attention", models.SelfAttention(256, 8), (torch.randn(1, 10, 256),) * 3, {}),
        ("keras_cnn", models.KerasCNN(), (torch.randn(1, 3, 224, 224),), {}),
        ("unet_bn", models.UNet(bn=True), (torch.randn(1, 1, 256, 256),), {}),
    ]


def test_saved_trace_builds_the_identical_report_without_model_zoo_packages(tmp_path):
    for name, model, args, kwargs in _spec_models():
        live = flopmeter.count(model, *args, kwargs=kwargs)
        path = save_trace(live.trace, tmp_path / f"{name}.fmtrace")
        proc = subprocess.run([sys.executable, "-c", _BLOCKER, str(path)], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == json.loads(json.dumps(_all_conventions(live))), name


def test_loaded_trace_recosts_like_a_new_run(tmp_path):
    model = models.TinyDecoder(vocab=50, d=32, layers=2, heads=4)
    x = torch.randint(0, 50, (2, 12))
    live = flopmeter.count(model, x)
    loaded = report_from_trace(load_trace(save_trace(live.trace, tmp_path / "d.fmtrace")))
    exact = flopmeter.count(model, x, options=Options(causal="exact"))
    assert loaded.recost(causal="exact").total == exact.total == live.recost(causal="exact").total
    assert exact.macs < live.macs                     # the causal mask halves the score matrix
    registry = flopmeter.REGISTRY.copy()
    registry.override("aten.mm", None)                # a user override: matmuls free
    assert live.recost(registry=registry).macs < live.macs


# -- tensor identity and storages ------------------------------------------------------------

class ViewsAndInPlace(nn.Module):
    def forward(self, x):
        y = x * 2
        v = y.view(-1)              # a view: same storage as y
        y.add_(1)                   # in place: no new storage
        return v.sum()


def _events(trace, op):
    return [e for e in trace.events if e.op == op]


def test_view_shares_storage_and_in_place_creates_none():
    trace = flopmeter.count(ViewsAndInPlace(), torch.randn(3, 4)).trace
    (mul,), (view,), (add_,) = _events(trace, "aten.mul"), _events(trace, "aten.view"), _events(trace, "aten.add_")
    y = mul.outputs[0]
    assert view.inputs[0].id == y.id and view.outputs[0].id != y.id
    assert view.outputs[0].storage == y.storage
    assert add_.outputs[0].id == y.id and add_.outputs[0].storage == y.storage
    created = [s for s in trace.storages.values() if s.created >= 0]
    assert len(created) == 2                           # y and the sum: nothing for the view or add_
    assert trace.storages[y.storage].nbytes == 3 * 4 * 4     # float32 elements × 4 bytes
    assert trace.inputs[0].role == "input" and y.role == "act"


def test_tied_parameters_are_one_tensor_and_one_storage():
    model = models.TiedWeights()
    report = flopmeter.count(model, torch.randint(0, 50, (1, 5)))
    trace = report.trace
    tied = [p for p in trace.params if p.aliases]
    assert len(tied) == 1
    (p,) = tied
    names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    assert {p.name, *p.aliases} <= names
    # every event that reads the tied weight sees one storage
    storages = {t.storage for e in trace.events for t in e.inputs if t.role == "param" and t.id == p.tensor}
    assert storages == {p.storage}
    assert report.params.count == sum(q.numel() for q in model.parameters())     # unique tensors once


class SkipConnection(nn.Module):
    """Keeps its input alive in a local variable across two layers, like a ResNet block."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 16)

    def forward(self, x):
        h = self.a(x)               # h: alive until the add below reads it
        t = torch.relu(self.b(h))   # b's output dies when relu has read it
        return t + h


def test_storage_freed_after_its_last_python_reference():
    trace = flopmeter.count(SkipConnection(), torch.randn(4, 16)).trace
    ops = [e.op for e in trace.events]
    a_out = next(e for e in trace.events if e.module == "a" and e.op == "aten.addmm").outputs[0]
    b_out = next(e for e in trace.events if e.module == "b" and e.op == "aten.addmm").outputs[0]
    relu_i = ops.index("aten.relu")
    add_i = ops.index("aten.add")
    assert trace.storages[b_out.storage].freed == relu_i          # dropped once relu has read it
    assert trace.storages[a_out.storage].freed == add_i           # h lives until the residual add ran
    assert trace.storages[a_out.storage].created == ops.index("aten.addmm")
    out = trace.events[add_i].outputs[0]
    assert trace.storages[out.storage].freed is None                # the output is alive at the end
    for p in trace.params:                                          # parameters: from before, never freed
        assert trace.storages[p.storage].created == -1 and trace.storages[p.storage].freed is None


def test_every_event_has_a_phase_and_named_arguments():
    trace = flopmeter.count(models.small_cnn(), torch.randn(1, 1, 28, 28)).trace
    assert {e.phase for e in trace.events} == {"forward"}
    conv = _events(trace, "aten.convolution")[0]
    assert conv.arg("weight").shape == (16, 1, 3, 3) and conv.arg("groups") == 1
    assert conv.arg("padding") == [1, 1]


def test_module_table_has_types_calls_and_outputs():
    trace = flopmeter.count(models.CalledTwice(), torch.randn(2, 8)).trace
    by_path = {m.path: m for m in trace.modules}
    twice = [m for m in trace.modules if m.calls == 2]
    assert twice and all(len(m.outputs) == 2 for m in twice)
    assert by_path[""].type == "CalledTwice"


# -- the user's model: concurrency and in-place writes -----------------------------------------

class WritesItsWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        self.lin.weight.data.mul_(2)
        return self.lin(x)


def test_real_mode_in_place_write_to_a_parameter_stays_in_our_copy():
    model, x = WritesItsWeight(), torch.randn(2, 4)
    before = snapshot(model)
    flopmeter.count(model, x, options=Options(mode="real"))
    assert_unchanged(model, before)


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_concurrent_forward_in_another_thread_is_unaffected(mode):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)).eval()
    x = torch.randn(16, 64)
    with torch.no_grad():
        expected = model(x)
    stop = threading.Event()
    failures = []
    forwards = [0]

    def user():
        while not stop.is_set():
            with torch.no_grad():
                try:
                    y = model(x)
                    if type(y) is not torch.Tensor or not torch.equal(y, expected):
                        failures.append(f"wrong result: {type(y).__name__}")
                except Exception as exc:                       # noqa: BLE001 - any failure is the finding
                    failures.append(repr(exc))
            forwards[0] += 1

    thread = threading.Thread(target=user)
    thread.start()
    try:
        for _ in range(30):
            flopmeter.count(model, x, options=Options(mode=mode))
    finally:
        stop.set()
        thread.join()
    assert forwards[0] > 0
    assert failures == []


# -- the CLI: saving, loading, diffing traces ------------------------------------------------

def test_cli_saves_and_renders_a_trace_and_diffs_per_op(tmp_path, capsys):
    tiny = f"{Path(__file__).parent / 'data' / 'tiny_model.py'}:build"
    trace, json_a, json_b = tmp_path / "t.fmtrace", tmp_path / "a.json", tmp_path / "b.json"
    assert main([tiny, "--save-trace", str(trace), "-o", str(json_a)]) == 0
    assert main([str(trace), "-o", str(json_b)]) == 0
    assert json.loads(json_a.read_text()) == json.loads(json_b.read_text())
    assert main(["diff", str(trace), str(json_a)]) == 0
    assert main(["diff", str(trace), str(trace), "--by", "op"]) == 0
    capsys.readouterr()
    assert main([str(trace), "--batch", "4"]) == 2
    assert "cannot change a saved trace" in capsys.readouterr().err


# -- the package: no import cycle --------------------------------------------------------------

def _imports(path: Path) -> set[str]:
    """flopmeter modules imported at module level (function-level imports are lazy by design)."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    package = parts[:-1]
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("flopmeter"):
                out.add(name)
                out.update(f"{name}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("flopmeter"))
    return out


def test_import_graph_has_no_cycle():
    modules = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if path.name == "__init__.py" else rel.parts)
        modules[name] = path
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    # a package's __init__ importing its own submodules is not a cycle through the package
    for name in graph:
        graph[name] = {m for m in graph[name] if not (m.startswith(name + ".") and modules[name].name == "__init__.py")}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(n: str, path: list[str]) -> bool:
        state[n] = 1
        for m in graph[n]:
            if state.get(m) == 1:
                cycle.extend(path[path.index(m):] + [m] if m in path else [n, m])
                return True
            if state.get(m) is None and visit(m, path + [m]):
                return True
        state[n] = 2
        return False

    for n in sorted(graph):
        if state.get(n) is None and visit(n, [n]):
            break
    assert not cycle, " → ".join(cycle)
    assert "flopmeter.render.terminal" not in graph["flopmeter.report.model"]
