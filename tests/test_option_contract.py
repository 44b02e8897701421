"""No option is silently ignored: every input option × every kind of SPEC either takes effect
(visible in the JSON report) or is refused with one error line that names the option and why.

Also: a model in training mode is refused (not switched to eval behind the user's back), hf:
specs default to the config's torch_dtype, --mode real refuses a model larger than the free
memory before allocating it, and the small CLI manners (subcommand typos, hf: listings, hub ids,
shell completion)."""

import io
import json
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
    (tmp / "hf").mkdir()
    (tmp / "hf" / "config.json").write_text(json.dumps(HF_TINY))
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
    }


KINDS = ["torchvision", "timm", "hf", "file_with_inputs", "file_without_inputs", "pt2", "torchscript", "pickled",
         "trace"]
FIXED = "cannot change a saved trace"        # a saved trace records one run: input and run options are refused
IMAGE_KINDS = {"torchvision", "timm"}
TINY_KINDS = {"file_with_inputs", "file_without_inputs", "pt2", "torchscript", "pickled"}


def first_input(d):
    return d["inputs"][0]


def input_for(kind):
    return {"hf": "2x16"}.get(kind, "1x3x64x64" if kind in IMAGE_KINDS else "2x3x16x16")


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
    "input": (lambda kind: ["--input", input_for(kind)], {"trace": FIXED}, check_input),
    "batch": (lambda kind: ["--batch", "2"], {"trace": FIXED}, check_batch),
    "seq-len": (lambda kind: ["--seq-len", "16"],
                {**{k: "--seq-len applies to hf: text models only" for k in KINDS if k != "hf"}, "trace": FIXED},
                lambda kind, d: first_input(d)["shape"] == [1, 16]),
    "dtype": (lambda kind: ["--dtype", "float16"], {"pt2": "--dtype cannot change m.pt2", "trace": FIXED}, check_dtype),
    "device-cuda": (lambda kind: ["--device", "cuda"],
                    {"trace": FIXED, **({} if torch.cuda.is_available() else {"torchscript": "torch sees no GPU"})},
                    lambda kind, d: d["device"].startswith("cuda")),
    "device-meta": (lambda kind: ["--device", "meta"], {**{k: "--device meta" for k in KINDS}, "trace": FIXED}, None),
    "mode-real": (lambda kind: ["--mode", "real"], {"trace": FIXED}, lambda kind, d: d["mode"] == "real"),
    "mode-fake": (lambda kind: ["--mode", "fake"], {"torchscript": "runs only in real mode", "trace": FIXED},
                  lambda kind, d: d["mode"] == "fake"),
    "force-alone": (lambda kind: ["--force"],
                    {**{k: "--force only matters in real mode" for k in KINDS}, "trace": FIXED}, None),
    "force-real": (lambda kind: ["--mode", "real", "--force"], {"trace": FIXED}, lambda kind, d: d["mode"] == "real"),
    "trust-pickle": (lambda kind: ["--trust-pickle"],
                     {**{k: "--trust-pickle applies to saved model files only" for k in KINDS},
                      "pt2": None, "torchscript": None,     # .pt2: pickled payloads allowed; TorchScript is code
                      "pickled": None, "trace": FIXED},
                     lambda kind, d: d["totals"]["macs"] > 0 if kind == "pt2" else d["totals"]["macs"] == TINY_MACS),
    "convention": (lambda kind: ["--convention", "all"], {},
                   lambda kind, d: d["convention"]["name"] == "all"
                   and d["totals"]["flops"] == d["totals"]["flops_by_convention"]["all"]),
    "causal": (lambda kind: ["--causal", "exact"], {}, lambda kind, d: d["causal"] == "exact"),
    "strict": (lambda kind: ["--strict"], {}, lambda kind, d: d["unsupported"] == {}),
    "train": (lambda kind: ["--train", "--optimizer", "sgd"],
              {"torchscript": "cannot be counted on a TorchScript module", "pt2": "cannot be put in train mode",
               "trace": FIXED},
              lambda kind, d: d["totals_by_phase"]["backward"]["macs"] > 0 and d["training"]["optimizer"] == "sgd"),
    "autocast": (lambda kind: ["--train", "--autocast", "bf16"],
                 {"torchscript": "cannot be counted on a TorchScript module", "pt2": "cannot be put in train mode",
                  "trace": FIXED},
                 lambda kind, d: d["training"]["autocast_copy_bytes"] > 0 or kind == "hf"),
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
