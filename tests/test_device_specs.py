"""Device specs from a file (``--device-spec FILE.json``), the packaged device table, memory
budgets and the calibration cache: malformed or implausible contents are one error line with a
hint and exit status 2, never a traceback or a spec with a negative or infinite figure."""

import json

import pytest

from flopmeter.devices import DeviceSpec, get_device, table
from flopmeter.cli import main
from flopmeter.errors import InputError
from cli_checks import one_error

GOOD = {"schema": "flopmeter.device/1", "name": "box", "matrix": {"fp32": 1e12}, "vector": 5e11,
        "bandwidth": 1e11, "source": "written in the test", "memory": 16e9, "overhead": 1e-6, "threads": 4}


@pytest.fixture
def model(tmp_path) -> str:
    f = tmp_path / "net.py"
    f.write_text("from torch import nn\n\ndef build():\n    return nn.Linear(4, 2).eval()\n")
    return f"{f}:build"


def _one_error(capfd, argv, needle):
    capfd.readouterr()
    error, _ = one_error(capfd, main(argv))
    assert needle in error, error


def test_a_good_spec_file_is_read(tmp_path):
    f = tmp_path / "box.json"
    f.write_text(json.dumps(GOOD))
    spec = get_device(str(f))
    assert (spec.bandwidth, spec.matrix["fp32"], spec.threads) == (1e11, 1e12, 4)


@pytest.mark.parametrize("text, needle", [
    ("{not json", "not JSON"),
    (json.dumps({**GOOD, "bandwidth": -1e11}), "'bandwidth'"),
    (json.dumps({**GOOD, "bandwidth": 0}), "'bandwidth'"),
    (json.dumps({**GOOD, "vector": "fast"}), "'vector'"),
    (json.dumps({**GOOD, "matrix": {"fp32": 0}}), "'matrix.fp32'"),
    (json.dumps({**GOOD, "matrix": [1, 2]}), "'matrix'"),
    (json.dumps({**GOOD, "classes": {"norm": {"fp32": -3}}}), "'classes.norm.fp32'"),
    (json.dumps({**GOOD, "memory": -16e9}), "'memory'"),
    (json.dumps({**GOOD, "overhead": -1}), "'overhead'"),
    (json.dumps({**GOOD, "threads": "many"}), "'threads'"),
    (json.dumps(GOOD).replace("1000000000000.0", "NaN"), "NaN"),
    (json.dumps(GOOD).replace("1000000000000.0", "1e400"), "'matrix.fp32'"),
    (json.dumps(GOOD).replace("1000000000000.0", "9" * 400), "'matrix.fp32'"),
    (json.dumps(GOOD).replace("1000000000000.0", "9" * 5000), "number"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "bandwidth"}), "no 'bandwidth'"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("[1, 2]", "not a flopmeter device spec"),
])
def test_a_bad_spec_file_is_one_error(tmp_path, capfd, model, text, needle):
    f = tmp_path / "box.json"
    f.write_text(text)
    _one_error(capfd, ["roofline", model, "--input", "1x4", "--device-spec", str(f)], needle)


def test_a_spec_file_that_is_not_utf8_is_one_error(tmp_path, capfd, model):
    f = tmp_path / "box.json"
    f.write_bytes(b'{"name": "\xff"}')
    _one_error(capfd, ["roofline", model, "--input", "1x4", "--device-spec", str(f)], "not UTF-8")


def test_every_packaged_device_has_positive_finite_figures():
    for spec in table():
        assert spec.memory > 0, spec.name
        if not spec.has_compute:          # a memory-only row has no figures to check
            assert spec.matrix == {}, spec.name
            continue
        assert spec.bandwidth > 0 and spec.vector > 0, spec.name
        assert all(0 < v < 1e24 for v in spec.matrix.values()), spec.name


def test_from_dict_refuses_an_infinite_figure():
    with pytest.raises(InputError, match="bandwidth"):
        DeviceSpec.from_dict({**GOOD, "bandwidth": float("inf")})


@pytest.mark.parametrize("budget", ["9" * 400 + "GB", "2EB", "1e3GB", "0GB", "-4GB"])
def test_an_implausible_memory_budget_is_one_error(capfd, model, budget):
    _one_error(capfd, [model, "--input", "1x4", f"--fits={budget}"], "memory budget")


def test_calibrate_with_the_cache_home_a_file_is_one_error(tmp_path, capfd, monkeypatch):
    blocker = tmp_path / "cache"
    blocker.write_text("a file, not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    _one_error(capfd, ["calibrate", "--min-run-time", "0.001"], "cache folder")


def test_calibrate_with_an_unwritable_cache_is_one_error(tmp_path, capfd, monkeypatch):
    import os
    cache = tmp_path / "cache"
    (cache / "flopmeter").mkdir(parents=True)
    (cache / "flopmeter").chmod(0o500)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    try:
        if os.access(cache / "flopmeter", os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        _one_error(capfd, ["calibrate", "--min-run-time", "0.001"], "cache folder")
    finally:
        (cache / "flopmeter").chmod(0o700)
