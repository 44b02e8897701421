"""What a file given as SPEC may do to flopmeter: nothing of its own runs without the user's
trust (TorchScript is code, as a pickle is), nothing outside it is opened (ONNX external
data), and what it declares is checked before it becomes a number (negative or symbolic
dimensions, unknown modules, an empty file, a config transformers rejects)."""

import gzip
import json
import logging
import warnings
from typing import Tuple

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter.cli import main
from flopmeter.frontends import InputRequest, resolve
from flopmeter.trace.io import load_trace, save_trace
from cli_checks import one_error



# -- TorchScript archives are code --------------------------------------------------------

class _Printing(nn.Module):
    """A scripted forward that prints: stands for any code a TorchScript method can run."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        print("scripted forward ran")
        return self.lin(x)


class _LoadTime(nn.Module):
    """A scripted ``__setstate__`` runs while ``torch.jit.load`` reads the archive."""

    @torch.jit.export
    def __getstate__(self) -> Tuple[int, bool]:
        return (1, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[int, bool]) -> None:
        print("scripted setstate ran")
        self.training = state[1]

    def forward(self, x):
        return x * 2


def _scripted(tmp_path, cls, name="net.ts"):
    path = tmp_path / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # torch.jit.script's deprecation notice
        torch.jit.script(cls().eval()).save(str(path))
    return path


@pytest.mark.parametrize("cls, suffix", [(_Printing, ".ts"), (_Printing, ".pt"), (_LoadTime, ".pth")],
                         ids=["forward_ts", "forward_pt", "setstate_pth"])
def test_torchscript_archive_needs_trust_pickle_on_the_command_line(tmp_path, capfd, cls, suffix):
    path = _scripted(tmp_path, cls, "net" + suffix)
    code = main([str(path), "--input", "2x4", "--format", "json"])
    error, hint = one_error(capfd, code)
    assert "TorchScript" in error and "--trust-pickle" in hint


def test_torchscript_archive_needs_trust_pickle_from_python(tmp_path, capfd):
    path = _scripted(tmp_path, _LoadTime)
    with pytest.raises(flopmeter.FlopmeterError) as info:
        resolve(str(path), InputRequest(shapes=(((2, 4), None),)))
    assert "trust_pickle=True" in info.value.hint
    assert "ran" not in capfd.readouterr().out


@pytest.mark.filterwarnings("ignore")
def test_trusted_torchscript_archive_is_counted(tmp_path, capfd):
    path = _scripted(tmp_path, _Printing)
    code = main([str(path), "--input", "2x4", "--trust-pickle", "--format", "json", "-o", str(tmp_path / "r.json")])
    assert code == 0, capfd.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["totals"]["macs"] == 2 * 4 * 3              # batch × in × out of the one Linear
    assert "scripted forward ran" in capfd.readouterr().out   # trusted: its code ran, as asked


# -- saved traces: figures that cannot come from a run -------------------------------------

def _trace_file(tmp_path, edit):
    """A real trace (Linear(4, 3) at batch 2, then ReLU), edited, written as a .fmtrace file."""
    report = flopmeter.count(nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval(), torch.randn(2, 4))
    path = tmp_path / "run.fmtrace"
    save_trace(report.trace, path)
    d = json.loads(gzip.decompress(path.read_bytes()))
    edit(d)
    path.write_bytes(gzip.compress(json.dumps(d).encode()))
    return path


def _negative_input(d):
    d["inputs"][0][2] = [-2, 4]
    for event in d["events"]:                      # the same input as the addmm saw it
        for arg in event[2]:
            if isinstance(arg, dict) and arg["T"][8] == "input":
                arg["T"][2] = [-2, 4]


def _unknown_module(d):
    event = next(e for e in d["events"] if e[0] == "aten.relu")
    event[5] = "ghost"
    event[6] = [["", 0], ["ghost", 0]]


@pytest.mark.parametrize("edit, words", [(_negative_input, "shape [-2, 4]"), (_unknown_module, "'ghost'")],
                         ids=["negative_shape", "event_in_unknown_module"])
def test_trace_with_impossible_figures_is_refused(tmp_path, capsys, edit, words):
    path = _trace_file(tmp_path, edit)
    error, _ = one_error(capsys, main([str(path), "--format", "json"]))
    assert "damaged" in error and words in error
    with pytest.raises(flopmeter.FlopmeterError):
        flopmeter.report_from_trace(load_trace(path))


# -- hf: configs that transformers' own validation rejects ------------------------------------

LLAMA = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4,
         "num_hidden_layers": 1, "intermediate_size": 32, "vocab_size": 100, "max_position_embeddings": 64}


def _config(tmp_path, **changes):
    folder = tmp_path / "cfg"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({**LLAMA, **changes}))
    return f"hf:{folder}"


@pytest.mark.parametrize("changes, in_error, in_hint", [
    ({"hidden_size": "64"}, "'hidden_size' expected int, got str", "'hidden_size' as a JSON whole number"),
    ({"num_attention_heads": 4.5}, "'num_attention_heads' expected int", "'num_attention_heads'"),
    ({"hidden_size": 65}, "not a multiple of the number of attention heads", "multiple of num_attention_heads"),
    ({"rope_scaling": {"rope_type": "bogus"}}, "bogus", "check the config"),
], ids=["string_for_int", "float_for_int", "hidden_not_divisible_by_heads", "unknown_rope_type"])
def test_config_transformers_rejects_is_one_error(tmp_path, capfd, changes, in_error, in_hint):
    spec = _config(tmp_path, **changes)
    error, hint = one_error(capfd, main([spec, "--seq-len", "8"]))      # capfd: transformers' own log lines too
    assert in_error in error and in_hint in hint
    with pytest.raises(flopmeter.FlopmeterError):
        resolve(spec, InputRequest(seq_len=8))
    assert capfd.readouterr().err == ""


def test_transformers_logger_level_is_put_back(tmp_path):
    logger = logging.getLogger("transformers")
    before = logger.level
    with pytest.raises(flopmeter.FlopmeterError):
        resolve(_config(tmp_path, rope_scaling={"rope_type": "bogus"}), InputRequest(seq_len=8))
    assert logger.level == before


# -- ONNX files -------------------------------------------------------------------------------

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _onnx_model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _save(tmp_path, model, name="net.onnx"):
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def _external(name: str, dtype: int, dims: list, location: str) -> "TensorProto":
    t = TensorProto(name=name, data_type=dtype, dims=dims)
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=location)
    t.external_data.add(key="length", value=str(8 * max(1, len(dims))))
    return t


def _external_data_model(location: str):
    """z = Flatten(x) @ w + c, with the initializer ``w`` and the Constant ``c`` both stored in
    the external file ``location``: their shapes are in the model, their values are not. A second
    output r = Reshape(x, s) takes its target shape ``s`` from the same file: a value shape
    inference cannot know, which sends the loader looking for constants to fold."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
    r = helper.make_tensor_value_info("r", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Constant", [], ["c"], value=_external("c", TensorProto.FLOAT, [5], location)),
             helper.make_node("Constant", [], ["s"], value=_external("s", TensorProto.INT64, [2], location)),
             helper.make_node("Flatten", ["x"], ["f"], axis=0),
             helper.make_node("MatMul", ["f", "w"], ["m"]),
             helper.make_node("Add", ["m", "c"], ["z"]),
             helper.make_node("Reshape", ["x", "s"], ["r"])]
    return _onnx_model(nodes, [x], [z, r], [_external("w", TensorProto.FLOAT, [6, 5], location)])


@pytest.mark.parametrize("where", ["relative", "absolute", "parent"])
def test_onnx_external_data_is_never_opened(tmp_path, capsys, monkeypatch, where):
    import numpy as np
    from onnx import external_data_helper, numpy_helper
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    data = tmp_path / "work" / "shape.bin"
    np.ones(6 * 5 + 5, dtype=np.float32).tofile(data)
    location = {"relative": "shape.bin", "absolute": str(data), "parent": "../work/shape.bin"}[where]
    path = _save(tmp_path, _external_data_model(location))
    opened = []
    for module in (external_data_helper, numpy_helper):       # numpy_helper holds its own reference
        monkeypatch.setattr(module, "load_external_data_for_tensor", lambda *a, **k: opened.append(a), raising=False)
    code = main([str(path), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err, err
    d = json.loads(out)
    assert d["totals"]["macs"] == 1 * 6 * 5           # Flatten(axis=0) of 2×3 is 1×6; @ 6×5, from shapes alone
    assert d["params"]["count"] == 6 * 5 and d["unsupported"] == {}      # the external initializer by its dims
    assert opened == []


def test_empty_onnx_file_is_refused(tmp_path, capsys):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    error, _ = one_error(capsys, main([str(path)]))
    assert "empty" in error
    with pytest.raises(flopmeter.FlopmeterError):
        flopmeter.count_onnx(str(path))
    with pytest.raises(flopmeter.FlopmeterError):
        flopmeter.count_onnx(onnx.ModelProto())         # an empty model from Python: no graph


def _matmul(x_dims, w_dims):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, x_dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=w_dims)
    return _onnx_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [x], [y], [w])


def test_negative_initializer_dims_are_refused(tmp_path, capsys):
    path = _save(tmp_path, _matmul([2, 4], [4, -3]))
    error, _ = one_error(capsys, main([str(path)]))
    assert "'w'" in error and "negative" in error


def test_negative_input_dim_is_an_unbound_dimension(tmp_path, capsys):
    """An exporter's -1 for a size it left open is no size: it needs the user's shape."""
    path = _save(tmp_path, _matmul([-1, 4], [4, 3]))
    error, hint = one_error(capsys, main([str(path)]))
    assert "unbound input dimension" in error and "--input" in hint
    assert main([str(path), "--input", "2x4", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["totals"]["macs"] == 2 * 4 * 3 and d["params"]["count"] == 4 * 3


@pytest.mark.parametrize("shape", [(-2, 4), (0, 4), (2.5, 4)], ids=["negative", "zero", "fraction"])
def test_impossible_input_shapes_from_python_are_refused(tmp_path, shape):
    path = _save(tmp_path, _matmul(["batch", 4], [4, 3]))
    with pytest.raises(flopmeter.FlopmeterError):
        flopmeter.count_onnx(str(path), {"x": shape})


def test_negative_declared_output_shape_is_not_used(tmp_path, capsys):
    """A value_info of -1 sizes (what inference cannot check, e.g. a custom op's output) is unknown."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, -7])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Custom", ["x"], ["y"], domain="my.ops"), helper.make_node("Relu", ["y"], ["z"])]
    model = _onnx_model(nodes, [x], [z])
    model.opset_import.append(helper.make_opsetid("my.ops", 1))
    model.graph.value_info.append(y)
    assert main([str(_save(tmp_path, model)), "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["totals"]["macs"] >= 0 and all(calls > 0 for calls in d["unsupported"].values())
    assert any("Relu" in op for op in d["unsupported"])      # its input's size is unknown: listed, not negative
