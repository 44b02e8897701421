"""The command line's own surface: ``flopmeter --help`` lists every command and, like
``--version``, starts without importing PyTorch; ``flopmeter count SPEC`` is the spelled-out
form of ``flopmeter SPEC``; a misspelled command gets a suggestion."""

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from flopmeter.cli import COMMANDS, main

SRC = Path(__file__).resolve().parents[1] / "src"
EVERY_COMMAND = ["count", "compare", "diff", "explain", "scaling", "bench", "sweep", "roofline", "calibrate", "devices",
                 "serve", "plan"]


def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("flag", ["--help", "-h", "--version"])
def test_help_and_version_import_no_torch(flag):
    out = _python("import sys\nfrom flopmeter.cli import main\ncode = main([%r])\n"
                  "print(code, sorted(m for m in ('torch', 'transformers', 'numpy', 'rich') if m in sys.modules))"
                  % flag)
    assert out.splitlines()[-1] == "0 []", out


def test_importing_the_package_imports_no_torch_until_a_verb_is_used():
    out = _python("import sys, flopmeter\nprint('torch' in sys.modules)\n"
                  "import torch\nprint(flopmeter.count(torch.nn.Linear(3, 2), input_shape=(1, 3)).macs)")
    assert out.split() == ["False", str(3 * 2)]


def test_explain_stays_the_function_when_its_module_is_imported_first():
    out = _python("import flopmeter.explain\nimport flopmeter\nprint(callable(flopmeter.explain), "
                  "flopmeter.explain is flopmeter.explain.__globals__['explain'])")
    assert out.split() == ["True", "True"]


def test_version_comes_from_the_installed_distribution(capsys):
    import flopmeter
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"flopmeter {version('flopmeter')}\n"
    assert flopmeter.__version__ == version("flopmeter")


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert sorted(COMMANDS) == sorted(EVERY_COMMAND)
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.split()]
    assert [name for name in listed if name in EVERY_COMMAND] == EVERY_COMMAND, out


@pytest.mark.parametrize("name", EVERY_COMMAND)
def test_each_command_has_its_own_help(capsys, name):
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: flopmeter {name}"), out[:100]


def _factory(tmp_path: Path) -> str:
    f = tmp_path / "tiny.py"
    f.write_text("from torch import nn\n\ndef build():\n    return nn.Linear(4, 3).eval()\n")
    return f"{f}:build"


def test_count_spec_is_the_spelled_out_form_of_spec(tmp_path, capsys):
    spec = _factory(tmp_path)
    assert main(["count", spec, "--input", "2x4", "--format", "json"]) == 0
    spelled = json.loads(capsys.readouterr().out)
    assert main([spec, "--input", "2x4", "--format", "json"]) == 0
    short = json.loads(capsys.readouterr().out)
    assert spelled == short
    assert spelled["totals"]["macs"] == 2 * 4 * 3


def test_count_usage_error_points_at_count_help(capsys):
    assert main(["count"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: the following arguments are required: spec",
                   "hint: 'flopmeter count --help' lists the options"]


@pytest.mark.parametrize("word, meant", [("compar", "compare"), ("cout", "count"), ("calibrat", "calibrate")])
def test_misspelled_command_gets_a_suggestion(capsys, word, meant):
    assert main([word, "x"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: unknown command '{word}'", f"hint: did you mean 'flopmeter {meant}'?"]
