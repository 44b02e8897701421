"""Warnings during a command-line count: the user's own code's warnings show once each,
flopmeter's notes become ``note:`` lines, library warnings stay hidden unless ``--debug``,
and the command ends (a warning is never re-emitted into the list that holds it)."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from flopmeter.cli.quiet import quiet_torch
from flopmeter.errors import FlopmeterNote

SRC = Path(__file__).resolve().parents[1] / "src"

WARNMODEL = """\
import warnings
from torch import nn


def build():
    warnings.warn("x")
    return nn.Linear(4, 3).eval()


class Leaky(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        warnings.warn("a file was left open", ResourceWarning)
        return self.lin(x)


def leaky():
    return Leaky().eval()
"""


def _run_cli(tmp_path: Path, spec: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run([sys.executable, "-m", "flopmeter", spec, "--input", "1x4", "--format", "csv"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)


@pytest.mark.parametrize("factory, text, category", [
    ("build", "x", "UserWarning"),
    ("leaky", "a file was left open", "ResourceWarning"),
])
def test_a_warning_from_the_users_code_shows_once_and_the_command_ends(tmp_path, factory, text, category):
    (tmp_path / "warnmodel.py").write_text(WARNMODEL)
    done = _run_cli(tmp_path, f"warnmodel.py:{factory}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("path,"), done.stdout[:200]     # the table was written
    shown = [line for line in done.stderr.splitlines() if f"{category}: {text}" in line]
    assert len(shown) == 1, done.stderr
    assert "warnmodel.py" in shown[0]


def _shown(monkeypatch) -> list[str]:
    """What reaches the ``showwarning`` in effect before the count (pytest records warnings itself)."""
    shown: list[str] = []
    monkeypatch.setattr(warnings, "showwarning",
                        lambda message, category, filename, lineno, file=None, line=None:
                        shown.append(f"{filename}:{lineno}: {category.__name__}: {message}"))
    return shown


def test_notes_print_once_and_library_warnings_stay_hidden(capsys, monkeypatch):
    shown = _shown(monkeypatch)
    site = str(Path("/venv/lib/python3/site-packages/somelib/mod.py"))
    registry: dict = {}           # what warnings.warn keeps per module: one showing per place
    with quiet_torch():
        for _ in range(3):
            warnings.warn("the count used eager mode", FlopmeterNote)
            warnings.warn_explicit("deprecated inside a library", DeprecationWarning, site, 10, registry=registry)
            warnings.warn_explicit("from the user's model", UserWarning, "/home/me/model.py", 7, registry=registry)
    assert capsys.readouterr().err.splitlines() == ["note: the count used eager mode"]
    assert shown == ["/home/me/model.py:7: UserWarning: from the user's model"]


def test_debug_shows_library_warnings(monkeypatch):
    shown = _shown(monkeypatch)
    site = str(Path("/venv/lib/python3/site-packages/somelib/mod.py"))
    with quiet_torch(debug=True):
        warnings.warn_explicit("deprecated inside a library", DeprecationWarning, site, 10)
    assert shown == [f"{site}:10: DeprecationWarning: deprecated inside a library"]


def test_the_warning_machinery_is_put_back(monkeypatch):
    _shown(monkeypatch)
    before = (warnings.showwarning, list(warnings.filters))
    with quiet_torch():
        warnings.warn("x")
    assert (warnings.showwarning, list(warnings.filters)) == before


def test_a_warning_made_an_error_by_the_users_warning_options_still_raises(monkeypatch):
    monkeypatch.setattr(sys, "warnoptions", ["error"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning), quiet_torch():
            warnings.warn("x")
