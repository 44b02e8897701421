"""Size and shape limits on the files flopmeter reads, checked before anything is read whole or
allocated: gzip and zip bombs, ONNX files declaring huge tensors or exponential functions, hf
configs asking for too many layers; and damaged files (truncated, too deeply nested, invalid
UTF-8, huge integers) end in one error line, never a traceback."""

import gzip
import json
import zlib

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter.cli import main
from flopmeter.trace import io as trace_io
from flopmeter.trace.io import load_trace, save_trace
from cli_checks import one_error



def refused(capsys, argv: list[str]) -> tuple[str, str]:
    return one_error(capsys, main(argv))


# -- saved traces ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trace_dict(tmp_path_factory) -> dict:
    """The decoded JSON of a real trace (a Linear and a ReLU), to be damaged by each test."""
    path = tmp_path_factory.mktemp("trace") / "ok.fmtrace"
    report = flopmeter.count(nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval(), torch.randn(2, 4))
    save_trace(report.trace, path)
    return json.loads(gzip.decompress(path.read_bytes()))


def _write(path, data: bytes):
    path.write_bytes(gzip.compress(data, compresslevel=1))
    return path


def test_trace_gzip_bomb_stops_at_the_size_limit(tmp_path, capsys, monkeypatch):
    limit = 1 << 20
    monkeypatch.setenv(trace_io.MAX_TRACE_BYTES_ENV, str(limit))
    bomb = _write(tmp_path / "bomb.fmtrace", b"[" + b" " * (16 * limit) + b"]")     # 16 MiB from ~16 KB
    assert bomb.stat().st_size < limit // 8
    error, hint = refused(capsys, [str(bomb)])
    assert f"more than {limit:,} bytes" in error and trace_io.MAX_TRACE_BYTES_ENV in hint
    with pytest.raises(flopmeter.InputError):
        load_trace(bomb)


def test_trace_size_limit_default_is_a_named_constant():
    assert trace_io.max_trace_bytes() == trace_io.DEFAULT_MAX_TRACE_BYTES == 512 << 20


@pytest.mark.parametrize("damage", ["truncated", "corrupt_stream", "not_gzip"])
def test_damaged_gzip_trace_is_one_error(tmp_path, capsys, trace_dict, damage):
    data = gzip.compress(json.dumps(trace_dict).encode())
    data = {"truncated": data[: len(data) // 2],
            "corrupt_stream": data[:10] + bytes(b ^ 0xFF for b in data[10:40]) + data[40:],
            "not_gzip": b"plain text, no gzip header"}[damage]
    (tmp_path / "bad.fmtrace").write_bytes(data)
    refused(capsys, [str(tmp_path / "bad.fmtrace")])
    with pytest.raises(flopmeter.InputError):
        load_trace(tmp_path / "bad.fmtrace")


@pytest.mark.parametrize("payload", [b"[" * 100_000 + b"]" * 100_000,        # deeper than Python's recursion
                                     b'{"schema": "flopmeter.trace/1", "model": "\xff\xfe"}',   # invalid UTF-8
                                     b'{"schema": "flopmeter.trace/1", "model": ' + b"9" * 5000 + b"}"],
                         ids=["deep_nesting", "invalid_utf8", "integer_of_5000_digits"])
def test_unreadable_trace_json_is_one_error(tmp_path, capsys, payload):
    path = _write(tmp_path / "bad.fmtrace", payload)
    refused(capsys, [str(path)])


def _damaged(tmp_path, trace_dict, edit):
    d = json.loads(json.dumps(trace_dict))
    edit(d)
    return _write(tmp_path / "damaged.fmtrace", json.dumps(d).encode())


def _nested_arg(d):
    """An event argument nested 900 lists deep: within JSON's limit, past what decoding recurses."""
    deep = []
    for _ in range(900):
        deep = [deep]
    d["events"][0][2] = [deep]


@pytest.mark.parametrize("edit", [
    lambda d: d["inputs"][0].__setitem__(2, [2, 10**30]),                           # past 2^63 elements
    lambda d: d["inputs"][0].__setitem__(2, ["x", 10**12]),                         # a size that is not a number
    lambda d: d["params"][0].__setitem__(2, [3, 10**4000]),
    lambda d: d["storages"][0].__setitem__(1, 10**30),
    lambda d: d["events"][0].__setitem__(2, {"map": [[[1], 2]]}),                   # unhashable key
    _nested_arg,
], ids=["huge_dim", "text_dim", "huge_param_dim", "huge_storage", "bad_map", "nested_arg"])
def test_impossible_values_in_a_trace_are_one_error(tmp_path, capsys, trace_dict, edit):
    path = _damaged(tmp_path, trace_dict, edit)
    refused(capsys, [str(path)])


# -- hf: config.json ----------------------------------------------------------------------------

def _hf(tmp_path, text: bytes | str):
    folder = tmp_path / "cfg"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_bytes(text.encode() if isinstance(text, str) else text)
    return f"hf:{folder}"


@pytest.mark.parametrize("config, words", [
    ({"model_type": "swin", "depths": [100_000, 1, 1, 1]}, "100,003 layers ('depths')"),
    ({"model_type": "convnext", "depths": [400] * 3}, "1,200 layers ('depths')"),
    ({"model_type": "gpt2", "n_layer": 10**30}, "more than 10^18 layers ('n_layer')"),
    ({"model_type": "t5", "num_layers": 2, "num_decoder_layers": 1001}, "1,001 layers ('num_decoder_layers')"),
    ({"model_type": "llava", "text_config": {"model_type": "llama", "num_hidden_layers": 5000}}, "5,000 layers"),
], ids=["swin_depths", "convnext_sum_of_depths", "huge_n_layer", "t5_decoder_layers", "sub_config"])
def test_every_layer_count_is_held_to_the_layer_limit(tmp_path, capsys, config, words):
    from flopmeter.frontends.hfcheck import DEFAULT_MAX_LAYERS
    assert DEFAULT_MAX_LAYERS == 1000
    error, hint = refused(capsys, [_hf(tmp_path, json.dumps(config))])
    assert words in error and "FLOPMETER_MAX_LAYERS" in hint


@pytest.mark.parametrize("config", [{"model_type": "swin", "depths": [2, "2", 6, 2]},
                                    {"model_type": "swin", "depths": [2, -1, 6, 2]},
                                    {"model_type": "gpt2", "n_layer": 1e400}],
                         ids=["text_in_depths", "negative_depth", "infinite_n_layer"])
def test_layer_counts_that_are_not_whole_numbers_are_one_error(tmp_path, capsys, config):
    error, _ = refused(capsys, [_hf(tmp_path, json.dumps(config))])
    assert "'depths'" in error or "'n_layer'" in error


def test_layer_lists_that_are_not_counts_are_left_to_transformers(tmp_path):
    from flopmeter.frontends.hfcheck import check_config
    check_config({"model_type": "gpt_neo", "attention_layers": ["global", "local"] * 12,
                  "mlp_only_layers": list(range(60))}, tmp_path / "config.json")     # indices, not counts


@pytest.mark.parametrize("payload", ["[" * 100_000 + "]" * 100_000,
                                     b'{"model_type": "gpt2", "n_embd": "\xff"}',
                                     '{"model_type": "gpt2", "n_layer": ' + "9" * 5000 + "}"],
                         ids=["deep_nesting", "invalid_utf8", "integer_of_5000_digits"])
def test_unreadable_config_json_is_one_error(tmp_path, capsys, payload):
    refused(capsys, [_hf(tmp_path, payload)])


# -- ONNX: small files declaring huge work ----------------------------------------------------

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from flopmeter.frontends import onnx_shapes  # noqa: E402


def _onnx(tmp_path, nodes, *, inputs=None, functions=(), extra_opsets=(), name="net.onnx"):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), *extra_opsets],
                              functions=list(functions))
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def _scalar(name, value):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.FLOAT, [], [value]))


def test_onnx_range_bomb_is_counted_from_shapes(tmp_path, capsys):
    """Range(0, 2^29, 1) + x: a 2^29-long vector that data propagation or folding would hold in memory."""
    n = 2**29
    path = _onnx(tmp_path, [_scalar("a", 0.0), _scalar("b", float(n)), _scalar("c", 1.0),
                            helper.make_node("Range", ["a", "b", "c"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"])])
    assert path.stat().st_size < 300
    assert n > onnx_shapes.DATA_PROP_MAX_LENGTH and n > onnx_shapes.SMALL
    assert main([str(path), "--format", "json", "--convention", "all"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["unsupported"] == {}
    assert d["totals"]["flops_by_convention"]["all"] == n        # one add per element of the broadcast output


@pytest.mark.parametrize("dims", [[2**40, 2**40], [2**31, 2**31, 2**31]], ids=["2^80", "2^93"])
def test_onnx_tensor_declaring_more_than_a_tensor_can_hold_is_refused(tmp_path, capsys, dims):
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims)      # dims only: no data
    path = _onnx(tmp_path, [helper.make_node("Constant", [], ["w"], value=t), helper.make_node("Add", ["x", "w"], ["y"])])
    error, _ = refused(capsys, [str(path)])
    assert "'w'" in error and "2^63" in error


def test_onnx_constant_without_its_data_is_counted_from_its_dims(tmp_path, capsys):
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**15, 2**14])    # declares 2 GiB, holds nothing
    path = _onnx(tmp_path, [helper.make_node("Constant", [], ["w"], value=t), helper.make_node("Add", ["x", "w"], ["y"])])
    assert main([str(path), "--format", "json", "--convention", "all"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["totals"]["flops_by_convention"]["all"] == 2**15 * 2**14


def _function(name: str, calls: str | None, fanout: int):
    """A local function y = f(x) whose body calls ``calls`` ``fanout`` times (a chain), or one Relu."""
    if calls is None:
        body = [helper.make_node("Relu", ["x"], ["y"])]
    else:
        names = ["x"] + [f"t{i}" for i in range(fanout - 1)] + ["y"]
        body = [helper.make_node(calls, [a], [b], domain="local") for a, b in zip(names, names[1:])]
    return helper.make_function("local", name, ["x"], ["y"], body, [helper.make_opsetid("", 17)])


def test_onnx_function_bomb_is_refused_before_inlining(tmp_path, capsys):
    """30 functions each calling the next 4 times: 4^30 nodes once inlined, from a few KB."""
    depth = 30
    functions = [_function(f"f{i}", f"f{i + 1}" if i < depth else None, 4) for i in range(depth + 1)]
    path = _onnx(tmp_path, [helper.make_node("f0", ["x"], ["y"], domain="local")], functions=functions,
                 extra_opsets=[helper.make_opsetid("local", 1)])
    assert path.stat().st_size < 8000
    error, _ = refused(capsys, [str(path)])
    assert f"{onnx_shapes.MAX_INLINED_NODES:,}" in error


def test_onnx_recursive_function_is_refused(tmp_path, capsys):
    functions = [_function("f", "g", 1), _function("g", "f", 1)]
    path = _onnx(tmp_path, [helper.make_node("f", ["x"], ["y"], domain="local")], functions=functions,
                 extra_opsets=[helper.make_opsetid("local", 1)])
    error, _ = refused(capsys, [str(path)])
    assert "calls itself" in error


def test_onnx_functions_nested_too_deep_are_refused(tmp_path, capsys):
    depth = onnx_shapes.MAX_FUNCTION_DEPTH + 1
    functions = [_function(f"f{i}", f"f{i + 1}" if i < depth else None, 1) for i in range(depth + 1)]
    path = _onnx(tmp_path, [helper.make_node("f0", ["x"], ["y"], domain="local")], functions=functions,
                 extra_opsets=[helper.make_opsetid("local", 1)])
    error, _ = refused(capsys, [str(path)])
    assert "nest more than" in error


def test_onnx_small_nested_functions_are_inlined_and_counted(tmp_path):
    functions = [_function(f"f{i}", f"f{i + 1}" if i < 3 else None, 2) for i in range(4)]    # 2^3 Relus
    path = _onnx(tmp_path, [helper.make_node("f0", ["x"], ["y"], domain="local")], functions=functions,
                 extra_opsets=[helper.make_opsetid("local", 1)])
    report = flopmeter.count_onnx(str(path))
    assert [r.op for r in report.ops] == ["onnx.Relu"] * 2**3


# -- .pt2 archives ----------------------------------------------------------------------------

import zipfile  # noqa: E402

from flopmeter.frontends import pt2 as pt2_check  # noqa: E402


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    path = tmp_path_factory.mktemp("pt2") / "net.pt2"
    torch.export.save(torch.export.export(nn.Linear(4, 3).eval(), (torch.randn(2, 4),)), str(path))
    return path


def _rebuilt(program, dst, extra: dict[str, bytes], compress=zipfile.ZIP_DEFLATED):
    """The archive again, with members added (or replaced) under its root folder."""
    with zipfile.ZipFile(program) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            if info.filename.split("/", 1)[1] not in extra:
                zout.writestr(info, zin.read(info))
        for name, data in extra.items():
            zout.writestr(f"{root}/{name}", data, compress_type=compress)
    return dst


@pytest.mark.parametrize("member", ["data/sample_inputs/model.pt", "extra/notes.json"])
@pytest.mark.parametrize("trust", [False, True], ids=["untrusted", "trusted"])
def test_pt2_zip_bomb_is_refused_from_its_directory(tmp_path, capsys, program, member, trust):
    bomb = _rebuilt(program, tmp_path / "bomb.pt2", {member: b"\0" * (64 << 20)})     # 64 MiB in ~64 KB
    assert bomb.stat().st_size * pt2_check.MAX_INFLATION < 64 << 20
    error, _ = refused(capsys, [str(bomb), "--input", "2x4"] + ["--trust-pickle"] * trust)
    assert "declares" in error and "bytes of contents" in error


def test_pt2_stored_member_larger_than_the_file_is_refused(tmp_path, capsys, program):
    dst = _rebuilt(program, tmp_path / "liar.pt2", {"extra/big.bin": b"x" * 1000}, compress=zipfile.ZIP_STORED)
    data = dst.read_bytes()
    with zipfile.ZipFile(dst) as z:
        info = z.getinfo(next(n for n in z.namelist() if n.endswith("extra/big.bin")))
    # rewrite the central directory's uncompressed size of that member to 4 GiB - 1
    entry = data.rindex(info.filename.encode()) - 46
    data = data[:entry + 24] + (2**32 - 1).to_bytes(4, "little") + data[entry + 28:]
    dst.write_bytes(data)
    error, _ = refused(capsys, [str(dst)])
    assert "declares" in error


def test_pt2_member_read_is_capped(tmp_path, monkeypatch, program):
    monkeypatch.setattr(pt2_check, "MAX_READ", 1000)
    monkeypatch.setattr(pt2_check, "MAX_INFLATION", 10**6)
    dst = _rebuilt(program, tmp_path / "big.pt2", {"data/sample_inputs/model.pt": b"\0" * 5000})
    with pytest.raises(flopmeter.InputError, match="more than 1,000 bytes"):
        pt2_check.check_pt2(dst)


def test_plain_pt2_passes_the_size_checks(program):
    pt2_check.check_pt2(program)
    with zipfile.ZipFile(program) as z:
        assert sum(i.file_size for i in z.infolist()) <= program.stat().st_size      # stored: about the file's size


@pytest.mark.parametrize("name", ["FLOPMETER_MAX_TRACE_BYTES", "FLOPMETER_MAX_LAYERS", "FLOPMETER_REPLAY_MIN_TWINS"])
@pytest.mark.parametrize("text", ["lots", "0", "-5", "1.5"])
def test_a_limit_set_in_the_environment_must_be_a_whole_number_of_one_or_more(monkeypatch, name, text):
    from flopmeter.errors import InputError, env_int
    monkeypatch.setenv(name, text)
    with pytest.raises(InputError, match=name) as caught:
        env_int(name, 8, "units", 8)
    assert name in caught.value.hint
    monkeypatch.setenv(name, "12")
    assert env_int(name, 8, "units", 8) == 12
    monkeypatch.delenv(name)
    assert env_int(name, 8, "units", 8) == 8
