"""Model-provided names (module names, class names, model names) holding terminal escape
sequences, BEL, C1 controls and bidirectional overrides never reach the terminal or a file raw:
every human-readable format shows them as escapes, and JSON keeps them as JSON escapes."""

import json
import re

import pytest

from flopmeter.cli import main
from flopmeter.render.escape import visible, visible_text

CLEAR, TITLE, BEL, RLO, CSI = "\x1b[2J", "\x1b]0;title\x07", "\x07", "\u202e", "\x9b"
# every control character a terminal acts on, except the newline and tab a format may need
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

MODEL_FILE = f'''
import torch
from torch import nn

Evil = type("Evil{CLEAR}{RLO}", (nn.Linear,), {{}})


def build():
    model = nn.Sequential()
    model.add_module("a{CLEAR}b", nn.Linear(4, 4))
    model.add_module("t{TITLE}", nn.ReLU())
    model.add_module("bel{BEL}", Evil(4, 4))
    model.add_module("rlo{RLO}x{CSI}y", nn.Linear(4, 2))
    return model.eval()
'''


@pytest.fixture
def spec(tmp_path) -> str:
    f = tmp_path / f"evil{BEL}model.py"
    f.write_text(MODEL_FILE, encoding="utf-8")
    return f"{f}:build"


def test_visible_escapes_every_control_but_those_kept():
    assert visible("a\x1b[2Jb\x07\u202e\x9b\x7f\n") == "a\\x1b[2Jb\\x07\\u202e\\x9b\\x7f\\x0a"
    assert visible_text("x\x1b]0;t\x07\ny\tz") == "x\\x1b]0;t\\x07\ny\tz"


@pytest.mark.parametrize("argv", [
    ["--format", "table"], ["--format", "table", "--depth", "-1"], ["--view", "keras"], ["--ops"],
    ["--format", "md"], ["--format", "csv"], ["--format", "html"], ["--format", "md", "--view", "keras"],
    ["--format", "csv", "--ops"], ["--format", "json"], ["--memory"],
], ids=lambda a: "_".join(x.strip("-") for x in a))
def test_count_output_has_no_raw_control_characters(spec, capfd, argv):
    assert main([spec, "--input", "1x4", *argv]) == 0
    out, err = capfd.readouterr()
    assert "\\x1b" in out or "\\u001b" in out or "\\x1B" in out     # the names are shown, escaped
    assert not RAW_CONTROL.search(out), repr(RAW_CONTROL.search(out))
    assert not RAW_CONTROL.search(err)
    if "json" in argv:
        json.loads(out)


def test_output_file_has_no_raw_control_characters(spec, tmp_path, capfd):
    for suffix in ("md", "csv", "html", "txt"):
        target = tmp_path / f"report.{suffix}"
        assert main([spec, "--input", "1x4", "-o", str(target)]) == 0
        assert not RAW_CONTROL.search(target.read_text(encoding="utf-8")), suffix


@pytest.mark.parametrize("fmt", ["table", "md", "csv", "html", "json"])
def test_compare_output_has_no_raw_control_characters(spec, capfd, fmt):
    assert main(["compare", spec, spec, "--input", "1x4", "--format", fmt]) == 0
    out, err = capfd.readouterr()
    assert not RAW_CONTROL.search(out + err)


@pytest.mark.parametrize("fmt", ["table", "md", "csv", "html", "json"])
def test_diff_output_has_no_raw_control_characters(spec, tmp_path, capfd, fmt):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    assert main([spec, "--input", "1x4", "-o", str(old)]) == 0
    assert main([spec, "--input", "2x4", "-o", str(new)]) == 0
    data = json.loads(new.read_text())
    data["modules"]["children"][0]["path"] = f"grown{TITLE}"
    new.write_text(json.dumps(data))
    capfd.readouterr()
    main(["diff", str(old), str(new), "--format", fmt])
    out, err = capfd.readouterr()
    assert "grown" in out
    assert not RAW_CONTROL.search(out + err)


def test_explain_output_has_no_raw_control_characters(spec, capfd):
    assert main(["explain", spec, f"bel{BEL}", "--input", "1x4"]) == 0
    out, err = capfd.readouterr()
    assert "Evil" in out and not RAW_CONTROL.search(out + err)


def test_error_line_has_no_raw_control_characters(spec, capfd):
    assert main(["explain", spec, "\x1b]0;pwned\x07", "--input", "1x4"]) == 2
    err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["error", "hint"]
    assert "\\x1b]0;pwned\\x07" in lines[0]
    assert not RAW_CONTROL.search(err)


def test_renderer_text_from_python_has_no_raw_control_characters(spec):
    import runpy

    import flopmeter
    from flopmeter.render import RENDERERS
    model = runpy.run_path(spec.rsplit(":", 1)[0])["build"]()
    report = flopmeter.count(model, input_shape=(1, 4))
    for name, renderer in RENDERERS.items():
        for view in ("tree", "keras") + (("ops",) if name != "html" else ()):
            text = renderer.report(report, view=view, depth=None)
            assert not RAW_CONTROL.search(text), (name, view)
