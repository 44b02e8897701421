"""Scaling fits: exact polynomials where the cost is one (GPT-2 in sequence length, ViT in
patches), the leading exponent where it is not (a CNN in resolution), and O(·) per module."""

import json
import math
from fractions import Fraction

import pytest
import torch

import flopmeter
from flopmeter.cli import main
from flopmeter.cli.scaling import _counter, parser, scaling_table
from flopmeter.errors import InputError
from flopmeter.render.html import table_html
from flopmeter.scaling import evaluate, fit, interpolate, memory_figures, scan, size_range


def test_interpolation_is_exact_with_rational_coefficients():
    xs = [1, 2, 3, 5, 8]
    ys = [Fraction(7, 2) * x ** 3 - 4 * x + 9 for x in xs]     # 3.5·x³ − 4·x + 9 through 5 points
    assert interpolate(xs, [int(y * 2) for y in ys]) == (18, -8, 0, 7)   # doubled: 7·x³ − 8·x + 18
    assert evaluate((18, -8, 0, 7), 10) == 7 * 1000 - 80 + 18


def test_a_polynomial_passes_its_check_and_a_floored_cost_does_not():
    sizes = [16, 32, 64, 128]
    quad = fit(sizes, [3 * s * s + 5 * s for s in sizes], holdout=(48, 3 * 48 * 48 + 5 * 48))
    assert quad.exact and quad.coefficients == (0, 5, 3) and quad.big_o() == "n²"
    # a stride-2 convolution's output side is floor((s − 1) / 2) + 1: polynomial on the even grid only
    def out(s):
        return ((s - 1) // 2 + 1) ** 2 * 9
    floored = fit(sizes, [out(s) for s in sizes], holdout=(47, out(47)), variable="S")
    assert not floored.exact
    assert floored.exponent == pytest.approx(2.0)
    assert floored.big_o(two_d=True) == "H·W"


def test_size_range():
    assert size_range("128:8192") == ((128, 256, 512, 1024, 2048, 4096, 8192), 128 + 256)
    with pytest.raises(InputError):
        size_range("512:64")


def gpt2_scaling(sizes, holdout):
    args = parser().parse_args(["hf:gpt2", "--seq-len", "1:2"])
    return scan(_counter(args), sizes, holdout)


def test_gpt2_flops_in_sequence_length_equal_the_closed_form():
    result = gpt2_scaling([8, 16, 32], holdout=24)       # three sizes fix a quadratic; 24 checks it
    L, d, V = 12, 768, 50257                              # n_layer, n_embd, vocab_size of gpt2.json
    # per layer: q,k,v projections n·d·3d, output projection n·d², MLP n·d·4d + n·4d·d (12·n·d² MACs),
    # attention scores and weighted sum n·n·d each (2·n²·d MACs); the tied LM head n·d·V.
    # FLOPs (dot) = 2·MACs
    n2 = 2 * (L * 2 * d)                                  # 36,864
    n1 = 2 * (L * 12 * d * d + d * V)                     # 247,064,064
    flops = result.total["flops"]
    assert flops.exact
    assert flops.coefficients == (0, n1, n2)
    assert flops.polynomial() == f"{n2}·n² + {n1}·n"
    assert result.big_o() == "n²"
    assert result.big_o("transformer.h.0.attn") == "n²"       # attention: n²
    assert result.big_o("transformer.h.0.mlp") == "n"         # MLP: n
    assert result.modules["transformer.h.0.mlp"]["macs"].coefficients == (0, 2 * d * 4 * d)
    assert result.big_o("lm_head") == "n"
    # the table and the HTML page with its log-log plot
    table = scaling_table(result, depth=1)
    assert table.rows[0][2] == "O(n²)"
    page = table_html(table)
    assert '<svg class="plot"' in page and f"{n2}·n²" in page


def test_vit_b_16_in_patches():
    from torchvision.models import vit_b_16

    def count_at(p):                                       # p patches of 16×16: a side of 16·√p pixels
        side = 16 * math.isqrt(p)
        with torch.device("meta"):
            model = vit_b_16(image_size=side)
        return flopmeter.count(model, input_shape=(1, 3, side, side))

    result = scan(count_at, [4, 9, 16, 36], holdout=25, variable="p")
    d, layers, classes = 768, 12, 1000
    # tokens L = p + 1 (class token). Patch embedding p·d·3·16·16 = p·d²; per layer 4·L·d² for the
    # q, k, v and output projections, 2·L²·d for the attention, 2·L·d·4d for the MLP; the head d·classes.
    # Σ = d²·p + layers·(12·d²·(p + 1) + 2·d·(p + 1)²) + d·classes, expanded in p:
    c2 = layers * 2 * d
    c1 = d * d + layers * (12 * d * d + 4 * d)
    c0 = layers * (12 * d * d + 2 * d) + d * classes
    macs = result.total["macs"]
    assert macs.exact and macs.coefficients == (c0, c1, c2)
    assert result.big_o("encoder.layers.encoder_layer_0.self_attention") == "p²"
    assert result.big_o("encoder.layers.encoder_layer_0.mlp") == "p"
    assert result.big_o("conv_proj") == "p"


def test_cnn_in_resolution_fits_the_exponent(tmp_path, capsys):
    out = tmp_path / "scaling.json"
    assert main(["scaling", "torchvision:resnet18", "--input-size", "32:256", "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["sizes"] == [32, 64, 128, 256] and data["variable"] == "S"
    assert data["modules"]["conv1"]["macs"]["big_o"] == "H·W"
    assert data["modules"]["layer1.0.conv1"]["macs"]["big_o"] == "H·W"
    assert data["modules"]["fc"]["macs"]["big_o"] == "1"     # after global pooling: constant
    assert data["modules"][""]["macs"]["exponent"] == pytest.approx(2.0, abs=0.02)


def test_scaling_user_errors(capsys):
    assert main(["scaling", "hf:gpt2", "--seq-len", "64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read the size range '64'") and "hint:" in err
    # --seq-len on an image model changes nothing: said, not fitted as O(1)
    assert main(["scaling", "torchvision:alexnet", "--seq-len", "8:64"]) == 2
    err = capsys.readouterr().err
    assert "--seq-len applies to hf: text models only" in err and "hint: " in err     # refused before counting


def test_memory_totals_are_fitted_when_the_report_has_them():
    """A report dict's memory section (MemoryReport's shape) gives total figures to fit."""
    memory = {"total": 4096, "device": "cpu", "timeline": {"peak": {"bytes": 60}, "live": [16, 60, 28],
                                                           "activations": [0, 12, 8]}}
    assert memory_figures(memory) == {"memory.total": 4096, "memory.peak": 60, "memory.activations": 12}
    assert memory_figures(None) == {}

    class WithMemory:                     # a report whose dict carries memory linear in the size
        def __init__(self, report, size):
            self._r, self._size = report, size

        def __getattr__(self, name):
            return getattr(self._r, name)

        def to_dict(self, ops=True):
            return {**self._r.to_dict(ops=ops), "memory": {"total": 100 * self._size + 7}}

    def count_at(n):
        return WithMemory(flopmeter.count(torch.nn.Linear(4, 4), input_shape=(n, 4)), n)

    result = scan(count_at, [1, 2, 4], holdout=3)
    assert result.total["memory.total"].coefficients == (7, 100)
    assert result.total["macs"].coefficients == (0, 4 * 4)       # n·I·O
