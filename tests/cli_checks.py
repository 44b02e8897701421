"""What a refused command line must print: exit 2, nothing on stdout, exactly one ``error:`` line
and one ``hint:`` line on stderr, no traceback."""


def one_error(capture, code: int) -> tuple[str, str]:
    """The (error, hint) lines of a refused run; ``capture`` is pytest's capsys or capfd."""
    out, err = capture.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, err
    assert out == "", out
    assert "Traceback" not in err
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), err
    return lines[0], lines[1]
