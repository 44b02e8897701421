"""The roofline estimate: per-op times written out from the device row, bounds, module sums,
measured ratios and the decoder decode estimate."""

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter.devices import DeviceSpec, get_device
from flopmeter.bench.roofline import decode_estimate, kv_bytes_per_token, roofline

# H100 SXM row of devices.json (checked in test_h100_row_is_what_the_tests_assume)
H100_BW = 3350e9          # bytes/s
H100_FP32 = 67e12         # FLOP/s, fp32 (CUDA cores), also the vector units
H100_TF32 = 494.5e12
H100_FP16 = 989.5e12


class Add(nn.Module):
    def forward(self, x, y):
        return x + y


class MatMul(nn.Module):
    def forward(self, a, b):
        return a @ b


def costed(rl):
    return [e for e in rl.ops if e.flops or e.bytes]


def test_h100_row_is_what_the_tests_assume():
    h100 = get_device("h100")
    assert (h100.name, h100.bandwidth, h100.vector) == ("H100 SXM", H100_BW, H100_FP32)
    assert (h100.matrix["fp32"], h100.matrix["tf32"], h100.matrix["fp16"]) == (H100_FP32, H100_TF32, H100_FP16)
    assert h100.overhead == 0.0      # a datasheet row has no launch overhead


def test_large_elementwise_add_is_memory_bound():
    n = 4096 * 4096
    report = flopmeter.count(Add(), torch.empty(4096, 4096), torch.empty(4096, 4096))
    rl = roofline(report, "h100")
    (e,) = costed(rl)
    assert e.flops == n                                   # one add per element
    assert e.bytes == 3 * n * 4                           # read x and y, write the sum, 4 bytes each
    assert e.compute_s == pytest.approx(n / H100_FP32)
    assert e.memory_s == pytest.approx(3 * n * 4 / H100_BW)
    assert e.bound == "memory"
    assert e.intensity == pytest.approx(1 / 12)           # FLOPs / byte
    assert rl.latency == pytest.approx(3 * n * 4 / H100_BW)
    assert rl.model.bound == "memory"


def test_large_matmul_is_compute_bound_fp16_and_tf32():
    m = 4096
    a = torch.empty(m, m, dtype=torch.float16)
    report = flopmeter.count(MatMul(), a, a)
    rl = roofline(report, "h100")
    (e,) = costed(rl)
    assert e.flops == 2 * m ** 3                          # 2 · MACs, MACs = m·m·m
    assert e.bytes == 3 * m * m * 2                       # read a and b, write the product, 2 bytes each
    assert e.dtype == "fp16"
    assert e.compute_s == pytest.approx(2 * m ** 3 / H100_FP16)
    assert e.memory_s == pytest.approx(3 * m * m * 2 / H100_BW)
    assert e.bound == "compute" and rl.model.bound == "compute"
    assert rl.latency == pytest.approx(2 * m ** 3 / H100_FP16)
    assert rl.throughput == pytest.approx(m / (2 * m ** 3 / H100_FP16))     # batch = first dim of the first input

    a32 = torch.empty(m, m)
    r32 = flopmeter.count(MatMul(), a32, a32)
    assert roofline(r32, "h100").latency == pytest.approx(2 * m ** 3 / H100_FP32)
    assert roofline(r32, "h100", tf32=True).latency == pytest.approx(2 * m ** 3 / H100_TF32)


def test_module_sums_bounds_and_measured_ratio():
    model = nn.Sequential(nn.Linear(4096, 4096, bias=False), nn.ReLU())
    report = flopmeter.count(model, input_shape=(4096, 4096))
    rl = roofline(report, "h100", measured={"0": 2e-3, "": 4e-3})
    lin, relu = rl.modules["0"], rl.modules["1"]
    n = 4096 * 4096
    assert lin.time_s == pytest.approx(2 * 4096 ** 3 / H100_FP32)         # fp32 matmul on the CUDA cores
    assert relu.time_s == pytest.approx(2 * n * 4 / H100_BW)              # read + write n fp32
    assert (lin.bound, relu.bound) == ("compute", "memory")
    assert rl.latency == pytest.approx(lin.time_s + relu.time_s)          # a parent is the sum of its ops
    assert rl.model.bound == "compute"                                    # most of its time is in the matmul
    assert lin.ratio == pytest.approx(lin.time_s / 2e-3)
    assert rl.model.ratio == pytest.approx(rl.latency / 4e-3)
    assert lin.achieved_flops == pytest.approx(2 * 4096 ** 3 / 2e-3)
    assert relu.ratio is None
    assert [m.path for m in rl.costliest(2)] == ["0", "1"]
    d = rl.to_dict()
    assert d["predicted_s"] == pytest.approx(rl.latency) and d["modules"][1]["bound"] == "compute"


def test_overhead_is_added_per_op_that_is_not_free():
    spec = DeviceSpec("toy", {"fp32": 1e12}, vector=1e11, bandwidth=1e10, source="a test", overhead=5e-6)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU())      # aten.t (free), aten.addmm, aten.relu
    report = flopmeter.count(model, input_shape=(8, 64))
    with_overhead = roofline(report, spec)
    without = roofline(report, spec, overhead=False)
    assert len(with_overhead.ops) == 2
    assert with_overhead.latency == pytest.approx(without.latency + 2 * 5e-6)
    # addmm: 2·8·64·64 FLOPs at 1e12 plus 8·64 bias adds at 1e11, against its bytes at 1e10
    addmm = without.ops[0]
    assert addmm.compute_s == pytest.approx(2 * 8 * 64 * 64 / 1e12 + 8 * 64 / 1e11)
    assert addmm.memory_s == pytest.approx(((8 * 64 + 64 * 64 + 64) * 4 + 8 * 64 * 4) / 1e10)


def test_convolutions_use_tf32_by_default_and_their_class_peak():
    conv = nn.Conv2d(64, 64, 3, padding=1, bias=False)
    report = flopmeter.count(conv, input_shape=(32, 64, 56, 56))
    macs = 32 * 64 * 56 * 56 * 64 * 3 * 3                   # N·C_out·H·W·C_in·K·K
    (e,) = costed(roofline(report, "h100"))
    assert (e.op_class, e.dtype) == ("conv", "tf32")         # cuDNN runs fp32 convolutions as TF32 by default
    assert e.compute_s == pytest.approx(2 * macs / H100_TF32)
    (e,) = costed(roofline(report, "h100", conv_tf32=False))
    assert e.compute_s == pytest.approx(2 * macs / H100_FP32)

    spec = DeviceSpec("calibrated", {"fp32": 1e12}, vector=1e11, bandwidth=1e15, source="a test",
                      classes={"conv": {"fp32": 5e11}, "depthwise": {"fp32": 1e10}})
    (e,) = costed(roofline(report, spec))                    # no TF32 here: the conv class's fp32 figure
    assert (e.op_class, e.dtype) == ("conv", "fp32") and e.compute_s == pytest.approx(2 * macs / 5e11)
    dw = nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False)
    (e,) = costed(roofline(flopmeter.count(dw, input_shape=(32, 64, 56, 56)), spec))
    assert e.op_class == "depthwise"
    assert e.compute_s == pytest.approx(2 * 32 * 64 * 56 * 56 * 1 * 3 * 3 / 1e10)   # C_in/g = 1
    grouped = nn.Conv2d(64, 64, 3, padding=1, groups=4, bias=False)
    spec_g = DeviceSpec("calibrated", {"fp32": 1e12}, vector=1e11, bandwidth=1e15, source="a test",
                        classes={"grouped": {"fp32": 2e11}, "pool": {"fp32": 1e9}})
    (e,) = costed(roofline(flopmeter.count(grouped, input_shape=(32, 64, 56, 56)), spec_g))
    assert e.op_class == "grouped"
    assert e.compute_s == pytest.approx(2 * 32 * 64 * 56 * 56 * (64 // 4) * 3 * 3 / 2e11)
    (e,) = costed(roofline(flopmeter.count(nn.MaxPool2d(3, 2, 1), input_shape=(32, 64, 112, 112)), spec_g))
    assert e.op_class == "pool"
    assert e.compute_s == pytest.approx(32 * 64 * 56 * 56 * (3 * 3 - 1) / 1e9)       # window − 1 compares per output
    spec_b = DeviceSpec("calibrated", {"fp32": 1e12}, vector=1e11, bandwidth=1e15, source="a test",
                        classes={"depthwise": {"fp32": 1e10}, "depthwise:batched": {"fp32": 1e9}})
    for batch, rate in ((1, 1e10), (32, 1e9)):            # a batch of more than one: the ':batched' figure
        (e,) = costed(roofline(flopmeter.count(dw, input_shape=(batch, 64, 56, 56)), spec_b))
        assert e.compute_s == pytest.approx(2 * batch * 64 * 56 * 56 * 1 * 3 * 3 / rate)
    pw = flopmeter.count(nn.Conv2d(64, 128, 1, bias=False), input_shape=(32, 64, 56, 56))
    pw_macs = 32 * 128 * 56 * 56 * 64                        # N·C_out·H·W·C_in, K = 1
    (e,) = costed(roofline(pw, spec))                       # a spec without a pointwise figure: conv's
    assert e.op_class == "conv" and e.compute_s == pytest.approx(2 * pw_macs / 5e11)
    spec_pw = DeviceSpec("calibrated", {"fp32": 1e12}, vector=1e11, bandwidth=1e15, source="a test",
                         classes={"conv": {"fp32": 5e11}, "pointwise": {"fp32": 2e11}})
    (e,) = costed(roofline(pw, spec_pw))
    assert e.op_class == "pointwise" and e.compute_s == pytest.approx(2 * pw_macs / 2e11)
    (e,) = costed(roofline(report, spec_pw))                # a 3 × 3 convolution keeps conv's figure
    assert e.op_class == "conv" and e.compute_s == pytest.approx(2 * macs / 5e11)
    lin = roofline(flopmeter.count(nn.Linear(64, 64, bias=False), input_shape=(8, 64)), spec)
    (e,) = costed(lin)
    assert e.op_class == "matmul" and e.compute_s == pytest.approx(2 * 8 * 64 * 64 / 1e12)


def test_a_dtype_without_a_peak_falls_back_to_fp32_and_says_so():
    a = torch.empty(512, 512, dtype=torch.bfloat16)
    rl = roofline(flopmeter.count(MatMul(), a, a), "t4")          # Turing: no bf16 tensor cores
    t4 = get_device("t4")
    (e,) = costed(rl)
    assert e.dtype == "fp32" and e.compute_s == pytest.approx(2 * 512 ** 3 / t4.matrix["fp32"])
    assert any("no bf16" in n for n in rl.notes)


def test_kv_cache_and_decode_arithmetic():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=12, n_head=12, n_embd=768)
    assert kv_bytes_per_token(config, 2) == 2 * 12 * 12 * 64 * 2      # K and V · layers · heads · head_dim · bytes
    llama = transformers.LlamaConfig(num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                                     hidden_size=512)
    assert kv_bytes_per_token(llama, 2) == 2 * 4 * 2 * 64 * 2         # grouped-query: kv heads, not heads

    model = nn.Sequential(nn.Linear(256, 256, bias=False))
    report = flopmeter.count(model, input_shape=(2, 256))
    d = decode_estimate(report, "a100", context=1000, kv_per_token=1024)
    a100 = get_device("a100")
    assert d.kv_bytes == 2 * 1000 * 1024                              # batch · context · per token
    assert d.analytic_s == pytest.approx((256 * 256 * 4 + 2 * 1000 * 1024) / a100.bandwidth)
    assert d.tokens_per_s == pytest.approx(2 / d.analytic_s)


def test_measured_bound_reads_the_fractions_of_the_roofs_the_estimate_used():
    spec = DeviceSpec("toy", {"fp32": 1e12}, vector=1e12, bandwidth=1e11, source="a test")
    model = nn.Sequential(nn.Linear(512, 512, bias=False), nn.ReLU())
    report = flopmeter.count(model, input_shape=(512, 512))
    bare = roofline(report, spec, overhead=False)
    lin, relu = bare.modules["0"], bare.modules["1"]
    assert lin.compute_s == pytest.approx(2 * 512 ** 3 / 1e12)             # 2·MACs at the matmul peak
    assert relu.memory_s == pytest.approx(2 * 512 * 512 * 4 / 1e11)        # read + write, fp32
    assert (lin.bound, relu.bound) == ("compute", "memory")
    # the linear measured at 1.5× its compute time reaches 2/3 of the peak: compute; at 3× it reaches 1/3: neither;
    # the relu at 1.9× its memory time reaches more than half the bandwidth: memory
    rl = roofline(report, spec, overhead=False,
                  measured={"0": 1.5 * lin.compute_s, "1": 1.9 * relu.memory_s})
    assert (rl.modules["0"].measured_bound, rl.modules["1"].measured_bound) == ("compute", "memory")
    slow = roofline(report, spec, overhead=False, measured={"0": 3 * lin.compute_s})
    assert slow.modules["0"].measured_bound == "neither" and slow.modules["1"].measured_bound is None
    assert slow.to_dict()["modules"][1]["measured_bound"] == "neither"


def test_bench_roofline_puts_prediction_and_measurement_side_by_side(tmp_path, capsys):
    from pathlib import Path

    from flopmeter.cli import main
    data = Path(__file__).parent / "data"
    model = f"{data / 'sweep_models.py'}:tiny_b"
    spec = DeviceSpec("toy", {"fp32": 1e11}, vector=1e10, bandwidth=1e10, source="a test", kind="calibrated",
                      overhead=1e-6)
    spec_file = tmp_path / "toy.json"
    spec_file.write_text(__import__("json").dumps(spec.to_dict()))
    quick = ["--input-size", "8", "--min-time", "0.05", "--max-time", "0.2", "--threads", "1"]
    assert main(["bench", model, *quick, "--roofline", str(spec_file), "--format", "json"]) == 0
    out = __import__("json").loads(capsys.readouterr().out)
    (row,), (layers,), (rl,) = out["rows"], out["layers"], out["roofline"]
    assert rl["device"]["name"] == "toy" and rl["model"] == row["model"]
    measured = {m["path"]: m["total"] for m in layers["modules"]}
    modules = {m["path"]: m for m in rl["modules"]}
    assert modules[""]["measured_s"] == pytest.approx(row["p50_ms"] / 1e3)   # the model: the unprofiled p50
    for path, m in modules.items():
        if path:
            assert m["measured_s"] == pytest.approx(measured[path])           # a layer: its profiler range
        assert m["ratio"] == pytest.approx(m["predicted_s"] / m["measured_s"])

    assert main(["bench", model, *quick, "--roofline", str(spec_file), "--top", "2"]) == 0
    text = capsys.readouterr().out
    assert "pred/meas" in text and "predicted / measured" in text

    assert main(["bench", model, "--roofline", "h1000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "h100" in err
    assert main(["bench", model, "--plot", str(tmp_path / "p.png")]) == 2
    assert "--plot needs --roofline" in capsys.readouterr().err


def test_bench_roofline_local_is_the_calibration_of_the_device_being_timed(tmp_path, monkeypatch):
    """On a machine with a GPU and both calibrations saved, `bench --device cpu --roofline local`
    compares with the CPU's calibration, not the GPU's (which `local` means elsewhere there)."""
    from argparse import Namespace

    from flopmeter.devices import save_local
    from flopmeter.cli.bench import _roofline_device
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for device, rate in (("cpu", 1e11), ("cuda", 1e14)):
        save_local(DeviceSpec(f"local-{device}", {"fp32": rate}, vector=rate / 10, bandwidth=1e10, source="a test",
                              kind="calibrated"), device)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device("local").name == "local-cuda"                    # elsewhere, local prefers the GPU
    for device in ("cpu", "cuda"):
        args = Namespace(roofline="local", device=device, top=10, tf32=False, plot=None)
        assert _roofline_device(args).name == f"local-{device}"
    args = Namespace(roofline="h100", device="cpu", top=10, tf32=False, plot=None)
    assert _roofline_device(args).name == "H100 SXM"                    # a named device is what it names
