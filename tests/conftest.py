import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))   # tests/models.py, tests/guards.py
sys.path.insert(0, str(Path(__file__).parent / "data"))   # tests/data/tiny_model.py


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/* from the current output")


@pytest.fixture
def golden(request):
    """golden(name, text): compare with tests/golden/NAME, or rewrite it with --update-golden."""
    def check(name: str, text: str):
        path = Path(__file__).parent / "golden" / name
        if request.config.getoption("--update-golden"):
            path.write_text(text)
        assert path.exists(), f"missing golden file {path}; run pytest --update-golden"
        assert text == path.read_text(), f"{name} differs from its golden file (pytest --update-golden rewrites it)"
    return check
