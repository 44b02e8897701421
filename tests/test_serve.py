"""flopmeter serve: serving sizing as vLLM does it, each number against its arithmetic.

The config (written below): a Llama-shaped decoder, vocabulary V = 128 (a multiple of 64, so
vLLM's vocabulary padding adds nothing), width d = 64, MLP width ff = 256, L = 2 layers, 4
attention heads of size 16 and 2 key/value heads, float16 (2 bytes a value). The H100 SXM row of
the device table: 80 GiB, 3,350 GB/s, 989.5 TFLOP/s fp16 dense, NVLink 450 GB/s per direction.
"""

import json

import pytest

import flopmeter
from flopmeter.cli import main

V, D, FF, LAYERS, HEADS, KV_HEADS, HEAD = 128, 64, 256, 2, 4, 2, 16
CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": V, "hidden_size": D,
          "intermediate_size": FF, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
          "num_key_value_heads": KV_HEADS, "max_position_embeddings": 512, "torch_dtype": "float16"}
H100_TOTAL = 80 * 2**30              # bytes
H100_BW = 3350e9                     # bytes/s
H100_FP16 = 989.5e12                 # FLOP/s
H100_LINK = 450e9                    # bytes/s per direction
P, N, T = 32, 32, 256                # prompt, output, max_num_batched_tokens
USABLE = 2 * 2**20                   # the budget of the tests: usable memory 2 MiB (reserve = total − 2 MiB)

# parameters: embedding and LM head V·d each; per layer q and o d·d, k and v d·(2 heads · 16), the MLP
# 3·d·ff, two norms of d; the final norm d
LAYER_PARAMS = 2 * D * D + 2 * D * KV_HEADS * HEAD + 3 * D * FF + 2 * D
PARAMS = 2 * V * D + LAYERS * LAYER_PARAMS + D
BUFFERS = 2 * (HEAD // 2) * 2         # the rotary inv_freq and original_inv_freq: head/2 values each, float16
WEIGHTS = 2 * PARAMS + BUFFERS
# the profile run's peak: the last layer's MLP at act(gate) · up, T tokens: act(gate), up and their product
# (T·ff each) with four T·d tensors alive (the embedding output, the layer's input, its residual, the MLP's
# input), the rotary cos and sin (T·head each) and the position ids (T int64); every size a multiple of 512
ACTIVATION = 3 * T * FF * 2 + 4 * T * D * 2 + 2 * T * HEAD * 2 + 8 * T
KV_PER_TOKEN = LAYERS * 2 * KV_HEADS * HEAD * 2            # K and V of every layer, float16


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    (folder / "config.json").write_text(json.dumps(CONFIG))
    return f"hf:{folder}"


def sized(spec, **kw):
    args = {"device": "H100", "prompt": P, "output": N, "max_num_batched_tokens": T, "max_num_seqs": 128,
            "reserve": H100_TOTAL - USABLE}
    return flopmeter.serve(spec, **{**args, **kw})


@pytest.fixture(scope="module")
def one(spec):
    return sized(spec)


@pytest.fixture(scope="module")
def two(spec):
    return sized(spec, tp=2)


def test_kv_tokens_and_blocks_come_from_the_budget(one):
    kv = one.kv
    assert one.weights.total == WEIGHTS == 2 * 139_584 + 32
    assert kv.activation_peak == ACTIVATION == 542_720
    assert one.activation_at.startswith(f"model.layers.{LAYERS - 1}.mlp")
    assert kv.per_token == KV_PER_TOKEN == 256
    budget = int(USABLE * 0.9 - WEIGHTS - ACTIVATION)          # usable × utilization − weights − activation peak
    assert kv.budget == budget == 1_065_516
    assert kv.tokens == budget // KV_PER_TOKEN == 4_162
    assert kv.blocks == budget // (KV_PER_TOKEN * 16) == 260    # ⌊budget / (bytes per token · block)⌋
    assert one.to_dict()["kv"]["paged_tokens"] == 260 * 16


def test_concurrency_is_the_blocks_a_request_needs_less_the_null_block(one, spec):
    kv = one.kv
    assert kv.blocks_per_request == -(-(P + N) // 16) == 4      # ⌈(P + N) / block⌉
    assert kv.by_kv == (260 - 1) // 4 == 64                     # block 0 is the null block
    assert kv.concurrency == min(64, 128) == 64
    assert [s.batch for s in one.steps] == [1, 2, 4, 8, 16, 32, 64]
    last = one.steps[-1]
    assert last.kv_used == 64 * 4 * 16 * KV_PER_TOKEN           # the blocks 64 requests hold
    assert last.kv_share == pytest.approx(64 * 4 / 260)
    capped = sized(spec, max_num_seqs=8)                         # max_num_seqs caps it
    assert capped.kv.concurrency == min((capped.kv.blocks - 1) // 4, 8) == 8


def test_tpot_at_batch_1_is_weights_and_kv_read_over_bandwidth(one):
    step = one.steps[0]
    weights_read = WEIGHTS - V * D * 2        # the input embedding is looked up (1 row), not read whole
    kv_read = 1 * (P + N / 2) * KV_PER_TOKEN  # the mean context of the decode steps P + 1 … P + N − 1
    assert step.memory_s == pytest.approx((weights_read + kv_read) / H100_BW, rel=1e-12)
    # decode FLOPs at position p: 2 · (linear MACs per layer · L + LM head d·V + attention 2 · heads · p · head · L)
    linear = LAYERS * (2 * D * D + 2 * D * KV_HEADS * HEAD + 3 * D * FF) + D * V
    flops = 2 * (linear + 2 * HEADS * (P + N / 2) * HEAD * LAYERS)
    assert step.flops == flops == 286_720
    assert step.compute_s == pytest.approx(flops / H100_FP16, rel=1e-12)
    assert step.bound == "memory" and step.tpot_s == step.memory_s
    assert step.tokens_per_s_per_gpu == pytest.approx(1 / step.tpot_s)


def test_ttft_is_the_prefill_on_the_roofline(one, spec):
    import torch

    from flopmeter.bench.roofline import roofline
    from flopmeter.frontends import InputRequest, resolve
    t = one.ttft
    # prefill of P tokens: linear layers 2 · P · MACs per layer · L, attention (causal counted in full)
    # 2 · 2 · heads · P · P · head · L, the LM head of the last position 2 · d · V
    flops = (2 * P * LAYERS * (2 * D * D + 2 * D * KV_HEADS * HEAD + 3 * D * FF)
             + 2 * 2 * HEADS * P * P * HEAD * LAYERS + 2 * D * V)
    assert t.flops == flops == 8_404_992
    assert t.compute_bound_s == pytest.approx(flops / H100_FP16, rel=1e-12)
    model = resolve(spec, InputRequest(seq_len=1)).model
    report = flopmeter.count(model, torch.zeros(1, P, dtype=torch.long), kwargs={"use_cache": True, "logits_to_keep": 1})
    assert t.ttft_s == t.roofline_s == pytest.approx(roofline(report, "H100").latency, rel=1e-12)
    assert t.roofline_s >= t.compute_bound_s


def test_tensor_parallelism_halves_weights_and_kv_per_rank(one, two):
    replicated = 2 * (LAYERS * 2 * D + D) + BUFFERS         # norms and buffers are on every rank
    assert two.weights.total == (WEIGHTS - replicated) // 2 + replicated
    assert two.kv.per_token == KV_PER_TOKEN // 2            # 2 key/value heads: one a rank
    # the MLP's three T·ff tensors are split; the T·d ones, rotary tables and position ids are not
    assert two.kv.activation_peak == ACTIVATION - 3 * T * (FF // 2) * 2
    assert two.steps[0].flops == one.steps[0].flops // 2
    # two all-reduces a layer of B·d float16 values; a ring moves 2·(tp − 1)/tp of them over NVLink
    step = two.steps[0]
    assert step.comm_s == pytest.approx(LAYERS * 2 * (2 * (2 - 1) / 2 * 1 * D * 2) / H100_LINK, rel=1e-12)
    assert step.tpot_s == pytest.approx(step.memory_s + step.comm_s)
    assert step.tokens_per_s_per_gpu == pytest.approx(1 / step.tpot_s / 2)
    assert two.ttft.comm_s == pytest.approx(LAYERS * 2 * (1 * P * D * 2) / H100_LINK, rel=1e-12)


def test_weights_from_bytes_by_name_and_in_a_format(spec):
    from flopmeter.analyses.serving_weights import rank_weights
    model = flopmeter.frontends.resolve(spec, flopmeter.frontends.InputRequest(seq_len=1)).model
    stored = {name: p.numel() * 2 for name, p in model.named_parameters()}
    # a GPTQ-style layer stores qweight and scales in place of its weight: they are its bytes
    q = stored.pop("model.layers.0.mlp.up_proj.weight")
    stored.update({"model.layers.0.mlp.up_proj.qweight": q // 4, "model.layers.0.mlp.up_proj.scales": 64})
    w = rank_weights(model, model, ("bytes", stored))
    assert w.total == WEIGHTS - q + q // 4 + 64
    int4 = rank_weights(model, model, ("format", "int4"))
    # int4: ≥2-D parameters packed two to a byte with an fp16 scale per 128 values along each row; norms and
    # buffers 16-bit
    packed = sum(r * (c // 2) + r * -(-c // 128) * 2 for r, c in [(V, D), (V, D)] + LAYERS * [
        (D, D), (KV_HEADS * HEAD, D), (KV_HEADS * HEAD, D), (D, D), (FF, D), (FF, D), (D, FF)])
    assert int4.total == packed + 2 * (LAYERS * 2 * D + D) + BUFFERS


def test_a_checkpoint_folder_serves_at_its_stored_bytes(tmp_path, capsys):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    import torch
    import transformers
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(CONFIG))
    with torch.device("meta"):
        names = transformers.LlamaForCausalLM(transformers.AutoConfig.for_model(**CONFIG)).state_dict()
    tensors = {n: torch.zeros(t.shape, dtype=torch.float16) for n, t in names.items()}
    up = "model.layers.1.mlp.up_proj"                                        # an FF × D weight stored in fp8
    tensors[f"{up}.weight"] = torch.zeros(FF, D, dtype=torch.float8_e4m3fn)
    tensors[f"{up}.weight_scale_inv"] = torch.zeros(FF // 32, D // 32)       # one f32 scale a 32 × 32 block
    safetensors_torch.save_file(tensors, folder / "model.safetensors")
    stored = WEIGHTS - FF * D * 2 + FF * D + (FF // 32) * (D // 32) * 4     # that weight: fp8 bytes and its scales
    base = ["--device", "H100", "--prompt", str(P), "--output", str(N), "--max-num-batched-tokens", str(T),
            "--format", "json"]
    assert main(["serve", str(folder), *base]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["weights_per_rank"]["total"] == stored and d["weights_per_rank"]["format"] == "checkpoint"
    assert d["kv"]["activation_peak"] == ACTIVATION                            # the config's model, in float16
    assert main(["serve", f"hf:{folder}", *base, "--weights", str(folder / "model.safetensors"), "--tp", "2"]) == 0
    d = json.loads(capsys.readouterr().out)
    replicated = 2 * (LAYERS * 2 * D + D) + BUFFERS
    assert d["weights_per_rank"]["total"] == (stored - replicated) // 2 + replicated
    assert main(["serve", str(folder), *base, "--weights", "int4"]) == 0      # a format replaces the stored bytes
    assert json.loads(capsys.readouterr().out)["weights_per_rank"]["format"] == "int4:128"


def test_vllm_defaults_by_device():
    from flopmeter.analyses.serving import batch_defaults
    from flopmeter.devices import get_device
    assert batch_defaults(get_device("H100"))[:2] == (8192, 1024)      # ≥ 70 GiB and not an A100
    assert batch_defaults(get_device("L4"))[:2] == (2048, 256)
    assert batch_defaults(get_device("A100"))[:2] == (2048, 256)       # an A100 keeps the smaller defaults


def test_the_model_given_is_left_as_it_was(spec):
    model = flopmeter.frontends.resolve(spec, flopmeter.frontends.InputRequest(seq_len=1)).model
    before = (model.training, sum(p.numel() for p in model.parameters()), model.config.num_attention_heads,
              dict(model.__dict__.get("_forward_hooks", {})))
    flopmeter.serve(model, device="H100", prompt=P, output=N, tp=2, max_num_batched_tokens=T, max_num_seqs=8)
    assert (model.training, sum(p.numel() for p in model.parameters()), model.config.num_attention_heads,
            dict(model.__dict__.get("_forward_hooks", {}))) == before


@pytest.mark.parametrize("argv, error, hint", [
    (["--tp", "3"], "--tp 3 does not divide the model's 4 attention heads", "--tp one of 1, 2, 4"),
    (["--prompt", "500", "--output", "20"], "reaches position 520, beyond this model's 512 positions", "within 512"),
    (["--device", "A10G"], "needs peak compute and bandwidth, and the device table has none for A10G",
     "flopmeter devices"),
    (["--reserve", str(H100_TOTAL - 300_000)], "do not fit", "--weights int4"),
    (["--reserve", str(H100_TOTAL - 900_000)], "leave no KV cache", "--max-num-batched-tokens"),
    (["--reserve", str(H100_TOTAL - 930_000)], "needs 4 KV blocks", "shorter requests"),
    (["--output", "1"], "--output needs 2 or more", "first token comes from the prefill"),
    (["--max-num-seqs", "512"], "is less than max_num_seqs (512)", "--max-num-batched-tokens"),
    (["--gpu-memory-utilization", "1.5"], "at most 1", "0.9"),
    (["--weights", "int3"], "unknown weight format 'int3'", "did you mean"),
])
def test_bad_input_is_one_error_line_and_a_hint(capsys, spec, argv, error, hint):
    base = {"--device": "H100", "--prompt": str(P), "--output": str(N), "--max-num-batched-tokens": str(T)}
    given = dict(zip(argv[::2], argv[1::2]))
    args = [x for k, v in {**base, **given}.items() for x in (k, v)]
    code = main(["serve", spec, *args])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 2, err
    assert lines[0].startswith("error: ") and error in lines[0], err
    assert lines[1].startswith("hint: ") and hint in lines[1], err


@pytest.mark.parametrize("spec_, error", [
    ("hf:bert-base-uncased", "serve sizes decoder language models"),
    ("hf:t5-small", "serve sizes decoder language models"),
])
def test_models_that_are_not_decoders_are_refused(capsys, spec_, error):
    assert main(["serve", spec_, "--device", "L4", "--prompt", "8", "--output", "8"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and error in err[0] and err[1].startswith("hint: ")


def test_cli_json_is_the_library_answer(capsys, spec, one):
    argv = ["serve", spec, "--device", "h100", "--prompt", str(P), "--output", str(N), "--max-num-batched-tokens",
            str(T), "--max-num-seqs", "128", "--reserve", str(H100_TOTAL - USABLE)]
    assert main([*argv, "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d == json.loads(json.dumps(one.to_dict()))
    assert d["kv"]["blocks"] == 260 and d["kv"]["max_concurrency"] == 64
    assert main([*argv, "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "**KV budget**: 1.07 MB = usable 2.1 MB × 0.9" in md and "| batch |" in md


def test_cli_defaults_and_options_reach_the_library(capsys, spec, tmp_path):
    argv = ["serve", spec, "--device", "L4", "--prompt", "16", "--output", "16", "--block-size", "32",
            "--kv-dtype", "fp8", "--gpu-memory-utilization", "0.5", "--weights", "int8", "--format", "json",
            "-o", str(tmp_path / "s.json")]
    assert main(argv) == 0 and capsys.readouterr().out == ""
    d = json.loads((tmp_path / "s.json").read_text())
    assert (d["max_num_batched_tokens"], d["max_num_seqs"]) == (2048, 256)      # vllm serve's on a 24 GB GPU
    assert d["kv"]["block_size"] == 32 and d["kv"]["gpu_memory_utilization"] == 0.5
    assert d["kv_dtype"] == "fp8" and d["kv"]["kv_bytes_per_token"] == KV_PER_TOKEN // 2    # 1 byte a value
    assert d["weights_per_rank"]["format"] == "int8"
    assert d["kv"]["usable"]["reserve"] == 2 * 2**30                            # the table's default reserve


def test_plot_and_html(capsys, spec, tmp_path):
    pytest.importorskip("matplotlib")
    argv = ["serve", spec, "--device", "H100", "--prompt", str(P), "--output", str(N), "--max-num-batched-tokens",
            str(T), "--max-num-seqs", "8"]
    assert main([*argv, "--plot", str(tmp_path / "serve.png"), "-o", str(tmp_path / "serve.html")]) == 0
    assert (tmp_path / "serve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "serve.html").read_text()
    assert "data:image/svg+xml;base64," in page and "Decode against batch" in page
    assert main([*argv, "--format", "csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0].startswith("batch,TPOT,") and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "4", "8"]
