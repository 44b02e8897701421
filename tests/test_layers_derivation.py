"""The derivation machinery: formulas are evaluated from their own text, exactly."""

import pytest
import torch
from torch import nn

from flopmeter import NoClosedFormError
from flopmeter.layers import Work, derive
from flopmeter.layers.derivation import evaluate, substitute


def test_evaluator_is_exact_and_reads_textbook_notation():
    env = {"H_in": 224, "p": 3, "d": 1, "K": 7, "s": 2, "C_in": 64, "g": 4}
    assert evaluate("⌊(H_in + 2·p − d·(K − 1) − 1)/s⌋ + 1", env) == (224 + 2 * 3 - 1 * (7 - 1) - 1) // 2 + 1
    assert evaluate("⌈(H_in − 1)/s⌉", env) == 112
    assert evaluate("(C_in/g)·K²", env) == 64 // 4 * 7 ** 2
    assert evaluate("m·(m + 1)/2", {"m": 5}) == 15                  # exact: no rounding along the way
    assert evaluate("H_in + s − gcd(H_in, s) + min(K, s)", env) == 224 + 2 - 2 + 2
    with pytest.raises(ValueError, match="not a whole number"):
        evaluate("K/s", env)
    with pytest.raises(ValueError, match="unknown symbol"):
        evaluate("K·x", env)


def test_substitution_replaces_symbols_and_shows_whole_quotients_as_values():
    env = {"C_in": 64, "g": 4, "K_h": 3, "d": 256}
    assert substitute("N·(C_in/g)·K_h·d²", env) == "N·16·3·256²"   # N is unknown here: kept
    assert substitute("(C_in/3)", env) == "(64/3)"


def test_steps_and_totals():
    w = Work("layer", "float32[2, 3]", n=6)
    w.count("elementwise", "4·n", note="statistics")
    w.count("elementwise", "n", note="weight")
    w.count("transcendental", "1")
    d = w.done()
    assert d.cost.elementwise == 4 * 6 + 6 and d.cost.transcendental == 1
    assert str(d.steps[0]) == "elementwise (statistics) = 4·n = 4·6 = 24"
    assert "elementwise = 24 + 6 = 30" in d.render()
    assert "FLOPs (exact) = 2·MACs − dots + elementwise + transcendental = 2·0 − 0 + 30 + 1 = 31" in d.render()
    assert d.symbolic() == ["elementwise (statistics) = 4·n", "elementwise (weight) = n", "transcendental = 1"]


def test_lookup_follows_subclasses_that_keep_the_forward():
    class MyLinear(nn.Linear):
        pass

    class Patched(nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2

    x = torch.randn(2, 3)
    assert derive(MyLinear(3, 4), x).cost.macs == 2 * 3 * 4
    with pytest.raises(NoClosedFormError, match="no closed form for Patched"):
        derive(Patched(3, 4), x)
