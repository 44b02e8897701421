import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))   # tests/models.py, tests/guards.py, tests/oracle.py
sys.path.insert(0, str(Path(__file__).parent / "data"))   # tests/data/tiny_model.py

# Property tests: a fixed, reproducible draw by default; FLOPMETER_HYPOTHESIS=thorough explores more.
settings.register_profile("default", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("FLOPMETER_HYPOTHESIS", "default"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _every_json_report_validates():
    """Every report the suite turns into a dict or JSON is validated against the shipped schema
    (src/flopmeter/report/schema.json); a report that does not validate fails its test."""
    import jsonschema

    from flopmeter.report.model import Report
    from flopmeter.report.schema import json_schema

    validator = jsonschema.Draft202012Validator(json_schema())
    original = Report.to_dict

    def to_dict(self, **kwargs):
        d = original(self, **kwargs)
        validator.validate(d)
        VALIDATED.append(d["model"])
        return d

    Report.to_dict = to_dict
    yield
    Report.to_dict = original


VALIDATED: list[str] = []      # models whose reports were validated (test_report_schema checks it grows)


_REPORTED = ("torch", "torchvision", "timm", "transformers", "kernels", "onnx", "keras", "rich", "pandas")


def pytest_report_header(config):
    """The versions of the libraries whose behaviour the suite depends on, as pip resolved them."""
    from importlib import metadata

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "absent"
    return "libraries: " + ", ".join(f"{name} {version(name)}" for name in _REPORTED)


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
