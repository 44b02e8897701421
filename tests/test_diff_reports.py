"""``flopmeter diff`` on reports that are not what a count writes: each is one error line with a
hint and exit status 2; a figure that grew from 0 is written as null ("new") in JSON, never as
Infinity."""

import json
import re

import pytest
import torch
from torch import nn

import flopmeter
from flopmeter.cli import main
from cli_checks import one_error


def _strict_json(text: str):
    def refuse(name):
        raise AssertionError(f"{name} in JSON output")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def report() -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    return json.loads(flopmeter.count(model, input_shape=(1, 4)).to_json(ops=True))


def _write(tmp_path, name, data) -> str:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(p)


def _one_error(capfd, argv, needle):
    capfd.readouterr()
    error, _ = one_error(capfd, main(argv))
    assert needle in error, error


def _edited(report, edit) -> dict:
    data = json.loads(json.dumps(report))
    edit(data)
    return data


@pytest.mark.parametrize("where, edit", [
    ("totals.macs", lambda d: d["totals"].update(macs=-16)),
    ("params.count", lambda d: d["params"].update(count=-1)),
    ("MACs of module", lambda d: d["modules"]["children"][0]["total"].update(macs=-5)),
    ("unsupported", lambda d: d.update(unsupported={"aten.foo": -2})),
    ("totals.macs", lambda d: d["totals"].update(macs=10**40)),
])
def test_negative_or_huge_figures_are_refused(tmp_path, capfd, report, where, edit):
    good = _write(tmp_path, "good.json", report)
    bad = _write(tmp_path, "bad.json", _edited(report, edit))
    _one_error(capfd, ["diff", good, bad], where)


def test_a_figure_grown_from_zero_is_null_in_json(tmp_path, capfd, report):
    def zero(d):
        d["totals"]["bytes_written"] = 0
        d["modules"]["children"][0]["total"]["macs"] = 0
    old = _write(tmp_path, "old.json", _edited(report, zero))
    new = _write(tmp_path, "new.json", report)
    assert main(["diff", old, new, "--format", "json"]) == 1
    out = capfd.readouterr().out
    data = _strict_json(out)
    rows = {r["figure"]: r for r in data["rows"]}
    assert rows["bytes written"]["change_percent"] is None and "bytes written" in data["grown"]
    assert rows["MACs of 0"]["change_percent"] is None
    assert main(["diff", old, new]) == 1
    assert re.search(r"bytes written .* new", capfd.readouterr().out)


@pytest.mark.parametrize("rows", [
    [1, 2], [{"op": "aten.mm"}], [{"op": 5, "cost": {"macs": 1}}], [{"op": "aten.mm", "cost": {"macs": "x"}}],
    [{"op": "aten.mm", "cost": []}], "not a list",
])
def test_malformed_op_rows_are_refused(tmp_path, capfd, report, rows):
    good = _write(tmp_path, "good.json", report)
    bad = _write(tmp_path, "bad.json", _edited(report, lambda d: d.update(ops=rows)))
    _one_error(capfd, ["diff", good, bad, "--by", "op"], "op row")


def test_deep_nesting_is_refused(tmp_path, capfd, report):
    good = _write(tmp_path, "good.json", report)
    bad = _write(tmp_path, "deep.json", "[" * 200_000 + "]" * 200_000)
    _one_error(capfd, ["diff", good, bad], "nested too deeply")


def test_invalid_utf8_is_refused(tmp_path, capfd, report):
    good = _write(tmp_path, "good.json", report)
    bad = tmp_path / "latin.json"
    bad.write_bytes(b'{"schema": "\xff\xfe"}')
    _one_error(capfd, ["diff", good, str(bad)], "not UTF-8")


def test_integer_past_the_digit_limit_is_refused(tmp_path, capfd, report):
    good = _write(tmp_path, "good.json", report)
    bad = _write(tmp_path, "big.json", '{"n": ' + "9" * 10_000 + "}")
    _one_error(capfd, ["diff", good, bad], "number")


@pytest.mark.parametrize("text", ['{"totals": NaN}', '[1, 2]', '"a string"', '{"schema": 3}'])
def test_json_that_is_not_a_report_is_refused(tmp_path, capfd, report, text):
    good = _write(tmp_path, "good.json", report)
    bad = _write(tmp_path, "bad.json", text)
    _one_error(capfd, ["diff", good, bad], "bad.json")
