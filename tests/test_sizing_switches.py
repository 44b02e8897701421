"""Sizing answers on shrunk Llama configs built here, against hand arithmetic: weights and KV
bytes, the largest batch from usable memory (total − reserve), pure-bf16 vs mixed-precision
AdamW bytes per parameter, LoRA's trainable parameters from the real peft model, QLoRA's nf4
base, checkpointing's saved-for-backward reduction, --logits; the user's model untouched."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter import Options
from flopmeter.cli import main
from flopmeter.trace import training

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

from flopmeter.analyses.assumptions import NAMES
from flopmeter.analyses.switches import Lora, prepare

needs_training = pytest.mark.skipif(not training.supported(), reason="needs torch.autograd.graph.node_creation_hook")

# the shrunk Llama: d model width, H heads of width hd, KV key/value heads, ff MLP width, L layers, V vocabulary
d, H, KV, ff, L, V = 64, 4, 2, 128, 2, 128
hd = d // H
CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": V, "hidden_size": d,
          "intermediate_size": ff, "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": KV,
          "max_position_embeddings": 256, "torch_dtype": "bfloat16"}
# parameters: embedding and untied head V·d each; per layer q, o (d·d), k, v (d·KV·hd), gate, up, down (d·ff),
# two RMSNorms (d); the final norm (d)
PARAMS = 2 * V * d + L * (2 * d * d + 2 * d * KV * hd + 3 * d * ff + 2 * d) + d
TENSORS = 2 + L * 9 + 1                      # parameter tensors: embed, head; 7 Linear + 2 norm weights a layer; norm


def llama(dtype=torch.bfloat16, device="meta"):
    cfg = transformers.LlamaConfig(**{k: v for k, v in CONFIG.items() if k not in ("model_type", "architectures",
                                                                                      "torch_dtype")},
                                   attn_implementation="sdpa")
    with torch.device(device):
        model = transformers.LlamaForCausalLM(cfg)
    return model.to(dtype).eval()


@pytest.fixture
def spec(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    return f"hf:{tmp_path}"


def run_json(capsys, *argv) -> dict:
    code = main([*argv, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def ids(b=2, s=12):
    return torch.zeros(b, s, dtype=torch.long)


# -- weights, KV cache, the largest batch ------------------------------------------------------

def test_bf16_weights_are_two_bytes_a_parameter_and_kv_per_token(capsys, spec):
    d_ = run_json(capsys, spec, "--seq-len", "16", "--memory")
    assert d_["params"]["count"] == PARAMS
    assert d_["memory"]["weights"]["params"] == 2 * PARAMS                  # bfloat16: 2 bytes a parameter
    # K and V, per layer, per KV head, head width, 2 bytes
    assert d_["memory"]["kv_cache"]["per_token"] == 2 * L * KV * hd * 2
    assert d_["memory"]["kv_cache"]["bytes"] == 16 * 2 * L * KV * hd * 2   # at the 16 tokens of the prefill


def _peak(batch, seq=32, keep_last=True, device="cpu"):
    """The predicted peak of one forward at ``batch``, counted here apart from the CLI's search
    (``device``: ``cuda:t4`` counts with a T4's kernels, as ``--fits T4`` does)."""
    kwargs = {"logits_to_keep": 1} if keep_last else {}
    r = flopmeter.count(llama(), ids(batch, seq).to("meta"), kwargs=kwargs, options=Options(memory=True, device=device))
    return r.memory.total


def test_max_batch_from_usable_memory_total_less_reserve(capsys, spec):
    reserve = 3 * 2**30
    d_ = run_json(capsys, spec, "--seq-len", "32", "--fits", "T4", "--reserve", "3GiB", "--max-batch")
    fits = d_["memory"]["fits"]
    usable = 16 * 2**30 - reserve                               # the T4's 16 GiB less the given reserve
    assert fits["budget"] == usable and fits["budget_detail"]["total"] == 16 * 2**30
    assert fits["budget_detail"]["reserve"] == reserve and d_["assumptions"]["reserve"]["value"] == reserve
    s = d_["memory"]["largest"]["batch"]
    # the answer is the largest batch whose peak (counted here apart from the search, with a T4's
    # kernels as --fits T4 counts) is within the usable memory; CUDA's allocator rounds each
    # storage to 512 B, so the peak is affine in the batch only up to that rounding
    answer = s["answer"]
    assert _peak(answer, device="cuda:t4") <= usable < _peak(answer + 1, device="cuda:t4")
    assert d_["assumptions"]["logits"]["value"] == "last"      # the default of a memory answer, stated


def test_a_reserve_needs_a_device_budget(capsys, spec):
    assert main([spec, "--reserve", "1GiB"]) == 2
    assert "--reserve is held back from the device's memory in --fits" in capsys.readouterr().err
    assert main([spec, "--fits", "24GB", "--reserve", "1GiB"]) == 2
    assert "a reserve applies to a device's memory" in capsys.readouterr().err


def test_logits_last_runs_the_head_for_one_position(capsys, spec):
    b, s = 2, 16
    last = run_json(capsys, spec, "--batch", str(b), "--seq-len", str(s), "--logits", "last")
    every = run_json(capsys, spec, "--batch", str(b), "--seq-len", str(s), "--logits", "all")
    assert last["modules"]["outputs"][0]["shape"] == [b, 1, V] and every["modules"]["outputs"][0]["shape"] == [b, s, V]
    # the LM head runs for b·(s − 1) fewer positions: d·V MACs each
    assert every["totals"]["macs"] - last["totals"]["macs"] == b * (s - 1) * d * V
    assert (last["assumptions"]["logits"]["value"], every["assumptions"]["logits"]["value"]) == ("last", "all")


# -- optimizer state and master weights -------------------------------------------------------

def _alive_at_end(report) -> dict[str, int]:
    """Bytes by role of the storages alive after the step's last op (from the trace's lifetimes)."""
    from flopmeter.memory.timeline import storage_roles
    trace = report.trace
    n = len(trace.events)
    roles = storage_roles(trace)
    out: dict[str, int] = {}
    for sid, st in trace.storages.items():
        if st.freed is None or st.freed >= n - 1:
            out[roles[sid]] = out.get(roles[sid], 0) + st.nbytes
    return out


@needs_training
@pytest.mark.parametrize("master", [None, "fp32"])
def test_adamw_bytes_per_parameter_pure_bf16_and_mixed(master):
    r = flopmeter.count(llama(), ids(), options=Options(training=True, optimizer="adamw", master_weights=master,
                                                         memory=True))
    t, P, T = r.training, PARAMS, TENSORS
    step_counts = 4 * T                          # AdamW keeps one float32 step count per parameter tensor
    assert t["grad_bytes"] == 2 * P              # backward's gradients are bfloat16, as the weights
    alive = _alive_at_end(r)
    assert alive["param"] == 2 * P
    if master is None:
        # pure bf16: 2 (weights) + 2 (gradients) + 2 + 2 (exp_avg, exp_avg_sq in bf16) = 8 bytes a parameter
        assert t["optimizer_state_bytes"] == 4 * P + step_counts
        assert alive["grad"] + alive["state"] == (2 + 4) * P + step_counts
        assert alive["param"] + alive["grad"] + alive["state"] == 8 * P + step_counts
        assert "master" not in alive
    else:
        # mixed: 2 (bf16 weights) + 4 (fp32 master) + 4 (fp32 gradients; each bf16 gradient is copied into one
        # and dropped) + 4 + 4 (fp32 exp_avg, exp_avg_sq) = 18 bytes a parameter at the step
        assert t["master_bytes"] == 4 * P and t["master_grad_bytes"] == 4 * P
        assert t["optimizer_state_bytes"] == 8 * P + step_counts
        assert t["optimizer_state_dtypes"] == {"float32": 8 * P + step_counts}
        assert alive["master"] == 4 * P and alive["grad"] == 4 * P
        assert sum(alive[k] for k in ("param", "master", "grad", "state")) == 18 * P + step_counts
    assert r.training["peak_bytes"] >= sum(alive.get(k, 0) for k in ("param", "master", "grad", "state"))
    said = r.assumptions["master_weights"]
    assert said.value == ("fp32" if master else "none") and ("pure 16-bit" in said.text) == (master is None)
    assert r.assumptions["optimizer"].value == ("adamw:float32" if master else "adamw:bfloat16")


@needs_training
def test_master_weights_refuse_float32_weights():
    with pytest.raises(flopmeter.OptionsError, match="float32 copy of 16-bit weights"):
        flopmeter.count(llama(torch.float32), ids(), options=Options(training=True, optimizer="adamw",
                                                                      master_weights="fp32"))


# -- LoRA and QLoRA -----------------------------------------------------------------------------

def _snapshot(model):
    return ([(n, p.requires_grad, p.dtype, p.device.type) for n, p in model.named_parameters()],
            [(n, type(m)) for n, m in model.named_modules()], model.training,
            [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()],
            hasattr(model, "peft_config"))


def test_lora_trainable_parameters_from_the_real_peft_model():
    model = llama()
    before = _snapshot(model)
    r = 8
    p = prepare(model, lora=Lora(r))
    # peft's default for Llama: q_proj (d → H·hd) and v_proj (d → KV·hd); LoRA adds A (r × d_in) and B (d_out × r)
    expected = L * (r * (d + H * hd) + r * (d + KV * hd))
    assert p.adapters.targets == ("q_proj", "v_proj") and p.adapters.layers == 2 * L
    assert p.adapters.trainable == expected
    assert sum(t.numel() for t in p.model.parameters() if t.requires_grad) == expected
    assert sum(t.numel() for t in p.model.parameters() if not t.requires_grad) == PARAMS     # the base, frozen
    every = prepare(model, lora=Lora(r, ("all-linear",)))
    per_layer = [(d, H * hd), (d, KV * hd), (d, KV * hd), (H * hd, d), (d, ff), (d, ff), (ff, d)]  # q k v o gate up down
    assert every.adapters.trainable == L * sum(r * (i + o) for i, o in per_layer)
    assert _snapshot(model) == before                             # the user's model is not changed


def test_lora_without_peft_names_the_extra(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "peft", None)             # as if peft were not installed
    with pytest.raises(flopmeter.errors.MissingDependencyError, match="'peft'") as raised:
        prepare(llama(), lora=Lora(4))
    assert raised.value.hint == "pip install 'flopmeter[lora]'"


@needs_training
def test_lora_cli_counts_the_adapters_and_says_so(capsys, spec):
    r = 4
    d_ = run_json(capsys, spec, "--seq-len", "16", "--train", "--optimizer", "adamw", "--lora", f"{r}:q_proj,v_proj")
    trainable = L * (r * (d + H * hd) + r * (d + KV * hd))
    assert d_["params"]["count"] == PARAMS + trainable and d_["params"]["frozen"] == PARAMS
    # peft keeps adapters in float32 on a 16-bit base: 4-byte gradients, two 4-byte AdamW states and one
    # step count per adapter tensor (A and B of each of the 2·L layers)
    assert d_["training"]["grad_bytes"] == 4 * trainable
    assert d_["training"]["optimizer_state_bytes"] == 8 * trainable + 4 * (2 * 2 * L)
    said = d_["assumptions"]["adapters"]
    assert said["value"] == "lora" and f"{trainable:,} trainable parameters in float32" in said["text"]


@needs_training
def test_qlora_base_linear_weights_in_nf4(capsys, spec):
    r = 4
    d_ = run_json(capsys, spec, "--seq-len", "16", "--train", "--optimizer", "adamw", "--lora", str(r), "--qlora",
                  "--memory")
    w = d_["memory"]["weights"]
    # nf4: per row ⌈in·4/8⌉ bytes and a float32 absmax per 64 values; every Linear but the head, 7 a layer
    linears = [(H * hd, d), (KV * hd, d), (KV * hd, d), (d, H * hd), (ff, d), (ff, d), (d, ff)]     # (out, in)
    nf4 = L * sum(o * math.ceil(i * 4 / 8) + o * math.ceil(i / 64) * 4 for o, i in linears)
    adapters = L * (r * (d + H * hd) + r * (d + KV * hd))
    stored = 2 * (2 * V * d + L * 2 * d + d) + 2 * adapters     # embed, head, norms and the adapters in bf16
    assert w["format"] == "qlora-nf4" and w["params"] == nf4 + stored and w["scales"] == \
        L * sum(o * math.ceil(i / 64) * 4 for o, i in linears)
    assert d_["training"]["grad_bytes"] == 2 * adapters              # QLoRA: adapters in the compute dtype
    assert d_["assumptions"]["adapters"]["value"] == "qlora"
    assert d_["memory"]["total"] == d_["memory"]["timeline"]["peak"]["bytes"] - 2 * PARAMS - 2 * adapters \
        - d_["memory"]["timeline"]["peak"]["by_role"].get("buffer", 0) + w["total"]


@pytest.mark.parametrize("argv, error", [
    (["--lora", "8"], "this describes a training step"),
    (["--train", "--qlora"], "--qlora quantises the base under LoRA adapters"),
    (["--train", "--lora", "x"], "cannot read the LoRA rank"),
    (["--train", "--lora", "8:nope"], "peft cannot add LoRA adapters"),
    (["--train", "--lora", "8", "--qlora", "--weights", "int4"], "--qlora puts the base Linear weights in nf4"),
    (["--train", "--master-weights", "fp32"], "there is no optimizer step"),
    (["--train", "--logits", "last"], "a training step's loss reads every position's logits"),
    (["--generate", "8+4", "--logits", "all"], "--generate's prefill keeps the last position's logits"),
    (["--generate", "8+4", "--lora", "8"], "these describe a training step, which --generate does not count"),
    (["--train", "--checkpointing", "--mode", "real"], "fake mode counts"),
])
def test_switches_that_cannot_apply_are_refused(capsys, spec, argv, error):
    code = main([spec, *([] if "--generate" in argv else ["--seq-len", "8"]), *argv])
    err = capsys.readouterr().err
    assert code == 2 and error in err.splitlines()[-2] and err.splitlines()[-1].startswith("hint: "), err


# -- checkpointing -----------------------------------------------------------------------------

def _real_saved(model, x) -> int:
    """Bytes of the unique storages a real forward (and the sum loss) saves for backward, parameters
    excluded: PyTorch's own saved-tensor hooks on a real CPU run, not flopmeter's trace."""
    from torch.autograd.graph import saved_tensors_hooks
    own = {t.untyped_storage().data_ptr() for t in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in own:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with saved_tensors_hooks(pack, lambda t: t):
        model(x).logits.sum()
    return sum(seen.values())


@needs_training
def test_checkpointing_saves_only_each_layers_input():
    b, s, e = 2, 12, 4                                     # float32: 4 bytes
    full = flopmeter.count(llama(torch.float32), ids(b, s), options=Options(training=True))
    p = prepare(llama(torch.float32), checkpointing=True)
    ckpt = flopmeter.count(p.model, ids(b, s), options=Options(training=True))
    assert p.checkpointing.how == "model" and "activation_checkpointing_enable" in p.checkpointing.where
    bs = b * s
    # what one Llama layer saves without checkpointing (elements): input_layernorm x, rstd, x·rstd (2·bs·d + bs);
    # the q/k/v input (bs·d); SDPA q, k, v, output and logsumexp (bs·H·hd + 2·bs·KV·hd + bs·H·hd + b·H·s);
    # post_attention_layernorm (2·bs·d + bs); the MLP input (bs·d); SiLU's input, both factors of the product and
    # down_proj's input (4·bs·ff)
    layer = (2 * bs * d + bs) + bs * d + (2 * bs * H * hd + 2 * bs * KV * hd + b * H * s) + (2 * bs * d + bs) \
        + bs * d + 4 * bs * ff
    kept = bs * d                                          # with checkpointing: the layer's input hidden states
    rotary = 2 * s * hd                                    # cos and sin (1, s, hd), saved by the rotary products
    # (with checkpointing they reach each layer as keyword arguments, held by the checkpoint, not saved)
    reduction = e * (L * (layer - kept) + rotary)
    assert full.training["saved_bytes"] - ckpt.training["saved_bytes"] == reduction
    # the same figures from real runs with PyTorch's own hooks
    real = llama(torch.float32, device="cpu").train()
    real_ckpt = copy.deepcopy(real)
    real_ckpt.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False}) \
        if not hasattr(real_ckpt, "activation_checkpointing_enable") else real_ckpt.activation_checkpointing_enable()
    x = ids(b, s)
    assert (full.training["saved_bytes"], ckpt.training["saved_bytes"]) == (_real_saved(real, x),
                                                                            _real_saved(real_ckpt, x))
    assert ckpt.by_phase["recompute"].macs > 0 and "recompute" not in full.by_phase
    assert ckpt.assumptions["checkpointing"].value == "traced"      # count() alone sees it in the trace


class Block(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.up, self.down = nn.Linear(w, 4 * w, bias=False), nn.Linear(4 * w, w, bias=False)

    def forward(self, x):
        return x + self.down(torch.relu(self.up(x)))


class Stack(nn.Module):
    def __init__(self, w=8, n=3):
        super().__init__()
        self.blocks = nn.ModuleList(Block(w) for _ in range(n))
        self.head = nn.Linear(w, 2, bias=False)

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return self.head(x)


@needs_training
def test_checkpointing_per_block_without_a_method_of_the_model():
    w, n, b = 8, 3, 5
    model = Stack(w, n)
    before = _snapshot(model)
    x = torch.randn(b, w)
    full = flopmeter.count(model, x, options=Options(training=True))
    p = prepare(model, checkpointing=True)
    ckpt = flopmeter.count(p.model, x, options=Options(training=True))
    assert p.checkpointing.how == "blocks" and p.checkpointing.blocks == n
    # a block saves its input (for up's weight gradient), relu's output (for relu and down): b·w + b·4w;
    # checkpointed it keeps only its input. The head saves the last block's output either way.
    assert full.training["saved_bytes"] - ckpt.training["saved_bytes"] == 4 * n * (b * 4 * w)
    # recompute: each block's forward again, up to PyTorch's early stop (down's output is not needed)
    assert ckpt.by_phase["recompute"].macs == n * b * w * 4 * w
    assert _snapshot(model) == before and "forward" not in model.blocks[0].__dict__


# -- every assumption in every output -----------------------------------------------------------

@needs_training
def test_every_assumption_in_terminal_json_and_html(tmp_path, spec):
    import html as html_module
    import re

    from flopmeter.analyses.assumptions import LABELS
    from flopmeter.render.escape import md_text

    argv = [spec, "--seq-len", "16", "--train", "--optimizer", "adamw", "--lora", "4", "--checkpointing",
            "--fits", "H100", "--reserve", "2GiB"]
    outs = {}
    for fmt in ("txt", "md", "json", "html"):
        assert main([*argv, "-o", str(tmp_path / f"r.{fmt}")]) == 0
        outs[fmt] = (tmp_path / f"r.{fmt}").read_text()
    said = json.loads(outs["json"])["assumptions"]
    assert list(said) == list(NAMES) and all(said[n]["text"] for n in NAMES)
    flat = {fmt: re.sub(r"\s+", " ", text) for fmt, text in outs.items()}
    for name in NAMES:
        text = re.sub(r"\s+", " ", said[name]["text"])
        assert LABELS[name] in flat["txt"] and text in flat["txt"], name
        assert md_text(text) in flat["md"], name                    # as Markdown shows text verbatim
        assert html_module.escape(text, quote=True) in flat["html"], name
    assert "None" not in outs["html"].split('id="flopmeter-data"')[0]


def test_generation_sizing_fits_by_the_larger_peak_and_says_so(capsys, spec):
    from flopmeter.frontends import InputRequest, resolve
    from flopmeter.generate import generation_peaks

    prompt, new = 16, 8
    d_ = run_json(capsys, spec, "--generate", f"{prompt}+{new}", "--fits", "T4", "--reserve", "1GiB", "--max-batch")
    mem = d_["memory"]
    usable = 16 * 2**30 - 2**30                              # the T4's 16 GiB less the given reserve
    assert mem["fits"]["budget"] == usable and mem["assumptions"]["reserve"]["value"] == 2**30
    assert mem["assumptions"]["logits"]["value"] == "last" and list(mem["assumptions"]) == list(NAMES)
    b = mem["largest"]["batch"]["answer"]
    model = resolve(spec, InputRequest(seq_len=1)).model

    def larger(batch):        # the prefill's and the last decode step's peaks, counted apart from the search
        # with a T4's kernels, as --fits T4 counts
        (pre, _), (dec, _) = generation_peaks(model, prompt, new, batch=batch, options=Options(device="cuda:t4"))
        return max(pre, dec)
    assert larger(b) <= usable < larger(b + 1)


def test_kernels_come_from_the_report_where_a_device_chose_them():
    from flopmeter.analyses.assumptions import kernels
    r = flopmeter.count(llama(), ids().to("meta"), options=Options(memory=True))
    said = kernels(r.trace)
    # a CPU run records the kernels PyTorch's CPU dispatch took
    assert said.text.startswith("as cpu takes them: ") and "_scaled_dot_product_flash_attention_for_cpu) ×2" in said.text
    del r.trace.extra["kernels"]              # a trace without a kernels record: the ops it ran are said
    said = kernels(r.trace)
    assert said.text.startswith("as traced on cpu: ") and "_scaled_dot_product_flash_attention_for_cpu ×2" in said.text
    # a run for a named device records what its rules chose (trace.extra["kernels"]); that is what is said
    r.trace.extra["kernels"] = {"device": "cuda", "target": {"name": "H100 SXM"}, "dropout": None,
                                "attention": [{"backend": "flash", "op": "aten._scaled_dot_product_flash_attention",
                                               "calls": L}]}
    said = kernels(r.trace)
    assert said.value == "flash"
    assert said.text == f"as H100 SXM takes them: flash attention (_scaled_dot_product_flash_attention) ×{L}"
