"""The device table (data with a source per row), loose names, calibration and the two commands."""

import json
import sys

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter.bench import calibrate as calibrate_module
from flopmeter.devices import TABLE, DeviceSpec, get_device, local_path, table
from flopmeter.cli import main
from flopmeter.errors import InputError, MissingDependencyError, OptionsError

ISSUE_DEVICES = ("H100 SXM", "H100 PCIe", "H200 SXM", "A100 40GB", "A100 80GB", "L4", "L40S", "RTX 4090",
                 "RTX 3090", "T4", "V100 SXM2", "MI300X")


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_row_has_a_source_bandwidth_and_fp32():
    rows = json.loads(TABLE.read_text())["devices"]
    assert {r["name"] for r in rows} >= set(ISSUE_DEVICES)
    for r in rows:
        assert len(r["source"]) > 20 and r["url"].startswith("https://"), r["name"]
        assert r["memory_bytes"] > 0 and r["memory_note"], r["name"]
        if "tflops" not in r:          # a row with memory (and links) only says so in its source
            assert "memory" in r["source"].split(";")[-1] and "only" in r["source"], r["name"]
            continue
        assert r["bandwidth_gb_s"] > 0 and r["vector_tflops"] > 0, r["name"]
        assert r["tflops"]["fp32"] > 0, r["name"]
        assert set(r["tflops"]) <= {"fp32", "tf32", "bf16", "fp16", "fp8", "int8"}, r["name"]
        # a matrix unit is never slower in a narrower type than in fp32
        assert all(v >= r["tflops"]["fp32"] for v in r["tflops"].values()), r["name"]
    specs = {s.name: s for s in table()}
    assert specs["H100 SXM"].matrix["fp8"] == 1979e12 and specs["H100 SXM"].bandwidth == 3350e9
    assert "fp8" not in specs["A100 80GB"].matrix           # Ampere has no fp8


@pytest.mark.parametrize("name, expected", [
    ("h100", "H100 SXM"), ("H100-SXM5", "H100 SXM"), ("nvidia h100 pcie", "H100 PCIe"), ("h200", "H200 SXM"),
    ("a100", "A100 80GB"), ("A100_40GB", "A100 40GB"), ("l4", "L4"), ("L40S", "L40S"),
    ("geforce rtx 4090", "RTX 4090"), ("rtx-3090", "RTX 3090"), ("tesla t4", "T4"), ("v100", "V100 SXM2"),
    ("AMD Instinct MI300X", "MI300X"),
])
def test_loose_names(name, expected):
    assert get_device(name).name == expected


def test_unknown_device_gives_a_close_match(capsys):
    with pytest.raises(OptionsError) as exc:
        get_device("h10")
    assert exc.value.hint.startswith("did you mean 'H100 SXM'")
    with pytest.raises(OptionsError) as exc:
        get_device("rtx 4080")
    assert "'RTX 4090'" in exc.value.hint
    with pytest.raises(OptionsError) as exc:
        get_device("zzz")
    assert "known devices" in exc.value.hint and "MI300X" in exc.value.hint
    code, out, err = run(capsys, "roofline", "torchvision:resnet18", "--device-spec", "a1000")
    assert code == 2 and out == ""
    error, hint = err.splitlines()
    assert error == "error: unknown device 'a1000'" and hint.startswith("hint: did you mean 'A100 80GB', 'A100 40GB'")


def fake_measure(stmt, globals_):
    """Every measurement takes 10 ms, but the one-element add (the dispatch cost) 2 ms."""
    if stmt.startswith("torch.add") and globals_["a"].numel() == 1:
        return 0.002
    return 0.01


def test_calibrate_arithmetic_with_a_fake_timer():
    spec = calibrate_module.calibrate("cpu", dtypes=("fp32", "bf16"), max_n=128, batched=4, copy_bytes=1 << 20,
                                      vector_numel=1 << 10, measure=fake_measure)
    assert spec.matrix == {"fp32": pytest.approx(2 * 128 ** 3 / 0.01), "bf16": pytest.approx(2 * 128 ** 3 / 0.01)}
    assert spec.bandwidth == pytest.approx(2 * (1 << 20) / 0.01)          # read + write of the copy
    assert spec.vector == pytest.approx((1 << 10) / (0.01 - 0.002))      # the add less its dispatch
    # 32 × (Linear + ReLU): each Linear runs aten.t (free) and aten.addmm; each ReLU aten.relu
    assert spec.extra["overhead_ops"] == 32 * 2
    assert spec.overhead == pytest.approx(0.01 / 64)
    assert spec.threads == torch.get_num_threads() and spec.kind == "calibrated"
    # op classes at batch 1 and (":batched") at batch 4: convolutions 2·N·C_out·H·W·(C_in/g)·K², max pool 8 per output
    assert spec.classes["conv"]["fp32"] == pytest.approx(2 * 1 * 128 * 28 * 28 * 128 * 9 / 0.01)
    assert spec.classes["conv:batched"]["fp32"] == pytest.approx(2 * 4 * 128 * 28 * 28 * 128 * 9 / 0.01)
    assert spec.classes["grouped:batched"]["bf16"] == pytest.approx(2 * 4 * 256 * 28 * 28 * (256 // 16) * 9 / 0.01)
    assert spec.classes["depthwise"]["fp32"] == pytest.approx(2 * 1 * 128 * 28 * 28 * 1 * 9 / 0.01)
    assert spec.classes["pointwise:batched"]["fp32"] == pytest.approx(2 * 4 * 128 * 56 * 56 * 128 * 1 / 0.01)
    assert spec.classes["pool:batched"]["fp32"] == pytest.approx(4 * 64 * 28 * 28 * (3 * 3 - 1) / 0.01)


def test_calibrate_for_real_tiny_and_the_spec_loads_as_local(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(InputError, match="no calibrated device spec") as exc:
        get_device("local")
    assert exc.value.hint == "measure this machine first: flopmeter calibrate --device cpu"
    spec = calibrate_module.calibrate("cpu", dtypes=("fp32",), max_n=64, batched=2, copy_bytes=1 << 16,
                                      vector_numel=1 << 10, min_run_time=0.01, target_s=0.001)
    assert spec.matrix["fp32"] > 0 and spec.bandwidth > 0 and spec.vector > 0 and spec.overhead > 0
    from flopmeter.devices import save_local
    path = save_local(spec, "cpu")
    assert path == tmp_path / "flopmeter" / "device-local-cpu.json" == local_path("cpu")
    loaded = get_device("local")
    assert loaded == spec
    assert get_device("local-cpu") == spec and get_device(str(path)) == spec
    report = flopmeter.count(nn.Linear(64, 64), input_shape=(4, 64))
    from flopmeter.bench.roofline import roofline
    assert roofline(report, "local").latency > 0


def test_cli_calibrate_and_roofline_local(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    real = calibrate_module.calibrate
    monkeypatch.setattr(calibrate_module, "calibrate",
                        lambda device, **kw: real(device, **{**kw, "max_n": 128, "batched": 2, "copy_bytes": 1 << 20,
                                                             "vector_numel": 1 << 10, "measure": fake_measure}))
    code, out, err = run(capsys, "calibrate", "--dtypes", "fp32")
    path = tmp_path / "flopmeter" / "device-local-cpu.json"
    assert code == 0 and f"saved to {path}" in out and path.is_file()
    assert f"{2 * 128 ** 3 / 0.01 / 1e6:.4g} MFLOP/s" in out            # 2·n³ / 10 ms
    code, out, err = run(capsys, "roofline", "--device-spec", "local", "--format", "json",
                         "torchvision:resnet18")       # JSON holds every module (--depth is refused)
    d = json.loads(out)
    assert code == 0 and d["device"]["name"] == "local-cpu"
    overhead = 0.01 / 64
    assert d["device"]["overhead_s"] == pytest.approx(overhead)
    assert d["device"]["matrix_flops"] == {"fp32": pytest.approx(2 * 128 ** 3 / 0.01)}
    assert d["device"]["bandwidth"] == pytest.approx(2 * (1 << 20) / 0.01)
    model = d["modules"][0]
    assert model["path"] == "" and model["predicted_s"] == pytest.approx(d["predicted_s"])
    assert d["predicted_s"] >= model["ops"] * overhead
    # the command gives what the library gives for the same model on the saved spec
    from flopmeter.bench.roofline import roofline
    from flopmeter.frontends import InputRequest, resolve
    resolved = resolve("torchvision:resnet18", InputRequest())
    args, kwargs = resolved.make_inputs(torch.device("meta"))
    report = flopmeter.count(resolved.model, *args, kwargs=kwargs)
    assert d["predicted_s"] == pytest.approx(roofline(report, get_device("local")).latency)


def test_cli_roofline_views_and_formats(capsys, tmp_path):
    code, out, err = run(capsys, "roofline", "torchvision:resnet18", "--device-spec", "a100", "--depth", "1")
    assert code == 0 and "A100 80GB" in out and "memory-bound" in out and "layer4" in out
    code, out, _ = run(capsys, "roofline", "torchvision:resnet18", "--device-spec", "a100", "--view", "layers",
                       "--top", "3", "--format", "csv")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4 and lines[0].startswith("path,type,FLOPs,bytes")
    code, out, _ = run(capsys, "roofline", "torchvision:resnet18", "--device-spec", "a100", "--view", "ops",
                       "--top", "5", "--format", "md")
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| module")]
    assert code == 0 and "**device**: A100 80GB" in out and len(rows) == 5 and "aten.convolution" in rows[0]


def test_cli_roofline_hf_decoder_prefill_and_decode(capsys, tmp_path):
    pytest.importorskip("transformers")
    cfg = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 2, "n_head": 4, "n_embd": 64,
           "vocab_size": 1000, "n_positions": 256}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    code, out, err = run(capsys, "roofline", f"hf:{tmp_path}", "--device-spec", "h100", "--seq-len", "32",
                         "--context", "200", "--format", "json")
    d = json.loads(out)
    assert code == 0, err
    dec = d["decode"]
    assert dec["kv_bytes"] == 1 * 200 * 2 * 2 * 4 * 16 * 4     # batch · context · K,V · layers · heads · head_dim · fp32
    assert dec["analytic_s"] == pytest.approx((dec["weight_bytes"] + dec["kv_bytes"]) / 3350e9)
    assert 0.5 < dec["op_level_s"] / dec["analytic_s"] < 2


def test_plot_png_and_svg_and_missing_matplotlib(tmp_path, monkeypatch):
    from flopmeter.bench.plot import plot_roofline
    from flopmeter.bench.roofline import roofline
    report = flopmeter.count(nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 8)), input_shape=(64, 256))
    rl = roofline(report, "l4", measured={"0": 1e-4})
    pytest.importorskip("matplotlib")
    png = plot_roofline(rl, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = plot_roofline(rl, tmp_path / "r.svg")
    assert "<svg" in svg.read_text()[:2000]
    with pytest.raises(InputError, match="plot format"):
        plot_roofline(rl, tmp_path / "r.bmp")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingDependencyError) as exc:
        plot_roofline(rl, tmp_path / "r2.png")
    assert exc.value.hint == "pip install 'flopmeter[plots]'"


def test_spec_files_are_checked(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x"}))
    with pytest.raises(InputError, match="not a flopmeter device spec"):
        get_device(str(bad))
    spec = DeviceSpec("mine", {"fp32": 1e12}, 1e11, 1e10, "my notes")
    good = tmp_path / "mine.json"
    good.write_text(json.dumps(spec.to_dict()))
    assert get_device(str(good)) == spec


@pytest.mark.parametrize("typed, expected", [
    ("h100-sxm", "H100 SXM"), ("h100-pcie", "H100 PCIe"), ("a100-80gb", "A100 80GB"), ("rtx-4090", "RTX 4090"),
    ("l4", "L4"), ("a10g", "A10G"), ("t4", "T4"), ("mi300x", "MI300X"), ("H100 NVL", "H100 NVL"), ("b200", "B200"),
])
def test_names_people_type(typed, expected):
    assert get_device(typed).name == expected


def test_usable_memory_is_total_less_the_stated_reserve():
    from flopmeter.devices import default_reserve, usable_memory

    GiB = 2**30
    h100 = usable_memory("h100")
    assert h100.total == 80 * GiB and h100.reserve == default_reserve() == 2 * GiB
    assert h100.usable == 80 * GiB - 2 * GiB and "CUDA context" in h100.reserve_note
    t4 = usable_memory("t4", reserve=768 * 2**20)
    assert t4.usable == 16 * GiB - 768 * 2**20 and t4.reserve_note == "given"
    with pytest.raises(OptionsError):
        usable_memory("t4", reserve=-1)


def test_a_row_without_compute_figures_is_refused_by_the_roofline(capsys):
    spec = get_device("a10g")
    assert not spec.has_compute and spec.memory == 24 * 2**30
    with pytest.raises(OptionsError) as exc:
        spec.peak("bf16")
    assert "A10G" in str(exc.value) and "flopmeter devices" in exc.value.hint
    code, out, err = run(capsys, "roofline", "torchvision:resnet18", "--device-spec", "a10g")
    assert code == 2 and err.startswith("error: a roofline needs peak compute")


def test_devices_command_lists_every_row_with_its_source(capsys):
    code, out, err = run(capsys, "devices", "--format", "json")
    assert code == 0
    rows = json.loads(out)["devices"]
    assert [r["device"] for r in rows] == [s.name for s in table()]
    h100 = next(r for r in rows if r["device"] == "H100 SXM")
    assert h100["usable_bytes"] == h100["total_bytes"] - h100["reserve_bytes"] and h100["compute_capability"] == "9.0"
    assert h100["link_gb_s"] == 900 / 2          # NVLink 4: 900 GB/s both directions on the datasheet
    code, out, err = run(capsys, "devices", "rtx-4090")
    assert code == 0 and "RTX 4090" in out and "sources:" in out and "H100 SXM" not in out
    code, out, err = run(capsys, "devices", "h10")
    assert code == 2 and "did you mean 'H100 SXM'" in err
