"""No option is silently ignored: every input option × every kind of SPEC either takes effect
(visible in the JSON report) or is refused with one error line that names the option and why.

Also: a model in training mode is refused (not switched to eval behind the user's back), hf:
specs default to the config's torch_dtype, --mode real refuses a model larger than the free
memory before allocating it, and the small CLI manners (subcommand typos, hf: listings, hub ids,
shell completion)."""

import contextlib
import io
import json
import warnings
from pathlib import Path

import pytest
import torch

from flopmeter.cli import main
from flopmeter.trace import training

DATA = Path(__file__).parent / "data"
TINY_MACS = 1 * 8 * 16 * 16 * 3 * 3 * 3 + 1 * 512 * 10      # conv N·C_out·H·W·C_in·K·K + linear N·in·out
HF_TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 100, "hidden_size": 64,
           "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "max_position_embeddings": 256, "torch_dtype": "bfloat16"}
# hf_tiny params: embed V·d + lm_head d·V + per layer (q, o: d·d; k, v: d·(d/2) with 2 of 4 heads; MLP 3·d·ff;
# 2 norms of d) + final norm d
HF_TINY_PARAMS = 2 * 100 * 64 + 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64) + 64


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    """SPEC kind → (spec, arguments it always needs)."""
    from tiny_model import Tiny
    tmp = tmp_path_factory.mktemp("specs")
    model = Tiny().eval()
    batch = torch.export.Dim("batch", min=1, max=64)      # exported at batch 3 (1 would be specialised)
    program = torch.export.export(model, (torch.randn(3, 3, 16, 16),), dynamic_shapes=({0: batch},))
    torch.export.save(program, tmp / "m.pt2")
    torch.jit.script(model).save(str(tmp / "m.ts"))
    torch.save(model, tmp / "whole.pt")
    assert main([f"{DATA / 'tiny_model.py'}:build", "--save-trace", str(tmp / "run.fmtrace"), "--format", "json"]) == 0
    with warnings.catch_warnings():                       # the exporter's own progress lines
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()):
            torch.onnx.export(model, (torch.randn(3, 3, 16, 16),), str(tmp / "m.onnx"), dynamo=True, optimize=False,
                              dynamic_shapes=({0: batch},), external_data=False)
    (tmp / "hf").mkdir()
    (tmp / "hf" / "config.json").write_text(json.dumps(HF_TINY))
    _checkpoints(tmp, model)
    return {
        "torchvision": ("torchvision:squeezenet1_1", []),
        "timm": ("timm:test_resnet", []),
        "hf": (f"hf:{tmp / 'hf'}", []),
        "file_with_inputs": (f"{DATA / 'tiny_model.py'}:build", []),
        "file_without_inputs": (f"{DATA / 'tiny_model.py'}:bare", ["--input", "1x3x16x16"]),
        "pt2": (str(tmp / "m.pt2"), []),
        "torchscript": (str(tmp / "m.ts"), ["--input", "1x3x16x16", "--trust-pickle"]),
        "pickled": (str(tmp / "whole.pt"), ["--input", "1x3x16x16", "--trust-pickle"]),
        "trace": (str(tmp / "run.fmtrace"), []),
        "onnx": (str(tmp / "m.onnx"), ["--batch", "1"]),         # its batch dimension is symbolic
        "checkpoint": (str(tmp / "ckpt" / "m.safetensors"), []),
        "gguf": (str(tmp / "ckpt" / "m.gguf"), []),
        "checkpoint_dir": (str(tmp / "hfck"), []),
    }


def _checkpoints(tmp, model):
    """Tiny's weights as a safetensors file and a GGUF file (headers alone: nothing to run), and
    a folder with HF_TINY's config.json beside a checkpoint of its shapes (counted from the config)."""
    import gguf
    import transformers
    from safetensors.torch import save_file
    (tmp / "ckpt").mkdir()
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if v.is_floating_point()}
    save_file(state, tmp / "ckpt" / "m.safetensors")
    writer = gguf.GGUFWriter(str(tmp / "ckpt" / "m.gguf"), "tiny")
    for name, t in state.items():
        writer.add_tensor(name, t.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    (tmp / "hfck").mkdir()
    (tmp / "hfck" / "config.json").write_text(json.dumps(HF_TINY))
    with torch.device("meta"):
        llama = transformers.LlamaForCausalLM(transformers.AutoConfig.for_model(**HF_TINY))
    save_file({k: torch.zeros(v.shape, dtype=torch.bfloat16) for k, v in llama.state_dict().items()},
              tmp / "hfck" / "model.safetensors")


KINDS = ["torchvision", "timm", "hf", "file_with_inputs", "file_without_inputs", "pt2", "torchscript", "pickled",
         "trace", "onnx", "checkpoint", "gguf", "checkpoint_dir"]
HF_KINDS = {"hf", "checkpoint_dir"}          # a folder with config.json is built from the config as hf: is
HEADERS = {"checkpoint": "m.safetensors", "gguf": "m.gguf"}      # read by their headers alone: nothing runs


def header_refuses(option: str) -> dict:
    """A checkpoint header refuses an option that shapes or runs a computation, in words of its own."""
    return {kind: f"{option} does not apply to {name}" for kind, name in HEADERS.items()}


HEADER_RUNS_NOTHING = {kind: f"{name} is a checkpoint: its header holds tensors, no computation"
                       for kind, name in HEADERS.items()}
FIXED = "cannot change a saved trace"        # a saved trace records one run: input and run options are refused
IMAGE_KINDS = {"torchvision", "timm"}
TINY_KINDS = {"file_with_inputs", "file_without_inputs", "pt2", "torchscript", "pickled", "onnx"}


def onnx_refuses(option: str) -> str:
    """An ONNX graph refuses a run option in words of its own."""
    return f"{option} does not apply to m.onnx"


ONNX_TRAINING = "an ONNX graph has no backward or training step"


def first_input(d):
    return d["inputs"][0]


def input_for(kind):
    return {"hf": "2x16", "checkpoint_dir": "2x16"}.get(kind, "1x3x64x64" if kind in IMAGE_KINDS else "2x3x16x16")


def check_input(kind, d):
    assert first_input(d)["shape"] == [int(s) for s in input_for(kind).split("x")]
    if kind in TINY_KINDS:
        assert d["totals"]["macs"] == 2 * TINY_MACS                  # batch 2: twice the MACs


def check_batch(kind, d):
    assert first_input(d)["shape"][0] == 2
    if kind in TINY_KINDS:
        assert d["totals"]["macs"] == 2 * TINY_MACS


def check_dtype(kind, d):
    assert set(d["params"]["bytes_by_dtype"]) == {"float16"}
    if kind != "hf":                                                  # token ids stay int64
        assert first_input(d)["dtype"] == "float16"


# option → (arguments, {kind: "refused: <text in the error>"}; every other kind: the check takes effect)
OPTIONS = {
    "input": (lambda kind: ["--input", input_for(kind)], {"trace": FIXED, **header_refuses("--input")}, check_input),
    "batch": (lambda kind: ["--batch", "2"], {"trace": FIXED, **header_refuses("--batch")}, check_batch),
    "seq-len": (lambda kind: ["--seq-len", "16"],
                {**{k: "--seq-len applies to hf: text models only" for k in KINDS if k not in HF_KINDS}, "trace": FIXED,
                 "onnx": onnx_refuses("--seq-len"), **header_refuses("--seq-len")},
                lambda kind, d: first_input(d)["shape"] == [1, 16]),
    "dtype": (lambda kind: ["--dtype", "float16"], {"pt2": "--dtype cannot change m.pt2", "trace": FIXED,
                                                     "onnx": onnx_refuses("--dtype"), **header_refuses("--dtype"),
                                                     "checkpoint_dir": "--dtype does not apply to hfck"}, check_dtype),
    "device-cuda": (lambda kind: ["--device", "cuda"],
                    {"trace": FIXED, "onnx": onnx_refuses("--device"), **header_refuses("--device"),
                     **({} if torch.cuda.is_available() else {"torchscript": "torch sees no GPU"})},
                    lambda kind, d: d["device"].startswith("cuda")),
    "device-cuda-named": (lambda kind: ["--device", "cuda:a100"],
                          {"trace": FIXED, "onnx": onnx_refuses("--device"), **header_refuses("--device"),
                           "torchscript": "names a GPU to count as" if torch.cuda.is_available() else "torch sees no GPU"},
                          lambda kind, d: d["device"] == "cuda" and d["kernels"]["target"]["name"] == "A100 80GB"),
    "device-meta": (lambda kind: ["--device", "meta"],
                    {**{k: "--device meta" for k in KINDS}, "trace": FIXED, "onnx": onnx_refuses("--device"),
                     **header_refuses("--device")}, None),
    "mode-real": (lambda kind: ["--mode", "real"], {"trace": FIXED, "onnx": onnx_refuses("--mode"),
                                                    **header_refuses("--mode")},
                  lambda kind, d: d["mode"] == "real"),
    "mode-fake": (lambda kind: ["--mode", "fake"],
                  {"torchscript": "runs only in real mode", "trace": FIXED, "onnx": onnx_refuses("--mode"),
                   **header_refuses("--mode")},
                  lambda kind, d: d["mode"] == "fake"),
    "force-alone": (lambda kind: ["--force"],
                    {**{k: "--force only matters in real mode" for k in KINDS}, "trace": FIXED,
                     "onnx": onnx_refuses("--force"), **header_refuses("--force")}, None),
    "force-real": (lambda kind: ["--mode", "real", "--force"], {"trace": FIXED, "onnx": onnx_refuses("--mode"),
                                                                **header_refuses("--mode")},
                   lambda kind, d: d["mode"] == "real"),
    "trust-pickle": (lambda kind: ["--trust-pickle"],
                     {**{k: "--trust-pickle applies to saved model files only" for k in KINDS},
                      "pt2": None, "torchscript": None,     # .pt2: pickled payloads allowed; TorchScript is code
                      "pickled": None, "trace": FIXED, "onnx": onnx_refuses("--trust-pickle"),
                      **header_refuses("--trust-pickle")},
                     lambda kind, d: d["totals"]["macs"] > 0 if kind == "pt2" else d["totals"]["macs"] == TINY_MACS),
    "convention": (lambda kind: ["--convention", "all"], header_refuses("--convention"),
                   lambda kind, d: d["convention"]["name"] == "all"
                   and d["totals"]["flops"] == d["totals"]["flops_by_convention"]["all"]),
    "causal": (lambda kind: ["--causal", "exact"], header_refuses("--causal"), lambda kind, d: d["causal"] == "exact"),
    "strict": (lambda kind: ["--strict"], header_refuses("--strict"), lambda kind, d: d["unsupported"] == {}),
    "train": (lambda kind: ["--train", "--optimizer", "sgd"],
              {"torchscript": "cannot be counted on a TorchScript module", "pt2": "cannot be put in train mode",
               "trace": FIXED, "onnx": ONNX_TRAINING, **header_refuses("--train")},
              lambda kind, d: d["totals_by_phase"]["backward"]["macs"] > 0 and d["training"]["optimizer"] == "sgd"),
    "autocast": (lambda kind: ["--train", "--autocast", "bf16"],
                 {"torchscript": "cannot be counted on a TorchScript module", "pt2": "cannot be put in train mode",
                  "trace": FIXED, "onnx": ONNX_TRAINING, **header_refuses("--train")},
                 lambda kind, d: d["training"]["autocast_copy_bytes"] > 0 or kind in HF_KINDS),
}


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.filterwarnings("ignore")
def test_every_option_takes_effect_or_is_refused(capsys, specs, kind, option):
    if option in ("train", "autocast") and not training.supported():
        pytest.skip("training counts need torch.autograd.graph.node_creation_hook (a newer PyTorch)")
    spec, needed = specs[kind]
    make_args, refused, check = OPTIONS[option]
    args = make_args(kind)
    if option == "input":
        needed = [a for a in needed if a != "--input" and "x" not in a]           # --input replaces theirs
        needed = [] if kind == "onnx" else needed                                  # and binds the batch
    if option == "trust-pickle":
        needed = [a for a in needed if a != "--trust-pickle"]
    code = main([spec, *needed, *args, "--format", "json"])
    out, err = capsys.readouterr()
    if refused.get(kind):
        lines = err.strip().splitlines()
        assert code == 2 and out == "", err
        error = [line for line in lines if line.startswith("error: ")]
        assert len(error) == 1 and refused[kind] in error[0], err
        assert "Traceback" not in err
    else:
        assert code == 0, err
        d = json.loads(out)
        assert check(kind, d) is not False


def test_pickled_model_needs_trust_pickle(capsys, specs):
    spec, _ = specs["pickled"]
    code = main([spec, "--input", "1x3x16x16"])
    assert code == 2 and "--trust-pickle" in capsys.readouterr().err


def test_batch_cannot_guess_between_disagreeing_inputs(capsys):
    code = main([f"{DATA / 'tiny_model.py'}:two_batches", "--batch", "4"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot tell the batch dimension" in err and "[2, 5]" in err


def test_a_factory_in_training_mode_is_refused_with_the_training_option(capsys):
    code = main([f"{DATA / 'tiny_model.py'}:in_training"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and "returned a model in training mode" in err[0]
    assert "model.eval()" in err[1] and "--train" in err[1]
    # with --train a model in training mode is what is asked for
    if not training.supported():
        return                            # training counts need a newer PyTorch (the refusal above still holds)
    assert main([f"{DATA / 'tiny_model.py'}:in_training", "--train", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["totals_by_phase"]["backward"]["macs"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--depth", "1", "--format", "json"], "JSON always holds the whole tree"),
    (["--depth", "1", "--view", "keras"], "the keras view has no depth"),
    (["--depth", "1", "--ops"], "the ops view has no depth"),
    (["--view", "keras", "--format", "json"], "--view keras has no JSON form"),
    (["--ops", "--format", "html"], "--view ops has no HTML form"),
])
def test_output_options_that_would_be_ignored_are_refused(capsys, argv, message):
    code = main([f"{DATA / 'tiny_model.py'}:build", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err.splitlines()[0]


def test_hf_uses_the_configs_torch_dtype_by_default(capsys, specs):
    spec, _ = specs["hf"]
    assert main([spec, "--seq-len", "8", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    d = json.loads(out)
    assert d["params"]["count"] == HF_TINY_PARAMS
    assert d["params"]["bytes_by_dtype"] == {"bfloat16": 2 * HF_TINY_PARAMS}     # 2 bytes a parameter
    assert "bfloat16, the config's torch_dtype" in err
    assert main([spec, "--seq-len", "8", "--depth", "0"]) == 0
    out = capsys.readouterr().out
    assert "in bfloat16)" in out.splitlines()[2]                                # the header's params line
    assert main([spec, "--seq-len", "8", "--dtype", "float32", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["params"]["bytes_by_dtype"] == {"float32": 4 * HF_TINY_PARAMS} and err == ""


def test_llama_7b_is_6_74b_params_in_13_5_gb_by_default(capsys):
    d_model, ff, layers, vocab = 4096, 11008, 32, 32000
    per_layer = 4 * d_model * d_model + 3 * d_model * ff + 2 * d_model      # q, k, v, o; gate, up, down; 2 norms
    params = 2 * vocab * d_model + layers * per_layer + d_model             # untied embed + lm_head; final norm
    assert main(["hf:llama-7b", "--seq-len", "4", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["params"]["count"] == params == 6_738_415_616
    assert d["params"]["bytes_by_dtype"] == {"float16": 2 * params}                  # 13.48 GB
    assert round(2 * params / 1e9, 1) == 13.5


def test_real_mode_refuses_a_model_larger_than_free_memory(capsys, monkeypatch):
    import time

    from flopmeter.cli import common
    monkeypatch.setattr(common, "free_memory", lambda: 8 * 10**9)
    rebuilt = []
    monkeypatch.setattr(common, "_analyse", _spy(common._analyse, rebuilt))
    start = time.perf_counter()
    code = main(["hf:llama-7b", "--mode", "real"])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert err[-2] == "error: hf:llama-7b needs at least 13.5 GB for its weights in real mode, and only 8 GB " \
                      "of memory is free"
    assert "--mode real --force" in err[-1]
    print(f"refused after {elapsed:.2f} s (building the model on the meta device included)")


def _spy(analyse, calls):
    def wrapped(resolved, *a, **kw):
        calls.append(resolved.name)
        return analyse(resolved, *a, **kw)
    return wrapped


def test_force_goes_ahead(capsys, monkeypatch, specs):
    from flopmeter.cli import common
    monkeypatch.setattr(common, "free_memory", lambda: 1000)            # less than any model's weights
    spec, _ = specs["hf"]
    code = main([spec, "--seq-len", "8", "--mode", "real"])
    assert code == 2 and "only 1 KB of memory is free" in capsys.readouterr().err
    code = main([spec, "--seq-len", "8", "--mode", "real", "--force", "--format", "json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["mode"] == "real"


@pytest.mark.parametrize("argv, error, hint", [
    (["compar", "a", "b"], "unknown command 'compar'", "did you mean 'flopmeter compare'?"),
    (["dif", "a.json", "b.json"], "unknown command 'dif'", "'flopmeter diff'"),
    (["explian", "x", "y"], "unknown command 'explian'", "'flopmeter explain'"),
    (["hf:"], "hf: needs a config", "hf:gpt2, hf:llama-70b, hf:llama-7b"),
    (["hf:meta-llama/Llama-2-7b-hf"], "looks like a Hugging Face Hub id; flopmeter never downloads configs",
     "config.json"),
    (["hf:gpt2", "--input", "1x3x224x224"], "--input for hf:gpt2 (a text model) is one BATCHxSEQ shape",
     "--input 1x128"),
])
def test_cli_manners(capsys, argv, error, hint):
    code = main(argv)
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 2
    assert err[0].startswith("error: ") and error in err[0]
    assert err[1].startswith("hint: ") and hint in err[1]


def test_hf_text_model_takes_input_as_batch_by_sequence(capsys):
    assert main(["hf:gpt2", "--input", "2x16", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["inputs"][0]["display"] == "int64[2, 16]"


@pytest.mark.parametrize("line, expected", [
    ("flopmeter comp", ["compare"]),
    ("flopmeter hf:", ["hf:bert-base-uncased", "hf:gpt2", "hf:llama-70b", "hf:llama-7b", "hf:mistral-7b", "hf:t5-small",
                       "hf:vit-base-patch16-224"]),
    ("flopmeter hf:gpt2 --format ", "RENDERERS"),
    ("flopmeter compare hf:gp", ["hf:gpt2"]),
    ("flopmeter diff a.json b.json --thr", ["--threshold"]),
])
def test_shell_completion(monkeypatch, line, expected):
    finders = pytest.importorskip("argcomplete.finders")
    from flopmeter.cli.completion import complete

    # argcomplete writes its debug output to file descriptor 9 (which pytest uses) unless told otherwise
    monkeypatch.setattr(finders.CompletionFinder, "_init_debug_stream",
                        lambda self: setattr(finders._io, "debug_stream", io.StringIO()))
    class Done(Exception):
        pass

    def stop(code):
        raise Done(code)
    for key, value in {"_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
                       "_ARGCOMPLETE_IFS": "\n", "COMP_TYPE": "9"}.items():
        monkeypatch.setenv(key, value)
    out = io.StringIO()
    with pytest.raises(Done):
        complete(output_stream=out, exit_method=stop)
    if expected == "RENDERERS":
        from flopmeter.render import RENDERERS
        expected = list(RENDERERS)
    assert [w.strip() for w in out.getvalue().split("\n")] == expected


@pytest.mark.parametrize("argv, check", [
    (["--seq-len", "16"], "--seq-len applies to hf: text models only, not to hf:vit-base-patch16-224 (a vision model)"),
    (["--input", "2x3x224x224"], lambda d: d["inputs"][0]["shape"] == [2, 3, 224, 224]),
    (["--batch", "3"], lambda d: d["inputs"][0]["shape"] == [3, 3, 224, 224]),
])
def test_hf_vision_model_options(capsys, argv, check):
    code = main(["hf:vit-base-patch16-224", *argv, "--format", "json"])
    out, err = capsys.readouterr()
    if isinstance(check, str):
        assert code == 2 and err.splitlines()[0] == f"error: {check}"
    else:
        assert code == 0 and check(json.loads(out))


def test_no_trailing_spaces_in_explain_keras_and_ops_views(capsys):
    spec = f"{DATA / 'tiny_model.py'}:build"
    for argv in (["explain", spec, "features.0"], [spec, "--view", "keras"], [spec, "--ops"],
                 [spec, "--ops", "--format", "md"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert out.strip() and [line for line in out.splitlines() if line != line.rstrip()] == [], argv


def test_strict_takes_effect_through_the_cli(capsys):
    spec = f"{DATA / 'tiny_model.py'}:unsupported"
    assert main([spec, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["unsupported"] == {"aten.kthvalue": 1}
    assert main([spec, "--strict"]) == 2
    assert capsys.readouterr().err.startswith("error: 1 unsupported op(s) ran: aten.kthvalue (×1)")


def test_memory_of_an_onnx_graph_comes_from_its_value_lifetimes(capsys, specs):
    spec, needed = specs["onnx"]
    assert main([spec, *needed, "--memory", "--fits", "1MB", "--format", "json"]) == 0
    mem = json.loads(capsys.readouterr().out)["memory"]
    weights = 4 * (8 * 3 * 3 * 3 + 8 + 2 * 8 + 512 * 10 + 10) + 4 * 2 * 8     # float32 params + running mean/var
    # each value is freed after its last consumer: at the BatchNorm its input (the conv's output) and its output live
    activations = 2 * 4 * (1 * 8 * 16 * 16)
    shapes = 2 * 8                            # the exporter's two int64 shape constants, alive until the flatten
    assert mem["total"] == weights + activations + shapes
    assert mem["fits"]["budget"] == 10**6 and mem["fits"]["fits"] is True


@pytest.mark.parametrize("argv, message", [
    (["--fits", "1MB", "--max-batch"], "--max-batch traces the PyTorch model again at other batch sizes; an ONNX file"),
    (["--context", "16"], "--context is the prompt length of an hf: decoder"),
    (["--generate", "4+4"], "--generate runs a Hugging Face decoder's prefill and decode steps"),
    (["--train"], "an ONNX graph has no backward or training step"),
    (["--dtype", "float16"], "--dtype does not apply to m.onnx: the graph fixes the dtype of every tensor"),
])
def test_onnx_refuses_what_a_graph_cannot_answer(capsys, specs, argv, message):
    spec, needed = specs["onnx"]
    code = main([spec, *needed, *argv])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 2 and message in err[0] and err[1].startswith("hint: "), err


@pytest.mark.parametrize("kind", ["onnx", "trace"])
def test_roofline_works_from_an_onnx_graph_or_a_saved_trace(capsys, specs, kind):
    from flopmeter.api import report_from_trace
    from flopmeter.devices import get_device
    from flopmeter.bench.roofline import roofline
    from flopmeter.frontends.onnx_file import count_onnx
    from flopmeter.trace.io import load_trace
    spec, needed = specs[kind]
    assert main(["roofline", spec, *needed, "--device-spec", "a100", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    report = count_onnx(spec, batch=1) if kind == "onnx" else report_from_trace(load_trace(spec))
    expected = roofline(report, get_device("a100"))
    assert d["predicted_s"] == expected.latency > 0
    assert {m["path"]: m["flops"] for m in d["modules"]} == {p: m.flops for p, m in expected.modules.items()}
    assert main(["roofline", spec, *needed, "--device-spec", "a100", "--dtype", "float16"]) == 2
    err = capsys.readouterr().err
    assert ("--dtype does not apply to m.onnx" if kind == "onnx" else FIXED) in err


def test_generate_answers_fits_and_max_batch_from_prefill_and_decode(capsys, specs):
    import flopmeter
    from flopmeter.frontends import resolve
    spec, _ = specs["hf"]
    prompt, new, budget = 8, 40, 3_000_000
    assert main([spec, "--generate", f"{prompt}+{new}", "--fits", str(budget), "--max-batch", "--format", "json"]) == 0
    mem = json.loads(capsys.readouterr().out)["memory"]
    # the prefill as generate() runs it (cache on, logits of the last position only), measured here
    model = resolve(spec).model                                   # the model the CLI builds, in bfloat16
    ids = torch.zeros(1, prompt, dtype=torch.long)
    measured = flopmeter.count(model, ids, kwargs={"use_cache": True, "logits_to_keep": 1},
                               options=flopmeter.Options(memory=True)).memory.total
    assert mem["prefill_peak"] == measured
    # the last decode step holds the weights and the KV cache at prompt + new positions:
    # 2 (K, V) × layers × kv heads × head dim × positions × 2 bytes (bfloat16)
    kv = 2 * 2 * 2 * (64 // 4) * (prompt + new) * 2
    assert mem["decode_peak"] >= 2 * HF_TINY_PARAMS + kv
    assert mem["total"] == max(mem["prefill_peak"], mem["decode_peak"])
    label = mem["fits"]["budget_label"]
    assert mem["fits"] == {"budget": budget, "budget_label": label, "total": mem["total"],
                           "fits": mem["total"] <= budget, "headroom": budget - mem["total"],
                           "budget_detail": {"bytes": budget, "label": label, "device": None, "total": None,
                                             "reserve": 0, "reserve_note": None}}     # a size: no reserve
    search = mem["largest"]["batch"]
    answer = search["answer"]
    traces = {t["x"]: t for t in search["traces"]}
    assert answer >= 1 and traces[answer]["fits"] and not traces[answer + 1]["fits"]
    assert traces[1]["bytes"] == mem["total"]                 # batch 1 is the generation above


@pytest.mark.parametrize("argv, message", [
    (["--input", "1x8"], "--generate makes its own token ids"),
    (["--seq-len", "8"], "--generate sets the prompt length"),
    (["--mode", "real"], "on fake tensors"),
    (["--device", "cuda"], "--device"),
    (["--ops"], "not a module view"),
    (["--depth", "1"], "not a module view"),
    (["--per-token"], "already shows FLOPs and bytes per token"),
    (["--save-trace", "x.fmtrace"], "makes several traces"),
    (["--max-batch"], "--max-batch needs a budget"),
])
def test_generate_refuses_the_options_it_would_ignore(capsys, specs, argv, message):
    spec, _ = specs["hf"]
    code = main([spec, "--generate", "4+4", *argv])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 2 and message in err[0] and err[1].startswith("hint: "), err


# -- every option of every subcommand ---------------------------------------------------------------

def subcommand_parsers() -> dict:
    """Subcommand → its argparse parser ("count" for ``flopmeter SPEC``), from the CLI's own table."""
    from flopmeter.cli import COMMANDS, command
    return {name: command(name)[0]() for name in COMMANDS}


def options_of(parser) -> set[str]:
    """The long (or only) flag of every optional argument of a parser."""
    out = set()
    for action in parser._actions:
        if action.option_strings:
            out.add(max(action.option_strings, key=len))
    return out


def changed(kind, out, base):
    return out != base


def generated(kind, d):
    return d["prefill"]["tokens"] == 4 and d["decode"]["tokens"] == 4


NOT_HF = [k for k in KINDS if k not in HF_KINDS]
NOT_DECODER = {k: "--generate runs a Hugging Face decoder's prefill and decode steps" for k in NOT_HF}
RETRACE = "--max-batch traces the PyTorch model again at other batch sizes"
# count's options beyond OPTIONS: flag → (arguments (kind, tmp), refused {kind: text}, check, format)
# a check of a text format gets (kind, output, the output without the option); of JSON (kind, dict)
COUNT_ROWS = {
    "--memory": (lambda kind, tmp: ["--memory"], header_refuses("--memory"), lambda kind, d: d["memory"]["total"] > 0,
                 "json"),
    "--weights": (lambda kind, tmp: ["--weights", "int8"], header_refuses("--weights"),
                  lambda kind, d: d["memory"]["weights"]["format"] == "int8", "json"),
    "--context": (lambda kind, tmp: ["--context", "16"],
                  {**{k: "--context is the prompt length of an hf: decoder" for k in NOT_HF}},
                  lambda kind, d: first_input(d)["shape"] == [1, 16] and d["memory"]["kv_cache"], "json"),
    "--fits": (lambda kind, tmp: ["--fits", "80GB"], header_refuses("--fits"), lambda kind, d: d["memory"]["fits"]["budget"] == 80 * 10**9,
               "json"),
    "--max-batch": (lambda kind, tmp: ["--fits", "80GB", "--max-batch"],
                    {"trace": RETRACE, "onnx": RETRACE, "torchscript": "runs only in real mode",
                     "pt2": "the model does not run at batch",            # exported with a batch of at most 64
                     **header_refuses("--fits")},
                    lambda kind, d: d["memory"]["largest"]["batch"]["answer"] > 1, "json"),
    "--generate": (lambda kind, tmp: ["--generate", "4+4"], NOT_DECODER, generated, "json"),
    "--view": (lambda kind, tmp: ["--view", "memory"], header_refuses("--view memory"),
               lambda kind, d: d["memory"]["timeline"], "json"),
    "--ops": (lambda kind, tmp: ["--ops"], header_refuses("--view ops"), lambda kind, d: len(d["ops"]) > 0, "json"),
    "--depth": (lambda kind, tmp: ["--depth", "0"], {},
                lambda kind, out, base: sum(line.startswith("|") for line in out.splitlines()) == 3 and out != base,
                "md"),
    "--save-trace": (lambda kind, tmp: ["--save-trace", str(tmp / f"{kind}.fmtrace")], header_refuses("--save-trace"),
                     lambda kind, d: d["totals"]["macs"] > 0, "json"),
    "--per-sample": (lambda kind, tmp: ["--per-sample"], header_refuses("--per-sample"), lambda kind, d: "per sample" in json.dumps(d), "json"),
    "--per-token": (lambda kind, tmp: ["--per-token"],
                    {**{k: "--per-token needs token-id inputs" for k in NOT_HF}, **header_refuses("--per-token")},
                    lambda kind, d: "per token" in json.dumps(d), "json"),
    "--format": (lambda kind, tmp: ["--format", "md"], {}, lambda kind, out, base: out.startswith("- **model**"),
                 None),
    "--output": (lambda kind, tmp: ["-o", str(tmp / f"{kind}.json")], {},
                 lambda kind, out, base: out == "" and json.loads((TMP[0] / f"{kind}.json").read_text()), None),
    "--raw": (lambda kind, tmp: ["--raw"], {}, changed, "md"),
    "--loss": (lambda kind, tmp: ["--train", "--loss", "cross-entropy"],
               {"torchscript": "cannot be counted on a TorchScript module", "pt2": "cannot be put in train mode",
                "trace": FIXED, "onnx": ONNX_TRAINING, **header_refuses("--train")},
               lambda kind, d: d["training"]["loss"] == "cross-entropy", "json"),
    "--optimizer": (lambda kind, tmp: ["--optimizer", "adam"],
                    {k: "--loss, --optimizer and --autocast describe a training step" for k in KINDS}
                    | {"trace": FIXED, "onnx": ONNX_TRAINING} | header_refuses("--optimizer"), None, "json"),
}
# the sizing switches: one target module per kind that LoRA can adapt (peft's default for an hf: decoder)
LORA_TARGET = {"hf": "", "torchvision": ":classifier.1", "timm": ":fc"}


def lora_args(kind):
    return ["--train", "--lora", "2" + ("" if kind in HF_KINDS else LORA_TARGET.get(kind, ":head"))]


NO_BLOCKS = "no gradient_checkpointing_enable() and no repeated blocks"
NO_LOGITS = "--logits chooses the positions a decoder's LM head runs for"
PT2_TRAIN = "an exported program cannot be put in train mode"
SCRIPT_TRAIN = "a training step cannot be counted on a TorchScript module"
COUNT_ROWS.update({
    "--reserve": (lambda kind, tmp: ["--fits", "H100", "--reserve", "1GiB"], header_refuses("--fits"),
                  lambda kind, d: d["memory"]["fits"]["budget_detail"]["reserve"] == 2**30
                  and d["memory"]["fits"]["budget"] == 80 * 2**30 - 2**30
                  and d["assumptions"]["reserve"]["value"] == 2**30, "json"),
    "--logits": (lambda kind, tmp: ["--logits", "last"],
                 {**{k: NO_LOGITS for k in NOT_HF}, "trace": FIXED, "onnx": onnx_refuses("--logits"),
                  **header_refuses("--logits")},
                 lambda kind, d: d["assumptions"]["logits"]["value"] == "last"
                 and d["modules"]["outputs"][0]["shape"][1] == 1, "json"),
    "--lora": (lambda kind, tmp: lora_args(kind),
               {"pt2": PT2_TRAIN, "torchscript": SCRIPT_TRAIN, "trace": FIXED, "onnx": ONNX_TRAINING,
                **header_refuses("--train")},
               lambda kind, d: d["assumptions"]["adapters"]["value"] == "lora" and d["params"]["frozen"] > 0, "json"),
    "--qlora": (lambda kind, tmp: [*lora_args(kind), "--qlora", "--memory"],
                {"pt2": PT2_TRAIN, "torchscript": SCRIPT_TRAIN, "trace": FIXED, "onnx": ONNX_TRAINING,
                 **header_refuses("--train")},
                lambda kind, d: d["memory"]["weights"]["format"] == "qlora-nf4"
                and d["assumptions"]["adapters"]["value"] == "qlora", "json"),
    "--checkpointing": (lambda kind, tmp: ["--train", "--checkpointing"],      # the hf: decoder's own method;
                        {**{k: NO_BLOCKS for k in NOT_HF}, "pt2": PT2_TRAIN,  # per block: test_sizing_switches.py
                         "torchscript": SCRIPT_TRAIN, "trace": FIXED, "onnx": ONNX_TRAINING,
                         **header_refuses("--train")},
                        lambda kind, d: d["totals_by_phase"]["recompute"]["macs"] > 0, "json"),
    "--master-weights": (lambda kind, tmp: ["--train", "--optimizer", "sgd",      # hf: configs are in bfloat16
                                            *([] if kind in HF_KINDS else ["--dtype", "bfloat16"]),
                                            "--master-weights", "fp32"],
                         {"pt2": "--dtype cannot change m.pt2", "torchscript": SCRIPT_TRAIN, "trace": FIXED,
                          "onnx": onnx_refuses("--dtype"), **header_refuses("--dtype")},
                         lambda kind, d: d["training"]["master_bytes"] == 2 * d["params"]["bytes_by_dtype"]["bfloat16"],
                         "json"),
})
TMP = []
# count's options that OPTIONS covers (with the arguments of its rows)
COVERED = {"--input", "--batch", "--seq-len", "--dtype", "--device", "--mode", "--force", "--trust-pickle",
           "--convention", "--causal", "--strict", "--train", "--autocast"}
# options whose effect does not depend on the SPEC, checked once in their own tests
SPEC_FREE = {"--help": "argparse's own", "--version": "test_version_needs_no_spec", "--debug": "test_debug_re_raises"}


def test_every_count_option_has_a_row():
    missing = options_of(subcommand_parsers()["count"]) - COVERED - set(COUNT_ROWS) - set(SPEC_FREE)
    assert not missing, f"options of 'flopmeter SPEC' with no row in the contract: {sorted(missing)}"


@pytest.mark.parametrize("option", list(COUNT_ROWS))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.filterwarnings("ignore")
def test_every_count_option_takes_effect_or_is_refused(capsys, specs, tmp_path_factory, kind, option):
    if option == "--loss" and not training.supported():
        pytest.skip("training counts need torch.autograd.graph.node_creation_hook (a newer PyTorch)")
    if not TMP:
        TMP.append(tmp_path_factory.mktemp("out"))
    spec, needed = specs[kind]
    make_args, refused, check, fmt = COUNT_ROWS[option]
    fmt_args = ["--format", fmt] if fmt else []
    code = main([spec, *needed, *make_args(kind, TMP[0]), *fmt_args])
    out, err = capsys.readouterr()
    if refused.get(kind):
        lines = err.strip().splitlines()
        assert code == 2 and out == "", err
        error = [line for line in lines if line.startswith("error: ")]
        assert len(error) == 1 and refused[kind] in error[0] and lines[-1].startswith("hint: "), err
        assert "Traceback" not in err
        return
    assert code == 0, err
    if fmt == "json":
        assert check(kind, json.loads(out)) not in (False, None, [], {}, 0)
    else:
        assert main([spec, *needed, *fmt_args]) == 0
        base = capsys.readouterr().out
        assert check(kind, out, base)
    if option == "--save-trace":
        assert (TMP[0] / f"{kind}.fmtrace").stat().st_size > 0


def test_version_needs_no_spec(capsys):
    from flopmeter import __version__
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"flopmeter {__version__}"


def test_debug_re_raises(specs):
    from flopmeter.errors import FlopmeterError
    spec, needed = specs["file_with_inputs"]
    assert main([spec, "--force"]) == 2                 # --force without --mode real: refused while running
    with pytest.raises(FlopmeterError):
        main([spec, "--force", "--debug"])


ROOF_NOT_DECODER = "--context sets the context of the decode estimate, which only hf: decoders get"
# roofline's own options: flag → (arguments (kind, tmp), refused {kind: text}, check, format)
ROOFLINE_ROWS = {
    "--device-spec": (lambda kind, tmp: [], {}, lambda kind, d: d["device"]["name"].startswith("A100")
                      and d["predicted_s"] > 0, "json"),
    "--tf32": (lambda kind, tmp: ["--tf32"], {}, lambda kind, d: d["tf32"] is True, "json"),
    "--no-conv-tf32": (lambda kind, tmp: ["--no-conv-tf32"], {}, lambda kind, d: d["conv_tf32"] is False, "json"),
    "--no-overhead": (lambda kind, tmp: ["--no-overhead"], {}, lambda kind, d: d["overhead"] is False, "json"),
    "--view": (lambda kind, tmp: ["--view", "ops"], {}, changed, "md"),
    "--depth": (lambda kind, tmp: ["--depth", "0"], {}, changed, "md"),
    "--top": (lambda kind, tmp: ["--view", "layers", "--top", "1"], {},
              lambda kind, out, base: sum(line.startswith("|") for line in out.splitlines()) <= 3 and out != base,
              "md"),                                     # at most the header, its rule and one row
    "--context": (lambda kind, tmp: ["--context", "32"], {k: ROOF_NOT_DECODER for k in NOT_HF},
                  lambda kind, d: d["decode"]["context"] == 32, "json"),
    "--format": (lambda kind, tmp: ["--format", "md"], {}, lambda kind, out, base: out.startswith("**model**"), None),
    "--output": (lambda kind, tmp: ["-o", str(tmp / f"roofline-{kind}.json")], {},
                 lambda kind, out, base: json.loads((TMP[0] / f"roofline-{kind}.json").read_text())["predicted_s"] > 0,
                 None),
    "--raw": (lambda kind, tmp: ["--raw"], {}, changed, "md"),
}
ROOFLINE_REFUSED_IN_JSON = {"--view": "--view shape the table; JSON always holds every module",
                            "--depth": "--depth shape the table", "--top": "--top shape the table"}
# roofline shares count's input options (add_input_options, through count_spec): their rows are OPTIONS'
SHARED_INPUT_OPTIONS = COVERED - {"--train", "--autocast"}


def test_every_roofline_option_has_a_row():
    missing = (options_of(subcommand_parsers()["roofline"]) - set(ROOFLINE_ROWS) - SHARED_INPUT_OPTIONS
               - set(SPEC_FREE) - {"--plot"})         # --plot: tests/test_roofline.py (needs matplotlib)
    assert not missing, f"options of 'flopmeter roofline' with no row in the contract: {sorted(missing)}"


@pytest.mark.parametrize("option", list(ROOFLINE_ROWS))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.filterwarnings("ignore")
def test_every_roofline_option_takes_effect_or_is_refused(capsys, specs, tmp_path_factory, kind, option):
    if not TMP:
        TMP.append(tmp_path_factory.mktemp("out"))
    spec, needed = specs[kind]
    make_args, refused, check, fmt = ROOFLINE_ROWS[option]
    refused = {**refused, **HEADER_RUNS_NOTHING}          # a checkpoint header: no computation to put on a roofline
    fmt_args = ["--format", fmt] if fmt else []
    base_argv = ["roofline", spec, *needed, "--device-spec", "a100"]
    code = main([*base_argv, *make_args(kind, TMP[0]), *fmt_args])
    out, err = capsys.readouterr()
    if refused.get(kind):
        lines = [line for line in err.strip().splitlines() if not line.startswith("note: ")]
        assert code == 2 and out == "" and len(lines) == 2, err
        assert refused[kind] in lines[0] and lines[1].startswith("hint: "), err
        return
    assert code == 0, err
    if fmt == "json":
        assert check(kind, json.loads(out))
    else:
        assert main([*base_argv, *fmt_args]) == 0
        assert check(kind, out, capsys.readouterr().out)
    if option in ROOFLINE_REFUSED_IN_JSON:                  # the table's options have no JSON form
        assert main([*base_argv, *make_args(kind, TMP[0]), "--format", "json"]) == 2
        assert ROOFLINE_REFUSED_IN_JSON[option] in capsys.readouterr().err


SHARED = "an input option shared with 'flopmeter SPEC' (count_spec): OPTIONS' rows; compare: test_compare_"
OUTPUT = "an output option: the file and format tests (test_output_files.py, test_cli.py)"
# the other subcommands: every option has a row saying where its contract is checked
ROWS = {
    "compare": {**dict.fromkeys(["--batch", "--causal", "--convention", "--device", "--dtype", "--force", "--input",
                                 "--mode", "--seq-len", "--strict", "--trust-pickle"], SHARED),
                **dict.fromkeys(["--format", "--output", "--raw", "--debug"], OUTPUT),
                "--per-sample": "COUNT_ROWS' --per-sample (the same per_unit)",
                "--per-token": "COUNT_ROWS' --per-token (the same per_unit)"},
    "explain": {**dict.fromkeys(["--batch", "--causal", "--convention", "--device", "--dtype", "--force", "--input",
                                 "--mode", "--seq-len", "--strict", "--trust-pickle"], SHARED),
                **dict.fromkeys(["--output", "--debug"], OUTPUT), "--version": "test_version_needs_no_spec",
                "--check": "tests/test_explain.py"},
    "scaling": {**dict.fromkeys(["--batch", "--causal", "--convention", "--device", "--dtype", "--force", "--input",
                                 "--mode", "--strict", "--trust-pickle"], SHARED),
                **dict.fromkeys(["--format", "--output", "--raw", "--debug"], OUTPUT),
                "--seq-len": "tests/test_scaling.py (a range here)", "--input-size": "tests/test_scaling.py",
                "--depth": "tests/test_scaling.py"},
    "diff": {**dict.fromkeys(["--format", "--output", "--raw", "--debug"], OUTPUT),
             "--by": "tests/test_cli.py diff", "--threshold": "tests/test_cli.py diff"},
    "bench": {**dict.fromkeys(["--format", "--output", "--raw", "--debug"], OUTPUT),
              **dict.fromkeys(["--batch", "--channels-last", "--convention", "--depth", "--device", "--dtype",
                               "--input-size", "--layer-iterations", "--layers", "--max-time", "--min-time", "--plot",
                               "--roofline", "--seq-len", "--tf32", "--threads", "--top"],
                              "tests/test_bench_measure.py (timing runs the model)")},
    "sweep": {**dict.fromkeys(["--format", "--output", "--raw", "--debug"], OUTPUT),
              **dict.fromkeys(["--batch", "--channels-last", "--convention", "--device", "--dtype", "--input-size",
                               "--jobs", "--max-time", "--measure", "--min-time", "--models-file", "--no-progress",
                               "--resume", "--retry-failed", "--seq-len", "--task", "--threads"],
                              "tests/test_bench_sweep.py (patterns, not one SPEC)")},
    "calibrate": {**dict.fromkeys(["--format", "--output", "--raw", "--debug"], OUTPUT),
                  **dict.fromkeys(["--clock", "--device", "--dtypes", "--min-run-time", "--threads"],
                                  "tests/test_bench_measure.py (no SPEC: measures the machine)")},
    "devices": {**dict.fromkeys(["--format", "--output", "--raw", "--debug"], OUTPUT)},
    "serve": {"--device": "tests/test_serve.py (every test; A10G refused: test_bad_input_is_one_error_line_and_a_hint)",
              "--prompt": "tests/test_serve.py (the KV read, TTFT and the refusals)",
              "--output": "tests/test_serve.py (the output length: test_bad_input_is_one_error_line_and_a_hint)",
              "--tp": "tests/test_serve.py test_tensor_parallelism_halves_weights_and_kv_per_rank",
              "--reserve": "tests/test_serve.py test_cli_json_is_the_library_answer",
              "--max-num-batched-tokens": "tests/test_serve.py test_cli_json_is_the_library_answer",
              "--max-num-seqs": "tests/test_serve.py test_cli_json_is_the_library_answer",
              **dict.fromkeys(["--gpu-memory-utilization", "--block-size", "--kv-dtype"],
                              "tests/test_serve.py test_cli_defaults_and_options_reach_the_library"),
              "--weights": "tests/test_serve.py test_cli_defaults_and_options_reach_the_library (a format), "
                           "test_a_checkpoint_folder_serves_at_its_stored_bytes (a checkpoint)",
              "--plot": "tests/test_serve.py test_plot_and_html (needs matplotlib)",
              "--output-file": "tests/test_serve.py test_cli_defaults_and_options_reach_the_library (-o)",
              **dict.fromkeys(["--format", "--raw", "--debug"], OUTPUT)},
    "plan": {**dict.fromkeys(["--format", "--output", "--raw", "--debug"],
                             "tests/test_plan.py test_the_command_line_plans_a_hugging_face_config (json, md, csv)"),
             **dict.fromkeys(["--cluster", "--tp", "--dp", "--pp", "--fsdp", "--zero", "--sp", "--recompute", "--batch",
                              "--seq-len", "--dtype", "--compute-dtype", "--optimizer", "--network-bandwidth",
                              "--latency", "--reserve"],
                             "tests/test_plan.py test_the_command_line_plans_a_hugging_face_config (each in the JSON) "
                             "and test_the_command_line_refuses_bad_plans_with_one_error_and_a_hint"),
             **dict.fromkeys(["--search", "--top", "--batches"],
                             "tests/test_plan_search.py test_the_command_line_search_ranks_and_rejects (ranking, "
                             "--top's length, the refusals of --search with fixed degrees and of --batches alone)")},
}


def test_every_option_of_every_subcommand_has_a_row():
    parsers = subcommand_parsers()
    covered = {"count": COVERED | set(COUNT_ROWS), "roofline": set(ROOFLINE_ROWS) | SHARED_INPUT_OPTIONS | {"--plot"},
               **{name: set(rows) for name, rows in ROWS.items()}}
    assert set(parsers) == set(covered), "a subcommand without rows in the option contract"
    for name, parser in parsers.items():
        missing = options_of(parser) - covered[name] - set(SPEC_FREE)
        assert not missing, f"options of 'flopmeter {name}' with no row in the contract: {sorted(missing)}"


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("kind", ["file_with_inputs", "trace", "onnx"])
@pytest.mark.filterwarnings("ignore")
def test_compare_honours_or_refuses_the_shared_input_options_as_count_does(capsys, specs, kind, option):
    if option in ("train", "autocast"):
        return                                       # compare has no training options (no row to check)
    spec, needed = specs[kind]
    make_args, refused, _ = OPTIONS[option]
    if option == "input":
        needed = [a for a in needed if a != "--input" and "x" not in a and not (kind == "onnx")]
    if option == "trust-pickle":
        needed = [a for a in needed if a != "--trust-pickle"]
    code = main(["compare", spec, *needed, *make_args(kind), "--format", "json"])
    out, err = capsys.readouterr()
    if refused.get(kind):
        assert code == 2 and refused[kind] in err and "Traceback" not in err, err
    else:
        assert code == 0 and out.strip(), err
