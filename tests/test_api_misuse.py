"""The public Python entry points given values of the wrong kind: each is a FlopmeterError naming
the parameter and what it expects (a ParameterTypeError, which is also a TypeError, for a wrong
type), raised before anything runs; real-mode inputs too large for free memory and nested tensor
inputs are clean InputErrors, not RuntimeErrors from PyTorch."""

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter import Options, count
from flopmeter.errors import FlopmeterError, InputError, ParameterTypeError
from flopmeter.trace.io import load_trace, save_trace


@pytest.fixture(scope="module")
def model():
    return nn.Linear(4, 2).eval()


@pytest.fixture(scope="module")
def report(model):
    return count(model, input_shape=(1, 4))


CASES = {
    "registry_a_string": (lambda m, r, p: Options(registry="x"), "Options.registry"),
    "strict_a_string": (lambda m, r, p: Options(strict="yes"), "Options.strict"),
    "convention_a_list": (lambda m, r, p: Options(convention=["dot"]), "Options.convention"),
    "mode_an_int": (lambda m, r, p: Options(mode=1), "Options.mode"),
    "loss_an_int": (lambda m, r, p: Options(loss=3), "Options.loss"),
    "device_an_int": (lambda m, r, p: Options(device=3), "Options.device"),
    "options_a_string": (lambda m, r, p: count(m, input_shape=(1, 4), options="real"), "count(options"),
    "options_a_dict": (lambda m, r, p: count(m, input_shape=(1, 4), options={"mode": "real"}), "count(options"),
    "model_a_string": (lambda m, r, p: count("resnet18", input_shape=(1, 4)), "count(model)"),
    "model_a_function": (lambda m, r, p: count(lambda x: x, input_shape=(1, 4)), "count(model)"),
    "count_onnx_an_int": (lambda m, r, p: flopmeter.count_onnx(12345), "count_onnx(model)"),
    "count_onnx_options_a_dict": (lambda m, r, p: flopmeter.count_onnx("x.onnx", options={}), "count_onnx(options"),
    "report_from_trace_none": (lambda m, r, p: flopmeter.report_from_trace(None), "report_from_trace(trace)"),
    "report_from_trace_a_report": (lambda m, r, p: flopmeter.report_from_trace(r), "report_from_trace(trace)"),
    "report_from_trace_options_a_string": (lambda m, r, p: flopmeter.report_from_trace(r.trace, "dot"),
                                           "report_from_trace(options"),
    "save_trace_a_report": (lambda m, r, p: save_trace(r, p), "save_trace(trace)"),
    "save_trace_path_an_int": (lambda m, r, p: save_trace(r.trace, 5), "save_trace(path)"),
    "load_trace_none": (lambda m, r, p: load_trace(None), "load_trace(path)"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_wrong_type_names_the_parameter(model, report, tmp_path, name):
    call, parameter = CASES[name]
    with pytest.raises(ParameterTypeError) as info:
        call(model, report, tmp_path / "run.fmtrace")
    assert isinstance(info.value, TypeError) and isinstance(info.value, InputError)
    assert str(info.value).startswith(parameter) and " must be " in str(info.value)
    assert info.value.hint
    assert not (tmp_path / "run.fmtrace").exists()


def test_a_torch_device_is_accepted_as_the_device(model):
    options = Options(device=torch.device("cpu"))
    assert count(model, input_shape=(1, 4), options=options).macs == 4 * 2


def test_count_without_inputs_is_an_input_error(model):
    with pytest.raises(InputError, match="no example inputs") as info:
        count(model)
    assert info.value.hint


def test_a_keras_model_is_still_accepted_as_a_model():
    keras = pytest.importorskip("keras")
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    assert count(layer, input_shape=(1, 4)).params.count == 4 * 3 + 3


@pytest.mark.parametrize("mode", ["fake", "real"])
@pytest.mark.parametrize("layout", [torch.strided, torch.jagged])
def test_a_nested_tensor_input_is_refused(model, mode, layout):
    nested = torch.nested.nested_tensor([torch.randn(2, 4), torch.randn(3, 4)], layout=layout)
    with pytest.raises(InputError, match="nested tensor") as info:
        count(model, nested, options=Options(mode=mode))
    assert info.value.hint


def test_real_mode_inputs_larger_than_free_memory_are_refused(model, monkeypatch):
    import flopmeter.trace.checks as checks
    monkeypatch.setattr(checks, "free_memory", lambda: 10**6)      # a machine with 1 MB free
    shape = (1000, 1000)                                            # 4,000,000 bytes of float32
    with pytest.raises(InputError, match="4,000,000 bytes") as info:
        count(nn.Linear(1000, 2).eval(), input_shape=shape, options=Options(mode="real"))
    assert "fake mode" in info.value.hint
    assert count(model, input_shape=(2, 4), options=Options(mode="real")).macs == 2 * 4 * 2


def test_real_mode_input_of_a_million_images_is_refused_before_allocating(model):
    from flopmeter.trace.checks import free_memory
    if (free_memory() or 0) > 10**6 * 3 * 224 * 224 * 4:
        pytest.skip("this machine has 602 GB free")
    with pytest.raises(InputError, match="602,112,000,000 bytes"):
        count(model, input_shape=(10**6, 3, 224, 224), options=Options(mode="real"))


def test_every_parameter_type_error_is_a_flopmeter_error():
    assert issubclass(ParameterTypeError, FlopmeterError) and issubclass(ParameterTypeError, TypeError)
