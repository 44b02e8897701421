"""A fake run for a named CUDA device takes the kernels that device would take, and says which.

The attention backend is checked against PyTorch 2.14's selection conditions written out here
(aten/src/ATen/native/transformers/cuda/sdp_utils.cpp and sdp_utils_cpp.h), the dropout mask
and the activations a training step keeps against Korthikanti et al. 2022's count, and the two
ways of tracing (fake CUDA tensors; CPU fakes standing in for them) against each other."""

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import flopmeter
from flopmeter import Options
from flopmeter.cli import main
from flopmeter.kernels import cuda_target
from flopmeter.trace import record
from flopmeter.trace.sdpa_rules import Call, CudaTarget, Flags, T, select

HALF = (torch.float16, torch.bfloat16)


# -- the selection rules, written out ---------------------------------------------------------------

def oracle(cc, dtype, e, *, mask=False, dropout=0.0, l=16, s=16, causal=False, train=False, cudnn=92400):
    """select_sdp_backend for dense 4-d contiguous inputs of one head count, head dim e:
    - order: cuDNN first on sm90 and sm10x when cuDNN > 9.15.0 (CUDA 13 build), else flash,
      memory-efficient, math;
    - flash: sm80–sm121; fp16/bf16 (fp16 only below sm80); e ≤ 256; no mask; is_causal only with
      L = S; training on sm86–sm89 or sm120–sm121 needs e ≤ 192, or e > 224 without dropout;
    - memory-efficient: sm50–sm121; fp16/fp32/bf16 (no bf16 below sm80); e a multiple of 8 for
      half and 4 for fp32 on sm80+ (1 for fp32, 8 for half with tensor cores on sm70–sm75);
    - cuDNN: sm80–sm121; fp16/bf16; e ≤ 128, ≤ 256 on sm90/sm10x with cuDNN > 9.22, multiple of
      8; dropout a multiple of 1/16, and none with L = 1; S ≠ 1; training on sm90/sm10x beyond e = 128 only for
      (192, 128) or (256, 256); one query not on sm10x/sm11x with cuDNN 9.19–9.25.0 (but 9.24.1)."""
    major, minor = cc
    sm90_10x = (major, minor) == (9, 0) or major == 10
    flash = ((8, 0) <= cc <= (12, 1) and dtype in (HALF if major >= 8 else (torch.float16,)) and e <= 256
             and not mask and not (causal and l != s))
    if flash and train and ((8, 6) <= cc <= (8, 9) or (12, 0) <= cc <= (12, 1)):
        flash = e <= 192 or (dropout == 0 and e > 224)
    align = (8 if dtype in HALF else 4) if major >= 8 else (8 if dtype in HALF and major == 7 else 1)
    efficient = ((5, 0) <= cc <= (12, 1) and e % align == 0
                 and dtype in ((torch.float16, torch.float32, torch.bfloat16) if major >= 8
                               else (torch.float16, torch.float32)))
    limit = 256 if sm90_10x and cudnn > 92200 else 128
    cudnn_ok = ((8, 0) <= cc <= (12, 1) and dtype in HALF and e <= limit and e % 8 == 0
                and dropout * 16 == math.floor(dropout * 16) and not (dropout and l == 1) and s != 1
                and not (train and sm90_10x and e > 128 and e != 256)
                and not (l == 1 and major in (10, 11) and 91900 <= cudnn <= 92500 and cudnn != 92401))
    first = sm90_10x and cudnn > 91500
    for backend, ok in ((("cudnn", cudnn_ok),) if first else ()) + (("flash", flash), ("efficient", efficient)):
        if ok:
            return backend
    return "math"                                 # before cuDNN in the default order, and always enabled


DEVICES = {"sm70": (7, 0), "sm75": (7, 5), "sm80": (8, 0), "sm86": (8, 6), "sm89": (8, 9), "sm90": (9, 0),
           "sm100": (10, 0), "sm120": (12, 0)}


def call(dtype, e, *, mask=False, dropout=0.0, l=16, s=16, causal=False, train=False, b=2, h=4):
    q = T((b, h, l, e), (h * l * e, l * e, e, 1), dtype, requires_grad=train)
    k = T((b, h, s, e), (h * s * e, s * e, e, 1), dtype, requires_grad=train)
    m = T((l, s), (s, 1), torch.bool) if mask else None
    return Call(q, k, k, m, dropout, causal, False, train)


GRID = list(itertools.product(DEVICES, (torch.float16, torch.bfloat16, torch.float32), (64, 72, 100, 128, 200, 256, 320),
                              (False, True), (0.0, 0.1, 0.125), ((16, 16, False), (16, 16, True), (5, 7, True), (1, 16, False)),
                              (False, True)))


@pytest.mark.parametrize("device", list(DEVICES))
def test_backend_choice_follows_the_written_out_rules(device):
    cc = DEVICES[device]
    target = CudaTarget(device, cc, cudnn=92400, cuda=(13, 0))
    for _, dtype, e, mask, p, (l, s, causal), train in (g for g in GRID if g[0] == device):
        if causal and mask:
            continue                              # PyTorch refuses is_causal with a mask
        got = select(call(dtype, e, mask=mask, dropout=p, l=l, s=s, causal=causal, train=train), target, Flags()).backend
        want = oracle(cc, dtype, e, mask=mask, dropout=p, l=l, s=s, causal=causal, train=train)
        assert got == want, (device, dtype, e, mask, p, l, s, causal, train)


@pytest.mark.parametrize("name, args, backend", [
    ("A100 80GB", (torch.bfloat16, 128), "flash"),                 # sm80, no cuDNN-first
    ("H100 SXM", (torch.bfloat16, 128), "cudnn"),                  # sm90 with cuDNN 9.24 > 9.15: cuDNN first
    ("A100 80GB", (torch.float32, 64), "efficient"),               # flash needs fp16/bf16
    ("T4", (torch.float16, 64), "efficient"),                      # flash needs sm80
    ("V100 SXM2", (torch.bfloat16, 64), "math"),                   # no bf16 below sm80 for any fused kernel
    ("A100 80GB", (torch.bfloat16, 100), "flash"),                 # flash pads head dims to a multiple of 8
    ("A100 80GB", (torch.bfloat16, 320), "efficient"),             # flash: head dim ≤ 256
    ("H100 SXM", (torch.bfloat16, 128, {"dropout": 0.1}), "flash"),    # cuDNN: dropout a multiple of 1/16
    ("H100 SXM", (torch.bfloat16, 128, {"dropout": 0.125}), "cudnn"),
    ("A100 80GB", (torch.bfloat16, 64, {"mask": True}), "efficient"),  # flash takes no mask
    ("A100 80GB", (torch.bfloat16, 64, {"l": 5, "s": 7, "causal": True}), "efficient"),  # flash: causal L = S
    ("RTX 3090", (torch.bfloat16, 256, {"train": True, "dropout": 0.1}), "efficient"),  # sm86 training limits
    ("RTX 3090", (torch.bfloat16, 256, {"train": True}), "flash"),
    ("B200", (torch.bfloat16, 128, {"l": 1}), "flash"),            # cuDNN decode disabled on sm100 with 9.24.0
])
def test_named_devices_take_the_backend_their_rules_give(name, args, backend):
    dtype, e, *kw = args
    target = cuda_target(f"cuda:{name}")
    target = CudaTarget(target.name, target.capability, cudnn=92400, cuda=(13, 0))
    assert select(call(dtype, e, **(kw[0] if kw else {})), target, Flags()).backend == backend


@pytest.mark.parametrize("kv_heads, enable_gqa, backend", [(2, True, "flash"), (1, False, "flash"), (2, False, "math")])
def test_grouped_query_attention(kv_heads, enable_gqa, backend):
    """Fused kernels take fewer key/value heads with enable_gqa (heads dividing the query's), or
    one key/value head (multi-query) without it; other head counts take the math path."""
    bf16, a100 = torch.bfloat16, CudaTarget("A100 80GB", (8, 0), cudnn=92400, cuda=(13, 0))
    q, k = T((2, 8, 16, 64), (8192, 1024, 64, 1), bf16), T((2, kv_heads, 16, 64), (kv_heads * 1024, 1024, 64, 1), bf16)
    assert select(Call(q, k, k, None, 0.0, True, enable_gqa), a100, Flags()).backend == backend
    if enable_gqa:
        qs = torch.randn(2, 8, 16, 64, dtype=bf16, device="meta")
        ks = torch.randn(2, kv_heads, 16, 64, dtype=bf16, device="meta")
        r = flopmeter.count(Attend(is_causal=True, enable_gqa=True), qs, ks, ks, options=Options(device="cuda:a100"))
        assert r.kernels["attention"][0]["backend"] == "flash" and r.kernels["attention"][0]["gqa"]
        assert r.macs == 2 * 2 * 8 * 16 * 16 * 64      # per query head: keys and values are shared, products are not


def test_cudnn_goes_back_behind_flash_when_deprioritized_or_older():
    c = call(torch.bfloat16, 128)
    h100 = CudaTarget("H100 SXM", (9, 0), cudnn=92400, cuda=(13, 0))
    assert select(c, h100, Flags(cudnn_deprioritized=True)).backend == "flash"
    assert select(c, CudaTarget("H100 SXM", (9, 0), cudnn=91500, cuda=(13, 0)), Flags()).backend == "flash"
    assert select(c, CudaTarget("H100 SXM", (9, 0), cudnn=None), Flags()).backend == "flash"     # no cuDNN
    # the user's own switches: only math on → math; flash off → the next in the order
    assert select(c, h100, Flags(flash=False, efficient=False, cudnn=False)).backend == "math"
    chosen = select(c, CudaTarget("A100", (8, 0), cudnn=92400), Flags(flash=False))
    assert chosen.backend == "efficient" and "disabled" in chosen.refused["flash"]


# -- what the run emits -------------------------------------------------------------------------------

N, H, L, E = 2, 4, 16, 64


class Attend(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.kw = kw

    def forward(self, q, k, v, attn_mask=None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, **self.kw)


def _qkv(e=E, dtype=torch.bfloat16, l=L, s=L, grad=False):
    return tuple(torch.randn(N, H, n, e, dtype=dtype, device="meta", requires_grad=grad) for n in (l, s, s))


INSTALLED_CUDNN = torch.backends.cudnn.version() if torch.version.cuda else None
H100_OP = ("aten._scaled_dot_product_cudnn_attention" if INSTALLED_CUDNN and INSTALLED_CUDNN > 91500
           else "aten._scaled_dot_product_flash_attention")      # cuDNN first on sm90 with cuDNN > 9.15


@pytest.mark.parametrize("device, op", [("cuda:a100", "aten._scaled_dot_product_flash_attention"),
                                        ("cuda:h100", H100_OP),
                                        ("cuda:t4", "aten._scaled_dot_product_attention_math"),
                                        ("cpu", "aten._scaled_dot_product_flash_attention_for_cpu")])
def test_each_backend_counts_the_same_attention_macs(device, op):
    r = flopmeter.count(Attend(is_causal=True), *_qkv(), options=Options(device=device))
    assert r.unsupported == {}
    assert r.macs == 2 * N * H * L * L * E        # q·kᵀ and p·v: B·H·L·S·E MACs each, whatever the kernel
    (group,) = r.kernels["attention"]
    assert group["op"] == op and group["calls"] == 1
    fused = op != "aten._scaled_dot_product_attention_math"
    assert (op in r.by_op()) == fused             # the math path is its decomposition (bmm, _safe_softmax, …)


def test_the_fused_ops_have_their_real_outputs():
    r = flopmeter.count(Attend(is_causal=True), *_qkv(), options=Options(device="cuda:a100"))
    (ev,) = [e for e in r.trace.events if e.op == "aten._scaled_dot_product_flash_attention"]
    out, lse = ev.outputs[0], ev.outputs[1]
    assert out.shape == (N, H, L, E) and lse.shape == (N, H, L) and lse.dtype == torch.float32
    assert out.device == "cuda:0" and r.device == "cuda"


def test_flash_pads_head_dims_to_a_multiple_of_eight():
    r = flopmeter.count(Attend(), *_qkv(e=100), options=Options(device="cuda:a100"))
    ops = [e.op for e in r.trace.events]
    assert ops.count("aten.constant_pad_nd") == 3 and "aten.slice" in ops
    (ev,) = [e for e in r.trace.events if e.op == "aten._scaled_dot_product_flash_attention"]
    assert ev.arg("query").shape[-1] == 104 and r.trace.events[-1].outputs[0].shape[-1] == 100
    assert r.macs == 2 * N * H * L * L * 104      # the kernel multiplies the padded width


def test_a_boolean_mask_is_made_additive_and_expanded_for_the_efficient_kernel():
    mask = torch.ones(L, 7, dtype=torch.bool, device="meta")
    q, k, v = _qkv(l=L, s=7)
    r = flopmeter.count(Attend(), q, k, v, kwargs={"attn_mask": mask}, options=Options(device="cuda:a100"))
    ops = [e.op for e in r.trace.events]
    assert "aten.where" in ops and "aten.constant_pad_nd" in ops        # 7 keys: the bias padded to 8
    (ev,) = [e for e in r.trace.events if e.op == "aten._scaled_dot_product_efficient_attention"]
    assert ev.arg("attn_bias").shape == (N, H, L, 7) and ev.arg("attn_bias").dtype == torch.bfloat16


def test_unbatched_inputs_get_a_batch_dimension():
    q = torch.randn(H, L, E, dtype=torch.bfloat16, device="meta")
    r = flopmeter.count(Attend(), q, q, q, options=Options(device="cuda:a100"))
    (ev,) = [e for e in r.trace.events if e.op == "aten._scaled_dot_product_flash_attention"]
    assert ev.arg("query").shape == (1, H, L, E) and r.trace.events[-1].outputs[0].shape == (H, L, E)


def test_multihead_attention_keeps_its_fused_path_and_its_unfused_one_takes_the_device_kernel():
    x = torch.randn(2, 10, 64, device="meta")
    fused = flopmeter.count(nn.MultiheadAttention(64, 4, batch_first=True).eval(), x, x, x,
                            options=Options(device="cuda:a100"))
    assert "aten._native_multi_head_attention" in fused.by_op()          # as a real GPU takes it
    slow = flopmeter.count(nn.MultiheadAttention(64, 4).eval(), x, x, x, kwargs={"need_weights": False},
                           options=Options(device="cuda:a100"))           # batch_first=False: the unfused path
    assert [a["backend"] for a in slow.kernels["attention"]] == ["efficient"]      # fp32 on sm80


# -- training without a GPU --------------------------------------------------------------------------

class GPTLayer(nn.Module):
    """Megatron's transformer layer (Korthikanti et al. 2022, fig. 2) on (s, b, h), pre-LN, with the
    attention either written out (QKᵀ, softmax, dropout, ·V) or as scaled_dot_product_attention."""

    def __init__(self, h, a, p=0.1, fused=False):
        super().__init__()
        self.h, self.a, self.p, self.fused = h, a, p, fused
        self.ln1, self.ln2 = nn.LayerNorm(h), nn.LayerNorm(h)
        self.q, self.k, self.v, self.proj = (nn.Linear(h, h) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(h, 4 * h), nn.Linear(4 * h, h)
        self.attn_drop, self.drop1, self.drop2 = nn.Dropout(p), nn.Dropout(p), nn.Dropout(p)

    def heads(self, t):
        s, b, _ = t.shape
        return t.view(s, b, self.a, self.h // self.a).permute(1, 2, 0, 3)       # (b, a, s, h/a)

    def forward(self, x):
        s, b, h = x.shape
        y = self.ln1(x)
        q, k, v = self.heads(self.q(y)), self.heads(self.k(y)), self.heads(self.v(y))
        if self.fused:
            o = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p, is_causal=True)
        else:
            o = self.attn_drop(torch.softmax((q * (1 / math.sqrt(h // self.a))) @ k.transpose(-2, -1), dim=-1)) @ v
        x = x + self.drop1(self.proj(o.permute(2, 0, 1, 3).reshape(s, b, h)))
        return x + self.drop2(self.fc2(F.gelu(self.fc1(self.ln2(x)))))


S, B, HID, A = 64, 2, 64, 4


def _saved(device, fused):
    x = torch.randn(S, B, HID, dtype=torch.float16, device="meta")
    r = flopmeter.count(GPTLayer(HID, A, fused=fused).half(), x, options=Options(device=device, training=True))
    return r, r.trace.extra["training"]


def test_a_training_step_on_a_named_gpu_runs_without_one():
    r, _ = _saved("cuda:a100", fused=True)
    assert r.device == "cuda" and r.unsupported == {}
    assert "aten._scaled_dot_product_flash_attention_backward" in r.by_op()
    assert "aten.native_dropout_backward" in r.by_op()
    k = r.kernels
    assert k["target"]["name"] == "A100 80GB" and "cpu fake tensors" in k["route"]
    assert {t.device for ev in r.trace.events for t in ev.outputs} == {"cuda:0"}


def test_dropout_keeps_one_byte_per_element_on_cuda_and_the_dtype_on_cpu():
    sbh = S * B * HID
    (_, cuda), (_, cpu) = _saved("cuda:a100", False), _saved("cpu", False)
    for module in ("drop1", "drop2"):                       # each keeps its mask of s·b·h elements
        assert cuda["saved_by_module"][module] == sbh * 1     # bool
        assert cpu["saved_by_module"][module] == sbh * 2      # float16, as the CPU's dropout makes it
    assert cuda["saved_by_module"]["attn_drop"] == A * S * S * B
    assert cpu["saved_by_module"]["attn_drop"] == 2 * A * S * S * B


def test_activation_memory_against_korthikanti():
    """Korthikanti et al. 2022 (fp16, no recompute, t = 1), bytes one layer keeps for backward:
    attention 11sbh + 5as²b (QKV input 2sbh, Q and K 4sbh, softmax output 2as²b, its dropout mask
    as²b, dropout output 2as²b, V 2sbh, projection input 2sbh, dropout mask sbh), MLP 19sbh,
    two LayerNorm inputs 4sbh: 34sbh + 5as²b; the LayerNorms' mean and rstd (float32, s·b each)
    add 16sb. With flash attention the softmax, its mask and its output are never stored: the
    kernel keeps its output O (which is the projection's input) and the logsumexp (float32, a·s·b)
    and the dropout's RNG seed and offset (two uint64 and one: 24 bytes): 34sbh + 4asb + 24."""
    s, b, h, a = S, B, HID, A
    stats = 16 * s * b
    _, unfused = _saved("cuda:a100", False)
    assert unfused["saved_bytes"] == 34 * s * b * h + 5 * a * s * s * b + stats
    r, flash = _saved("cuda:a100", True)
    assert [g["backend"] for g in r.kernels["attention"]] == ["flash"]
    assert flash["saved_bytes"] == 34 * s * b * h + 4 * a * s * b + 24 + stats
    # the CPU's dropout keeps 2-byte masks and its LayerNorm statistics in float16
    _, cpu = _saved("cpu", False)
    assert cpu["saved_bytes"] == 36 * s * b * h + 6 * a * s * s * b + 8 * s * b


def _signature(trace):
    refs = lambda ts: [(t.shape, t.dtype, t.stride, t.device, t.storage) for t in ts]
    return [(e.op, e.overload, e.module, e.phase, refs(e.inputs), refs(e.outputs)) for e in trace.events]


@pytest.mark.parametrize("model", ["unfused", "fused", "conv"])
def test_both_routes_trace_the_same_forward(model):
    """Fake CUDA tensors and CPU fakes standing in for them (the route a training step takes
    without a GPU) record the same ops, shapes, dtypes, strides, devices and storages, for a
    forward with autograd on, dropout and batch norm in training mode (no backward: that needs
    the GPU on the first route)."""
    class Conv(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.bn, self.gn = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.GroupNorm(2, 8)

        def forward(self, x):
            return F.dropout(self.gn(self.bn(self.c(x))), 0.2, training=True).sum(dim=(2, 3))
    if model == "conv":
        m, x = Conv().half().train(), torch.randn(2, 3, 16, 16, dtype=torch.float16, device="meta")
    else:
        m = GPTLayer(HID, A, fused=model == "fused").half().train()
        x = torch.randn(S, B, HID, dtype=torch.float16, device="meta", requires_grad=True)
    target = cuda_target("cuda:a100")
    on_cuda = record(m, (x,), None, device="cuda", inference=False, kernels=target, route="cuda")
    on_cpu = record(m, (x,), None, device="cuda", inference=False, kernels=target, route="cpu")
    assert _signature(on_cuda) == _signature(on_cpu)
    assert on_cuda.extra["kernels"]["attention"] == on_cpu.extra["kernels"]["attention"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fake CUDA route of a training step needs a GPU")
def test_both_routes_trace_the_same_training_step():
    x = torch.randn(S, B, HID, dtype=torch.float16, device="meta")
    target = cuda_target("cuda:a100")
    runs = [record(GPTLayer(HID, A, fused=True).half(), (x,), None, device="cuda", kernels=target, route=route,
                   training=flopmeter.api.Options(training=True, optimizer="adamw").train_spec())
            for route in ("cuda", "cpu")]
    assert _signature(runs[0]) == _signature(runs[1])
    assert runs[0].extra["training"] == runs[1].extra["training"]


# -- what the report says ------------------------------------------------------------------------------

def test_the_header_json_and_html_name_the_kernels(tmp_path):
    from flopmeter.render import get_renderer
    r = flopmeter.count(Attend(is_causal=True), *_qkv(), options=Options(device="cuda:a100"))
    text = get_renderer("md").report(r)
    assert "flash ×1 (A100 80GB, cc 8.0, bfloat16, head dim 64, causal)" in text
    assert "cuBLAS" in text and "reserve" in text
    d = json.loads(r.to_json())
    assert d["kernels"]["attention"][0]["backend"] == "flash" and d["kernels"]["target"]["capability"] == "8.0"
    html = get_renderer("html").report(r)
    assert "flash ×1 (A100 80GB" in html


def test_a_saved_trace_keeps_its_kernels(tmp_path):
    from flopmeter.trace.io import load_trace, save_trace
    r = flopmeter.count(Attend(is_causal=True), *_qkv(), options=Options(device="cuda:h100"))
    save_trace(r.trace, tmp_path / "run.fmtrace")
    again = flopmeter.report_from_trace(load_trace(tmp_path / "run.fmtrace"))
    assert again.kernels == r.kernels


def test_the_cublas_workspace_is_stated_as_part_of_the_reserve(monkeypatch):
    from flopmeter.trace.kernels import cublas_workspace
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert cublas_workspace(cuda_target("cuda:h100"))["cublas_bytes"] == 4096 * 8 * 1024         # sm90: 32 MiB
    assert cublas_workspace(cuda_target("cuda:a100"))["cublas_bytes"] == 4096 * 1024 * 2 + 16 * 1024 * 8
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:2")
    assert cublas_workspace(cuda_target("cuda:h100"))["cublas_bytes"] == 4096 * 1024 * 2
    assert "reserve" in cublas_workspace(cuda_target("cuda:h100"))["counted"]


def test_a_plain_cuda_device_states_whose_rules_it_took():
    r = flopmeter.count(Attend(), *_qkv(), options=Options(device="cuda"))
    target = r.kernels["target"]
    if torch.cuda.is_available():
        assert target["source"] == "local"
    else:
        assert target["name"] == "H100 SXM" and target["source"] == "default"


def test_a_device_name_that_is_not_a_cuda_gpu_is_refused(capsys):
    with pytest.raises(flopmeter.OptionsError, match="unknown device 'h1000'") as info:
        Options(device="cuda:h1000")
    assert "did you mean" in info.value.hint
    with pytest.raises(flopmeter.OptionsError, match="not a CUDA device"):
        Options(device="cuda:mi300x")
    with pytest.raises(flopmeter.OptionsError, match="real mode"):
        Options(device="cuda:a100", mode="real")
    assert main(["hf:gpt2", "--device", "cuda:h1000"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: unknown device 'h1000'") and err[1].startswith("hint: did you mean")


HF_TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 100, "hidden_size": 128,
           "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
           "max_position_embeddings": 256, "torch_dtype": "bfloat16"}


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf")
    (folder / "config.json").write_text(json.dumps(HF_TINY))
    return f"hf:{folder}"


def _fits(capsys, argv):
    assert main([*argv, "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    return d["memory"]["largest"]["batch"], d["kernels"]


def test_a_budget_naming_a_gpu_runs_as_that_gpu(capsys, tiny_llama):
    """--fits H100 gives the same answer with and without --device cuda, from H100's kernels
    (head dim 64, bfloat16, causal: cuDNN first on sm90 with the installed cuDNN > 9.15, else flash)."""
    base = [tiny_llama, "--context", "128", "--fits", "H100", "--max-batch"]
    (alone, kernels), (with_cuda, kernels_cuda) = _fits(capsys, base), _fits(capsys, [*base, "--device", "cuda"])
    assert alone == with_cuda and kernels == kernels_cuda
    expected = "cudnn" if INSTALLED_CUDNN and INSTALLED_CUDNN > 91500 else "flash"
    assert [g["backend"] for g in kernels["attention"]] == [expected] and kernels["attention"][0]["calls"] == 2
    assert kernels["target"]["name"] == "H100 SXM"


def test_a_gpu_budget_on_a_cpu_run_says_it_did_not_take_that_gpus_kernels(capsys, tiny_llama):
    assert main([tiny_llama, "--context", "32", "--fits", "H100", "--device", "cpu", "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "the question names H100 SXM, whose kernels this run did not take (it ran as cpu)" in out


@pytest.mark.zoo
def test_llama_7b_fits_h100_the_same_with_and_without_device_cuda(capsys, monkeypatch):
    """The shipped llama-7b config at 4,096 tokens in bfloat16: the same largest batch with and
    without --device cuda, from H100's kernels; with TORCH_CUDNN_SDPA_DEPRIORITIZED=1 flash."""
    base = ["hf:llama-7b", "--dtype", "bfloat16", "--context", "4096", "--fits", "H100", "--max-batch"]
    (alone, kernels), (with_cuda, _) = _fits(capsys, base), _fits(capsys, [*base, "--device", "cuda"])
    assert alone["answer"] == with_cuda["answer"]
    assert kernels["attention"][0]["calls"] == 32 and kernels["attention"][0]["head_dim"] == "128"
    monkeypatch.setenv("TORCH_CUDNN_SDPA_DEPRIORITIZED", "1")
    flash, kernels = _fits(capsys, base)
    assert [g["backend"] for g in kernels["attention"]] == ["flash"] and flash["answer"] == alone["answer"]


class _CheckpointedAttention(nn.Module):
    """A block whose forward runs under the user's own torch.utils.checkpoint."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(64, 192)

    def inner(self, x):
        q, k, v = self.qkv(x).view(x.shape[0], x.shape[1], 3, 4, 16).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(x.shape)

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint
        return checkpoint(self.inner, x, use_reentrant=False)


def test_a_checkpoint_recomputes_with_the_kernels_its_forward_took():
    """The recompute runs inside the backward; it takes the device's kernels as the forward did
    (else torch.utils.checkpoint refuses: a different number of tensors saved)."""
    model = nn.Sequential(_CheckpointedAttention(), _CheckpointedAttention()).to(torch.bfloat16)
    r = flopmeter.count(model, torch.randn(2, 16, 64, dtype=torch.bfloat16, device="meta"),
                        options=Options(device="cuda:h100", training=True))
    ops = [ev.op for ev in r.trace.events if "attention" in ev.op and "backward" not in ev.op]
    by_phase = {}
    for ev in r.trace.events:
        if ev.op in ops:
            by_phase[ev.phase] = by_phase.get(ev.phase, 0) + 1
    # two blocks: each runs its attention once in the forward and once more when the backward
    # recomputes it, with the one kernel the device's rules chose
    assert by_phase == {"forward": 2, "backward": 2} and len(set(ops)) == 1 and "cpu" not in ops[0]
