"""docs/formulas.md is generated from the registered closed forms and kept up to date; every
registered layer type has its formulas there."""

import re
from pathlib import Path

import pytest
from torch import nn

from flopmeter.layers import LAYERS, Layers, closed_form
from flopmeter.layers.docs import UNDOCUMENTED, render_markdown

DOC = Path(__file__).parent.parent / "docs" / "formulas.md"


def test_docs_page_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == render_markdown(), \
        "regenerate: python -m flopmeter.layers.docs > docs/formulas.md"


def test_every_registered_layer_has_a_documented_formula():
    text = DOC.read_text(encoding="utf-8")
    for t in LAYERS.types():
        entry = re.search(rf"^- `nn\.{t.__name__}` (.*)$", text, re.MULTILINE)
        assert entry, f"nn.{t.__name__} is missing from docs/formulas.md"
        assert UNDOCUMENTED not in entry.group(1) and " = " in entry.group(1), f"nn.{t.__name__}: no formula"


def test_a_layer_registered_without_an_example_shows_up_as_undocumented(monkeypatch):
    class Scale(nn.Module):             # needs a constructor argument, and has no example
        def __init__(self, k: float):
            super().__init__()
            self.k = k

    registry = Layers()
    registry.register(Scale)(lambda m, call: None)
    monkeypatch.setattr("flopmeter.layers.docs.LAYERS", registry)
    assert f"- `nn.Scale`: {UNDOCUMENTED}" in render_markdown()


def test_registering_a_type_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        closed_form(nn.Linear)(lambda m, call: None)
