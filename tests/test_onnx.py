"""The ONNX front end: PyTorch vs ONNX cross-checks, ONNX models nobody here wrote, closed forms,
symbolic dimensions, parameters from initializers, quantized graphs, the CLI."""

from pathlib import Path

import pytest
import torch

import flopmeter
from flopmeter.cli import main
from flopmeter.errors import InputError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from onnx_models import export, graph, init  # noqa: E402

F, I8, U8, F16, I4, I64 = TensorProto.FLOAT, TensorProto.INT8, TensorProto.UINT8, TensorProto.FLOAT16, \
    TensorProto.INT4, TensorProto.INT64


# -- PyTorch vs ONNX: the same model counted from its module and from its exported file ------------

def _gpt2():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=1000, n_positions=64,
                                  use_cache=False, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg), (torch.zeros(1, 16, dtype=torch.long),)


def _tv(name):
    def make():
        tv = pytest.importorskip("torchvision")
        return tv.models.get_model(name, weights=None), (torch.randn(1, 3, 224, 224),)
    return make


CROSS = {"resnet18": _tv("resnet18"), "mobilenet_v3_small": _tv("mobilenet_v3_small"),
         "vit_b_16": _tv("vit_b_16"), "gpt2": _gpt2}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name → (PyTorch report, path of the exported .onnx), exported once per test module."""
    cache = {}

    def get(name):
        if name not in cache:
            model, args = CROSS[name]()
            model.eval()
            path = export(model, args, tmp_path_factory.mktemp(name) / f"{name}.onnx")
            cache[name] = (flopmeter.count(model, *args), path)
        return cache[name]
    return get


@pytest.mark.parametrize("name", list(CROSS))
def test_pytorch_and_onnx_counts_agree(exported, name):
    torch_report, path = exported(name)
    onnx_report = flopmeter.count_onnx(path)
    assert onnx_report.unsupported == {}
    assert onnx_report.macs == torch_report.macs
    assert onnx_report.params.count == torch_report.params.count
    assert onnx_report.params.bytes == torch_report.params.bytes
    # the elementwise work too (the 'all' convention): exactly for the CNNs; for attention
    # models the exporter builds masks and splits heads with other ops than the fused kernel
    for convention in ("all", "exact"):
        ours, theirs = onnx_report.flops_in(convention), torch_report.flops_in(convention)
        if name in ("resnet18", "mobilenet_v3_small"):
            assert ours == theirs
        else:
            assert abs(ours - theirs) <= 1e-3 * theirs


def test_module_tree_from_exporter_scopes(exported):
    torch_report, path = exported("resnet18")
    r = flopmeter.count_onnx(path)
    conv = r.module("layer1.0.conv1")
    assert conv.type == "Conv2d"
    assert conv.total.macs == 1 * 64 * 56 * 56 * 64 * 3 * 3        # N·C_out·H·W·C_in·K·K
    assert conv.params_total == 64 * 64 * 3 * 3
    for path_ in ("layer1", "layer2.0.downsample", "fc"):
        assert r.module(path_).total.macs == torch_report.module(path_).total.macs
        assert r.module(path_).params_total == torch_report.module(path_).params_total
    assert r.module("layer1.0").outputs[0].shape == (1, 64, 56, 56)
    # every node's cost lands in the tree: the root total is the sum over ops
    assert sum(row.cost.macs for row in r.ops) == r.macs


def test_default_optimized_export(tmp_path):
    """torch.onnx.export's default optimizer folds each BatchNorm into the conv before it
    (and drops a bias that folds to zero): same MACs, BatchNorm parameters gone, and the
    fused conv filed under the module that owns its weight."""
    import warnings
    tv = pytest.importorskip("torchvision")
    model, x = tv.models.resnet18().eval(), torch.randn(1, 3, 224, 224)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(tmp_path / "r18.onnx"), dynamo=True)
    r, expected = flopmeter.count_onnx(tmp_path / "r18.onnx"), flopmeter.count(model, x)
    bn_params = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters())
    assert r.macs == expected.macs
    assert r.params.count == expected.params.count - bn_params
    assert r.module("layer1.0.conv1").total.macs == 1 * 64 * 56 * 56 * 64 * 3 * 3
    assert r.module("layer1.0.conv1").params_total == 64 * 64 * 3 * 3


def test_torchscript_exporter_node_names(tmp_path):
    """The TorchScript exporter (dynamo=False) names nodes /layer1/layer1.0/conv1/Conv and
    stores identical tensors once; BatchNorm tensors are randomised so none are identical."""
    import warnings
    tv = pytest.importorskip("torchvision")
    model = tv.models.resnet18().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for t in (m.weight, m.bias, m.running_mean, m.running_var):
                    t.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 224, 224)
    path = tmp_path / "r18.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, do_constant_folding=False,
                          training=torch.onnx.TrainingMode.PRESERVE)
    r, expected = flopmeter.count_onnx(path), flopmeter.count(model, x)
    assert (r.macs, r.params.count) == (expected.macs, expected.params.count)
    assert r.buffers.count == expected.buffers.count - 20       # num_batches_tracked (20 BatchNorms) is not exported
    assert r.module("layer1.0.conv1").total.macs == 1 * 64 * 56 * 56 * 64 * 3 * 3
    assert r.module("layer1.0.conv1").type == "Conv"           # no class names in this format: the op types
    assert r.module("layer4").params_total == expected.module("layer4").params_total


def test_external_data_is_never_read(exported):
    _, path = exported("resnet18")
    data = Path(path + ".data")
    assert data.exists()                          # the exporter wrote the weights beside the graph
    moved = data.with_suffix(".moved")
    data.rename(moved)
    try:
        assert flopmeter.count_onnx(path).macs == 1_814_073_344     # resnet18's published 1.814 GMACs
    finally:
        moved.rename(data)


# -- ONNX models that ship with the onnx package's backend tests ---------------------------------

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
SHIPPED = sorted(DATA.glob("*/*/model.onnx")) + sorted(DATA.glob("light/*.onnx"))


def test_shipped_models_are_there():
    assert len(SHIPPED) > 100, "the onnx wheel no longer ships its backend test models"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}"
                         if p.name == "model.onnx" else p.stem)
def test_shipped_model_counts_without_error(path):
    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    shapes = {i.name: tuple(d.dim_value if d.HasField("dim_value") else 1 for d in i.type.tensor_type.shape.dim)
              for i in model.graph.input if i.name not in inits}       # a symbolic dimension bound to 1
    report = flopmeter.count_onnx(model, shapes)
    assert report.macs >= 0 and report.params.count >= 0
    assert sum(row.cost.macs for row in report.ops) == report.macs


@pytest.mark.parametrize("case, macs", [
    ("pytorch-converted/test_Conv2d", 2 * 4 * 5 * 4 * 3 * 3 * 2),              # N·C_out·H·W·C_in·Kh·Kw
    ("pytorch-converted/test_Conv2d_depthwise_strided", 2 * 4 * 2 * 2 * 1 * 3 * 3),   # C_in/g = 1
    ("pytorch-converted/test_Conv1d_groups", 2 * 6 * 4 * (4 // 2) * 3),        # N·C_out·L·(C_in/g)·K
    ("pytorch-converted/test_ConvTranspose2d", 1 * 7 * 6 * 3 * 4 * 3 * 3),     # N·H_in·W_in·C_in·C_out·K·K
    ("pytorch-converted/test_Linear", 4 * 10 * 8),                              # N·I·O
    ("pytorch-operator/test_operator_mm", 2 * 3 * 4),                           # m·k·n
])
def test_shipped_models_closed_forms(case, macs):
    assert flopmeter.count_onnx(DATA / case / "model.onnx").macs == macs


@pytest.mark.parametrize("light, name", [("light_resnet50", "resnet50"), ("light_vgg19", "vgg19")])
def test_shipped_zoo_models_match_torchvision(light, name):
    """The ONNX model zoo's ResNet-50 v1 and VGG-19 (shipped without weights) cost what
    torchvision's PyTorch models of the same architecture cost."""
    tv = pytest.importorskip("torchvision")
    from flopmeter.frontends.base import build_on_meta
    model = build_on_meta(lambda: tv.models.get_model(name, weights=None))
    report = flopmeter.count_onnx(DATA / "light" / f"{light}.onnx")
    assert report.unsupported == {}
    assert report.macs == flopmeter.count(model, input_shape=(1, 3, 224, 224)).macs


# -- small graphs with closed forms -----------------------------------------------------------------

def test_symbolic_batch_must_be_bound():
    model = graph([helper.make_node("Conv", ["x", "w"], ["y"], name="/conv/Conv")],
                  [("x", F, ["N", 3, 8, 8])], [("y", F, None)], [init("w", F, (4, 3, 3, 3))])
    with pytest.raises(InputError, match=r"x\[0\] \('N'\)"):
        flopmeter.count_onnx(model)
    assert flopmeter.count_onnx(model, batch=2).macs == 2 * 4 * 6 * 6 * 3 * 3 * 3
    assert flopmeter.count_onnx(model, {"x": (3, 3, 8, 8)}).macs == 3 * 4 * 6 * 6 * 3 * 3 * 3
    assert flopmeter.count_onnx(model, [(1, 3, 10, 10)]).macs == 1 * 4 * 8 * 8 * 3 * 3 * 3
    with pytest.raises(InputError, match="no input 'y'"):
        flopmeter.count_onnx(model, {"y": (1, 3, 8, 8)})


def test_shared_initializer_counts_once_and_names_make_a_tree():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="/enc/proj/MatMul"),
             helper.make_node("Relu", ["h"], ["r"], name="/enc/act/Relu"),
             helper.make_node("MatMul", ["r", "w"], ["y"], name="/dec/proj/MatMul")]
    model = graph(nodes, [("x", F, [2, 16])], [("y", F, None)], [init("w", F, (16, 16))])
    r = flopmeter.count_onnx(model)
    assert r.params.count == 16 * 16                          # one tensor, read twice
    assert r.macs == 2 * (2 * 16 * 16)
    assert r.module("enc.proj").total.macs == 2 * 16 * 16
    assert r.module("dec").total.macs == 2 * 16 * 16
    assert [c.path for c in r.root.children] == ["enc", "dec"]


def test_skipped_scopes_are_added_outermost_first():
    model = graph([helper.make_node("Relu", ["x"], ["y"], name="/a/a.b/a.b.c/Relu")],
                  [("x", F, [2, 3])], [("y", F, None)])
    (node,) = model.graph.node
    node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value="['', 'a.b.c', 'relu']")
    r = flopmeter.count_onnx(model)
    assert [m.path for m in r.modules()] == ["", "a", "a.b", "a.b.c"]
    assert r.module("a").total.elementwise == 2 * 3


def test_attention_and_einsum_closed_forms():
    b, h, lq, lk, e = 1, 2, 5, 7, 4
    att = graph([helper.make_node("Attention", ["q", "k", "v"], ["o"])],
                [("q", F, [b, h, lq, e]), ("k", F, [b, h, lk, e]), ("v", F, [b, h, lk, e])],
                [("o", F, None)], opset=23)
    assert flopmeter.count_onnx(att).macs == 2 * b * h * lq * lk * e         # scores and weighted sum
    causal = graph([helper.make_node("Attention", ["q", "k", "v"], ["o"], is_causal=1)],
                   [("q", F, [b, h, lq, e]), ("k", F, [b, h, lq, e]), ("v", F, [b, h, lq, e])],
                   [("o", F, None)], opset=23)
    assert flopmeter.count_onnx(causal).macs == 2 * b * h * lq * lq * e
    exact = flopmeter.count_onnx(causal, options=flopmeter.Options(causal="exact"))
    assert exact.macs == 2 * b * h * (lq * (lq + 1) // 2) * e              # only the L(L+1)/2 unmasked pairs
    ein = graph([helper.make_node("Einsum", ["a", "c"], ["o"], equation="bij,bjk->bik")],
                [("a", F, [2, 3, 4]), ("c", F, [2, 4, 5])], [("o", F, None)])
    assert flopmeter.count_onnx(ein).macs == 2 * 3 * 5 * 4                  # b·i·k·j


def test_onnxruntime_contrib_attention_closed_form():
    b, s, d, h = 2, 6, 16, 4
    model = graph([helper.make_node("Attention", ["x", "w", "bias"], ["y"], domain="com.microsoft", num_heads=h)],
                  [("x", F, [b, s, d])], [("y", F, [b, s, d])], [init("w", F, (d, 3 * d)), init("bias", F, (3 * d,))])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    r = flopmeter.count_onnx(model)
    assert r.macs == b * s * d * 3 * d + 2 * b * h * s * s * (d // h)    # packed q,k,v projection + core
    assert r.params.count == d * 3 * d + 3 * d


def test_report_from_onnx_recosts_and_serialises():
    model = graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1),
                   helper.make_node("Relu", ["y"], ["z"])],
                  [("x", F, [2, 8])], [("z", F, None)], [init("w", F, (4, 8)), init("b", F, (4,))])
    r = flopmeter.count_onnx(model)
    import json
    d = json.loads(r.to_json())
    assert d["totals"]["macs"] == 2 * 8 * 4 and d["params"]["count"] == 4 * 8 + 4
    assert r.flops_in("all") == 2 * (2 * 8 * 4) + 2 * 4 + 2 * 4       # 2·MACs + bias adds + ReLU
    assert r.recost(convention="exact").flops == 2 * 4 * (2 * 8) + 2 * 4   # N·O·2I with bias, + ReLU


def test_onnx_trace_saves_and_reloads(tmp_path):
    from flopmeter.trace.io import load_trace, save_trace
    model = graph([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="/enc/conv/Conv"),
                   helper.make_node("Softmax", ["y"], ["z"], name="/enc/Softmax")],
                  [("x", F, [1, 3, 8, 8])], [("z", F, None)], [init("w", F, (4, 3, 3, 3)), init("b", F, (4,))])
    r = flopmeter.count_onnx(model)
    again = flopmeter.report_from_trace(load_trace(save_trace(r.trace, tmp_path / "m.fmtrace")))
    assert (again.macs, again.params.count, again.flops_in("all")) == (r.macs, r.params.count, r.flops_in("all"))
    assert again.module("enc.conv").total.macs == 1 * 4 * 6 * 6 * 3 * 3 * 3


def test_lstm_matches_pytorch():
    seq, batch, inp, hid = 5, 3, 10, 20
    lstm = torch.nn.LSTM(inp, hid)
    expected = flopmeter.count(lstm, torch.randn(seq, batch, inp)).macs
    model = graph([helper.make_node("LSTM", ["x", "W", "R", "B"], ["y"], hidden_size=hid)],
                  [("x", F, [seq, batch, inp])], [("y", F, None)],
                  [init("W", F, (1, 4 * hid, inp)), init("R", F, (1, 4 * hid, hid)), init("B", F, (1, 8 * hid))])
    assert flopmeter.count_onnx(model).macs == expected == seq * batch * 4 * hid * (inp + hid)


def test_quantized_graph_integer_macs_and_real_sizes():
    m, k, n = 4, 16, 8
    nodes = [helper.make_node("MatMulInteger", ["a", "wq"], ["y"], name="/mm/MatMulInteger"),
             helper.make_node("DequantizeLinear", ["w4", "s4"], ["w4f"], name="/dq/DequantizeLinear"),
             helper.make_node("MatMul", ["xf", "w4f"], ["z"], name="/fp/MatMul"),
             helper.make_node("MatMul", ["xf", "wh"], ["u"], name="/half/MatMul")]
    model = graph(nodes, [("a", I8, [m, k]), ("xf", F, [m, k])], [("y", TensorProto.INT32, None), ("z", F, None),
                                                                 ("u", F, None)],
                  [init("wq", I8, (k, n)), init("w4", I4, (k, n)), init("s4", F, ()), init("wh", F, (k, n))])
    r = flopmeter.count_onnx(model)
    assert r.macs == 3 * m * k * n
    assert r.trace.extra["integer_macs"] == m * k * n                # MatMulInteger's only
    assert "integer" in r.trace.extra["notes"][0]
    from flopmeter.render.text import to_markdown
    assert f"**note**: {m * k * n:,} of the {3 * m * k * n:,} MACs are integer" in to_markdown(r)
    assert r.params.count == 3 * k * n                              # the scalar scale is a buffer
    assert r.params.bytes_by_dtype["int8"] == k * n + k * n // 2     # int8 (1 byte) + packed int4 (½ byte)
    assert r.params.bytes_by_dtype["float32"] == 4 * k * n


def test_float16_initializers_by_real_size():
    model = graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
                  [("x", F16, [2, 8])], [("y", F16, None)], [init("w", F16, (4, 8)), init("b", F16, (4,))])
    r = flopmeter.count_onnx(model)
    assert r.params.count == 4 * 8 + 4 and r.params.bytes == 2 * (4 * 8 + 4)
    assert r.macs == 2 * 8 * 4


def test_qlinearconv_integer_macs():
    nodes = [helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])]
    model = graph(nodes, [("x", U8, [1, 3, 8, 8])], [("y", U8, None)],
                  [init("xs", F, ()), init("xz", U8, ()), init("w", U8, (4, 3, 3, 3)), init("ws", F, ()),
                   init("wz", U8, ()), init("ys", F, ()), init("yz", U8, ())])
    r = flopmeter.count_onnx(model)
    assert r.macs == r.trace.extra["integer_macs"] == 1 * 4 * 6 * 6 * 3 * 3 * 3
    assert r.params.count == 4 * 3 * 3 * 3


def test_unsupported_ops_are_listed_never_zero():
    nodes = [helper.make_node("Foo", ["x"], ["y"], domain="com.example"),
             helper.make_node("NonMaxSuppression", ["y", "s"], ["z"])]
    model = graph(nodes, [("x", F, [1, 4, 4]), ("s", F, [1, 1, 4])], [("z", I64, None)])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    r = flopmeter.count_onnx(model)
    assert set(r.unsupported) == {"onnx.com.example.Foo[shape unknown]", "onnx.NonMaxSuppression[shape unknown]"}
    with pytest.raises(flopmeter.UnsupportedOpsError):
        flopmeter.count_onnx(model, options=flopmeter.Options(strict=True))


# -- the command line ---------------------------------------------------------------------------------

def test_cli_onnx_file(tmp_path, capsys):
    model = graph([helper.make_node("Conv", ["x", "w"], ["y"], name="/features/features.0/Conv")],
                  [("x", F, ["batch", 3, 8, 8])], [("y", F, None)], [init("w", F, (4, 3, 3, 3))])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert main([str(path), "--batch", "2", "--format", "json"]) == 0
    import json
    d = json.loads(capsys.readouterr().out)
    assert d["totals"]["macs"] == 2 * 4 * 6 * 6 * 3 * 3 * 3
    assert d["modules"]["children"][0]["path"] == "features"
    assert main([str(path), "--input", "x=1x3x10x10", "--format", "csv", "--depth", "-1"]) == 0
    import csv
    import io
    rows = {r["path"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    conv = rows["features.0"]
    assert (conv["type"], conv["output"]) == ("Conv", "1×4×8×8")
    assert (int(conv["params"]), int(conv["MACs"])) == (4 * 3 * 3 * 3, 1 * 4 * 8 * 8 * 3 * 3 * 3)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: unbound input dimension(s): x[0] ('batch')") and err[1].startswith("hint:")
    assert main(["explain", str(path), "features.0"]) == 2
    assert capsys.readouterr().err.startswith("error: explain needs a PyTorch module")
