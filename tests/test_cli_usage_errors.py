"""A mistake on any command's command line (a missing argument, an unknown or misspelled
option, a bad value) is one ``error:`` line and one ``hint:`` line on stderr, exit status 2,
nothing on stdout; a misspelled option's hint names the closest option."""

import pytest

from flopmeter.cli import _fail, main
from flopmeter.errors import InputError

SPEC = "tiny.py:build"      # never built: every case fails while its command line is read


# argv → (the error line's text, the hint line's text)
CASES = {
    ("count",): ("the following arguments are required: spec", "'flopmeter count --help' lists the options"),
    (SPEC, "--inptu", "1x4"): ("unrecognized arguments: --inptu 1x4", "did you mean '--input'?"),
    (SPEC, "--depth", "two"): ("argument --depth: 'two' is not a whole number", "'flopmeter count --help'"),
    ("count", SPEC, "--formt", "json"): ("unrecognized arguments: --formt json", "did you mean '--format'?"),
    ("compare",): ("the following arguments are required: SPEC", "'flopmeter compare --help'"),
    ("compare", SPEC, "--bogus"): ("unrecognized arguments: --bogus", "'flopmeter compare --help'"),
    ("diff", "a.json"): ("the following arguments are required: new", "'flopmeter diff --help'"),
    ("diff", "a.json", "b.json", "--treshold", "1"): ("unrecognized arguments: --treshold 1",
                                                     "did you mean '--threshold'?"),
    ("explain", SPEC): ("the following arguments are required: path", "'flopmeter explain --help'"),
    ("explain", SPEC, "lin", "--chek"): ("unrecognized arguments: --chek", "did you mean '--check'?"),
    ("scaling", SPEC): ("one of the arguments --seq-len --input-size is required", "'flopmeter scaling --help'"),
    ("bench",): ("the following arguments are required: SPEC", "'flopmeter bench --help'"),
    ("bench", SPEC, "--min-tme", "1"): ("unrecognized arguments: --min-tme 1", "did you mean '--min-time'?"),
    ("sweep", SPEC, "-o", "x.csv", "--jobz", "2"): ("unrecognized arguments: --jobz 2", "did you mean '--jobs'?"),
    ("roofline", SPEC): ("the following arguments are required: --device-spec", "'flopmeter roofline --help'"),
    ("roofline", SPEC, "--device-spec", "h100", "--tpo", "3"): ("unrecognized arguments: --tpo 3",
                                                                "did you mean '--top'?"),
    ("calibrate", "--device", "tpu"): ("argument --device: invalid choice: 'tpu'", "'flopmeter calibrate --help'"),
    ("calibrate", "--devcie", "cpu"): ("unrecognized arguments: --devcie cpu", "did you mean '--device'?"),
}


@pytest.mark.parametrize("argv", list(CASES), ids=" ".join)
def test_a_command_line_mistake_is_one_error_and_one_hint(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    assert main(list(argv)) == 2
    out, err = capsys.readouterr()
    error, hint = CASES[argv]
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("error: ") and error in lines[0], err
    assert lines[1].startswith("hint: ") and hint in lines[1], err
    assert out == ""
    assert not (tmp_path / "x.csv").exists()


def test_an_error_without_its_own_hint_still_gets_one(capsys):
    assert _fail(InputError("something was wrong"), "flopmeter diff") == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: something was wrong",
        "hint: 'flopmeter diff --help' lists the options; add --debug to see where it failed"]
