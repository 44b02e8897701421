"""The process and the model as found, also with odd models — a forward that changes
global torch state, torch.compile'd modules — and fake mode failing like real mode on dtypes."""

import warnings

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_mod

import flopmeter
from flopmeter import ModelForwardError, Options
from flopmeter.errors import FlopmeterNote

from guards import assert_unchanged, snapshot


class ChangesGlobals(nn.Module):
    """A forward that changes process-wide torch state (and then raises, when asked)."""

    def __init__(self, fail: bool):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.fail = fail

    def forward(self, x):
        torch.set_default_dtype(torch.float64)
        torch.set_grad_enabled(True)
        module_mod.register_module_forward_hook(lambda m, i, o: None)
        module_mod.register_module_forward_pre_hook(lambda m, i: None)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.set_float32_matmul_precision("medium")
        y = self.lin(x)
        if self.fail:
            raise RuntimeError("deliberate failure after changing globals")
        return y


def _globals():
    return (torch.get_default_dtype(), torch.is_grad_enabled(), len(module_mod._global_forward_hooks),
            len(module_mod._global_forward_pre_hooks), torch.are_deterministic_algorithms_enabled(),
            torch.get_float32_matmul_precision())


@pytest.mark.parametrize("mode", ["fake", "real"])
@pytest.mark.parametrize("fail", [True, False], ids=["forward_raises", "forward_returns"])
@pytest.mark.parametrize("grad", [True, False], ids=["grad_on", "grad_off"])
def test_global_torch_state_restored_after_forward_changes_it(mode, fail, grad):
    model = ChangesGlobals(fail)
    x = torch.randn(2, 4)
    with torch.set_grad_enabled(grad):
        before, state = _globals(), snapshot(model)
        if fail:
            with pytest.raises(ModelForwardError, match="deliberate failure"):
                flopmeter.count(model, x, options=Options(mode=mode))
        else:
            r = flopmeter.count(model, x, options=Options(mode=mode))
            assert r.macs == 2 * 4 * 3                                  # N·I·O
        assert _globals() == before
        assert_unchanged(model, state)


@pytest.fixture(scope="module")
def compile_ok():
    try:
        torch.compile(nn.Linear(1, 1))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"torch.compile unavailable: {exc}")


def _block():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_compiled_model_counted_through_its_original_module(compile_ok, mode):
    compiled = torch.compile(_block())
    x = torch.randn(3, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = flopmeter.count(compiled, x, options=Options(mode=mode))
    assert r.macs == 3 * (4 * 8 + 8 * 2)                                  # N·(I·H + H·O)
    assert r.root.type == "Sequential" and [n.path for n in r.modules()] == ["", "0", "1", "2"]
    assert any(issubclass(w.category, FlopmeterNote) and "torch.compile" in str(w.message) for w in caught)
    assert compiled(x).shape == (3, 2)                                    # the compiled model still runs


@pytest.mark.parametrize("mode", ["fake", "real"])
def test_compiled_submodule_counted_eagerly(compile_ok, mode):
    model = nn.Sequential(torch.compile(nn.Linear(4, 8)), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(3, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = flopmeter.count(model, x, options=Options(mode=mode))
    assert r.macs == 3 * (4 * 8 + 8 * 2)
    assert r.module("0._orig_mod").total.macs == 3 * 4 * 8
    assert any(issubclass(w.category, FlopmeterNote) and "'0'" in str(w.message) for w in caught)


def test_cli_notes_a_compiled_model(compile_ok, tmp_path, capsys):
    from flopmeter.cli import main
    f = tmp_path / "net.py"
    f.write_text("import torch\nfrom torch import nn\n\ndef build():\n"
                 "    return torch.compile(nn.Linear(4, 2).eval()), torch.randn(1, 4)\n")
    code = main([f"{f}:build", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0 and '"macs": 8' in out
    assert err.count("note:") == 1 and "torch.compile" in err


# -- fake mode fails like real mode on dtypes --------------------------------------------

DTYPE_CASES = {
    "int64_input_to_float_linear": (lambda: nn.Linear(4, 3), torch.long, "int64", "float32"),
    "complex_input_to_float_linear": (lambda: nn.Linear(4, 3), torch.complex64, "complex64", "float32"),
    "fp16_model_with_fp32_input": (lambda: nn.Linear(4, 3).half(), torch.float32, "float32", "float16"),
}


@pytest.mark.parametrize("case", list(DTYPE_CASES))
def test_fake_mode_fails_like_real_on_dtype_mismatch(case):
    make, dtype, got, weight = DTYPE_CASES[case]
    x = torch.ones(2, 4, dtype=dtype)
    with pytest.raises(ModelForwardError) as real:
        flopmeter.count(make(), x, options=Options(mode="real"))
    with pytest.raises(ModelForwardError) as fake:
        flopmeter.count(make(), x, options=Options(mode="fake"))
    assert real.value.op == fake.value.op == "aten.addmm"
    message = str(fake.value)
    assert "aten.addmm" in message and f"mat1: {got}" in message and f"mat2: {weight}" in message


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_matching_dtypes_still_count(dtype):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).to(dtype)
    r = flopmeter.count(model, torch.ones(2, 3, 8, 8, dtype=dtype))
    assert r.macs == 2 * 4 * 6 * 6 * 3 * 3 * 3 + 2 * 4 * 6 * 6 * 5     # N·C_out·H·W·C_in·K·K + N·I·O


def test_fused_attention_checks_its_operand_dtypes():
    mha = nn.MultiheadAttention(8, 2, batch_first=True).half().eval()
    x = torch.ones(1, 3, 8)                                              # float32 into a float16 module
    with pytest.raises(ModelForwardError, match="needs operands of one dtype"):
        flopmeter.count(mha, x, x, x)
    with pytest.raises(ModelForwardError):
        flopmeter.count(mha, x, x, x, options=Options(mode="real"))


# -- library mistakes: one FlopmeterError with a hint -----------------------------------

LIBRARY_MISTAKES = {
    "options_device_tpu": lambda m: flopmeter.Options(device="tpu"),
    "kwargs_not_a_dict": lambda m: flopmeter.count(m, kwargs=[1]),
    "input_shape_an_int": lambda m: flopmeter.count(m, input_shape=5),
    "input_shape_overflowing_int64": lambda m: flopmeter.count(m, input_shape=(2**40, 2**40)),
    "real_mode_on_another_device_than_the_model": lambda m: flopmeter.count(
        m, torch.randn(1, 4), options=Options(mode="real", device="meta")),
}


@pytest.mark.parametrize("name", list(LIBRARY_MISTAKES))
def test_library_mistakes_raise_one_flopmeter_error_with_a_hint(name):
    with pytest.raises(flopmeter.errors.FlopmeterError) as info:
        LIBRARY_MISTAKES[name](nn.Linear(4, 3))
    assert info.value.hint and "\n" not in str(info.value)


def test_real_mode_reports_the_device_it_ran_on(monkeypatch):
    model = nn.Linear(4, 3)
    assert flopmeter.count(model, torch.randn(1, 4), options=Options(mode="real")).device == "cpu"
    # with a GPU present (mocked: there is none here), a CPU model is still not reported as on cuda
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(flopmeter.errors.OptionsError, match=r"where its weights are \(cpu\)"):
        flopmeter.count(model, torch.randn(1, 4), options=Options(mode="real", device="cuda"))


def test_real_mode_cuda_without_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(flopmeter.errors.OptionsError, match="PyTorch sees none"):
        Options(mode="real", device="cuda")
    assert Options(mode="fake", device="cuda").device == "cuda"         # fake mode needs no GPU
