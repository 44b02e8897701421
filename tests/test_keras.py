"""Keras 3 models on the PyTorch backend: counts, Keras layer names, the Keras-style summary."""

import os

import pytest

if os.environ.setdefault("KERAS_BACKEND", "torch") != "torch":
    pytest.skip("Keras is set to another backend in this environment", allow_module_level=True)
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":
    pytest.skip("Keras was imported with another backend", allow_module_level=True)

import torch                           # noqa: E402
from keras import layers               # noqa: E402

import flopmeter                       # noqa: E402
from flopmeter.cli import main         # noqa: E402
from flopmeter.errors import InputError  # noqa: E402
from flopmeter.render.tables import keras_table  # noqa: E402


def seed_cnn():
    return keras.Sequential([keras.Input((224, 224, 3)), layers.Conv2D(16, (2, 2), name="conv"),
                             layers.MaxPooling2D(2, name="pool"), layers.Dense(133, name="dense")], name="seed")


def test_seed_example_summary_208_0_2261():
    model = seed_cnn()
    report = flopmeter.count(model, input_shape=(1, 224, 224, 3))
    table = keras_table(report)
    rows = {r[0]: r for r in table.rows}
    assert list(rows) == ["conv (Conv2D)", "pool (MaxPooling2D)", "dense (Dense)"]
    assert [r[2] for r in table.rows] == [208, 0, 2261]            # params per layer, as the tutorial prints
    assert [r[2] for r in table.rows] == [model.get_layer(n).count_params() for n in ("conv", "pool", "dense")]
    assert rows["conv (Conv2D)"][1] == "(None, 223, 223, 16)"       # what model.summary() prints
    assert rows["pool (MaxPooling2D)"][1] == "(None, 111, 111, 16)"
    assert rows["dense (Dense)"][1] == "(None, 111, 111, 133)"
    conv_macs = 1 * 16 * 223 * 223 * 3 * 2 * 2        # N·C_out·H·W·C_in·K·K
    dense_macs = 1 * 111 * 111 * 16 * 133             # rows·I·O over every pixel
    assert [r[3] for r in table.rows] == [conv_macs, 0, dense_macs]
    assert [r[4] for r in table.rows] == [2 * conv_macs, 0, 2 * dense_macs]   # dot convention
    assert report.macs == conv_macs + dense_macs
    assert report.params.count == 2469 == model.count_params()
    assert ("Total params", "2,469") in table.footer
    assert report.model == "seed"


def test_sequential_cnn_closed_form():
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        layers.Conv2D(8, 3, padding="same", activation="relu", name="c1"),
        layers.BatchNormalization(name="bn"),
        layers.MaxPooling2D(2, name="p1"),
        layers.Conv2D(16, 3, name="c2"),
        layers.GlobalAveragePooling2D(name="gap"),
        layers.Dense(10, name="fc"),
    ])
    report = flopmeter.count(model, input_shape=(2, 32, 32, 3))
    c1 = 2 * 8 * 32 * 32 * 3 * 3 * 3            # N·C_out·H·W·C_in·K·K ('same' padding)
    c2 = 2 * 16 * 14 * 14 * 8 * 3 * 3           # 16×16 pooled → 14×14 (valid)
    fc = 2 * 16 * 10
    assert report.module("c1").total.macs == c1
    assert report.module("c2").total.macs == c2
    assert report.module("fc").total.macs == fc
    assert report.macs == c1 + c2 + fc
    assert report.module("c1").params_own == 8 * 3 * 3 * 3 + 8
    assert report.module("bn").params_own == 4 * 8       # gamma, beta + moving mean, variance (Keras counts them)
    assert report.params.count == model.count_params()
    assert report.params.frozen == 2 * 8                 # Keras' "Non-trainable params"
    assert report.unsupported == {}


def test_multi_head_attention_closed_form():
    L, d, h, k = 12, 32, 4, 8
    x = keras.Input((L, d))
    model = keras.Model(x, layers.MultiHeadAttention(h, k, name="mha")(x, x))
    report = flopmeter.count(model, input_shape=(1, L, d))
    projections = 3 * L * d * h * k + L * h * k * d   # q, k, v (d → h·k) and output (h·k → d)
    core = 2 * h * L * L * k                           # scores q·kᵀ and the weighted sum
    assert report.macs == projections + core
    assert report.module("mha").total.macs == projections + core
    assert report.module("mha.query").total.macs == L * d * h * k
    assert report.module("mha").params_total == 4 * d * h * k + 3 * h * k + d == model.count_params()
    rows = keras_table(report).rows                     # model.summary() has one row for the layer
    assert [r[0] for r in rows] == ["mha (MultiHeadAttention)"]
    assert rows[0][2:4] == [model.count_params(), projections + core]


def test_model_is_left_as_found():
    model = seed_cnn()
    before = [v.value.detach().clone() for v in model.weights]
    variables = list(model.weights)
    attrs = {id(layer): dict(vars(layer)) for layer in model._flatten_layers()}
    for mode in ("fake", "real"):
        flopmeter.count(model, input_shape=(1, 224, 224, 3), options=flopmeter.Options(mode=mode))
    assert [v is w for v, w in zip(model.weights, variables)] == [True] * len(variables)
    assert all(torch.equal(b, v.value) for b, v in zip(before, model.weights))
    for layer in model._flatten_layers():
        assert vars(layer).keys() == attrs[id(layer)].keys()
        assert all(vars(layer)[k] is v for k, v in attrs[id(layer)].items())


def test_real_and_fake_agree():
    model = seed_cnn()
    fake = flopmeter.count(model, torch.randn(1, 224, 224, 3))
    real = flopmeter.count(model, torch.randn(1, 224, 224, 3), options=flopmeter.Options(mode="real"))
    assert (fake.macs, fake.params.count) == (real.macs, real.params.count)


def test_unbuilt_model_is_refused():
    model = keras.Sequential([layers.Dense(4)])
    with pytest.raises(InputError, match="not built"):
        flopmeter.count(model, input_shape=(1, 3))
    assert not model.built


def test_cli_file_spec(tmp_path, capsys):
    (tmp_path / "kmodel.py").write_text(
        "import keras\n"
        "def build():\n"
        "    return keras.Sequential([keras.Input((224, 224, 3)), keras.layers.Conv2D(16, (2, 2)),\n"
        "                             keras.layers.MaxPooling2D(2), keras.layers.Dense(133)])\n")
    code = main([f"{tmp_path / 'kmodel.py'}:build", "--input", "1x224x224x3", "--view", "keras", "--format", "md"])
    out = capsys.readouterr().out
    assert code == 0
    assert "| 208 |" in out and "| 2,261 |" in out
    assert f"{1 * 16 * 223 * 223 * 3 * 2 * 2:,}" in out
