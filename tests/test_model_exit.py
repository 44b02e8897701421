"""A model whose own code exits (``SystemExit`` or another BaseException) during a count: the
command line says so in one ``error:`` line and a ``hint:``, exit status 2, and does not take
the model's exit status; Ctrl-C (KeyboardInterrupt) stays an interrupt, exit status 130."""

from pathlib import Path

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter import ModelForwardError
from flopmeter.cli import main

MODELS = """\
from torch import nn


class Stop(BaseException):
    pass


class Raising(nn.Module):
    def __init__(self, exc):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.exc = exc

    def forward(self, x):
        raise self.exc


def exits():
    return Raising(SystemExit(7)).eval()


def stops():
    return Raising(Stop()).eval()


def interrupted():
    return Raising(KeyboardInterrupt()).eval()
"""


def _spec(tmp_path: Path, factory: str) -> str:
    f = tmp_path / "exiting.py"
    f.write_text(MODELS)
    return f"{f}:{factory}"


@pytest.mark.parametrize("factory, said", [("exits", "SystemExit: 7"), ("stops", "Stop")])
def test_a_model_that_exits_is_one_error_line(tmp_path, capsys, factory, said):
    code = main([_spec(tmp_path, factory), "--input", "1x4"])
    out, err = capsys.readouterr()
    assert code == 2, err
    lines = err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["error", "hint"], err
    assert said in lines[0]
    assert out == ""


def test_a_keyboard_interrupt_from_the_model_stays_an_interrupt(tmp_path, capsys):
    assert main([_spec(tmp_path, "interrupted"), "--input", "1x4"]) == 130
    assert capsys.readouterr().err == "error: interrupted\n"


def test_from_python_a_forward_calling_sys_exit_is_a_model_forward_error():
    class Exits(nn.Module):
        def forward(self, x):
            raise SystemExit(7)

    with pytest.raises(ModelForwardError, match=r"SystemExit: 7") as info:
        flopmeter.count(Exits().eval(), torch.randn(1, 4))
    assert isinstance(info.value.__cause__, SystemExit)
