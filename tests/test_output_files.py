"""Output files as a contract: the user's umask, one error line for unwritable targets, a CSV
pandas reads as numbers, a JSON report that validates against the shipped schema (and the
previous schema version still read by diff), and a golden file per output format."""

import io
import json
import os
from pathlib import Path

import jsonschema
import pytest

from flopmeter.cli import main
from flopmeter.report.schema import READABLE, SCHEMA, SCHEMA_FILE, json_schema

DATA = Path(__file__).parent / "data"
TINY = f"{DATA / 'tiny_model.py'}:build"
CONV_MACS = 1 * 8 * 16 * 16 * 3 * 3 * 3      # N·C_out·H·W·C_in·K·K
HEAD_MACS = 1 * 512 * 10                      # N·in·out
TINY_MACS = CONV_MACS + HEAD_MACS


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def umask():
    def set_mask(mask):
        previous = os.umask(mask)
        restore.append(previous)
    restore = []
    yield set_mask
    for previous in restore:
        os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_file_gets_the_users_umask(capsys, tmp_path, umask, mask, mode):
    umask(mask)
    target = tmp_path / "report.json"
    assert run(capsys, TINY, "-o", str(target))[0] == 0
    assert target.stat().st_mode & 0o777 == mode           # 0o666 & ~umask, as open() would give


def test_existing_file_keeps_its_mode(capsys, tmp_path, umask):
    umask(0o022)
    target = tmp_path / "report.json"
    target.write_text("{}")
    target.chmod(0o640)
    assert run(capsys, TINY, "-o", str(target))[0] == 0
    assert target.stat().st_mode & 0o777 == 0o640 and json.loads(target.read_text())["schema"] == SCHEMA


@pytest.mark.parametrize("target, message", [
    ("{tmp}", "is a directory"),
    ("/proc/flopmeter-report.json", "cannot write /proc/flopmeter-report.json"),
    ("{tmp}/no/such/folder/r.json", "does not exist"),
    ("/dev/null/r.json", "folder /dev/null is not a folder"),
])
def test_unwritable_targets_are_one_error_line(capsys, tmp_path, target, message):
    target = target.format(tmp=tmp_path)
    code, out, err = run(capsys, TINY, "--format", "json", "-o", target)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in err and len(lines) <= 2
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []     # no temporary file left


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_one_error_line(capsys, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, _, err = run(capsys, TINY, "-o", str(folder / "r.json"))
    finally:
        folder.chmod(0o755)
    assert code == 2 and err.startswith("error: cannot write") and "Permission denied" in err


def test_csv_is_numbers_pandas_can_sum(capsys):
    pd = pytest.importorskip("pandas")
    code, out, _ = run(capsys, TINY, "--format", "csv", "--depth", "-1")
    assert code == 0
    df = pd.read_csv(io.StringIO(out))
    assert list(df.columns) == ["path", "depth", "calls", "type", "output", "params", "MACs", "FLOPs (dot)", "share"]
    assert df["path"][0] == "tiny_model.py:build" and not df["path"].isna().any()      # the root is named
    for column in ("depth", "calls", "params", "MACs", "FLOPs (dot)", "share"):
        assert pd.api.types.is_numeric_dtype(df[column]), column                     # no '%', 'K', '×' in numbers
    assert df["MACs"][0] == TINY_MACS and df["share"][0] == 1.0
    leaves = df[df["depth"] == 2]
    assert leaves["MACs"].sum() + HEAD_MACS == TINY_MACS
    conv = df[df["path"] == "features.0"].iloc[0]
    assert conv["share"] == round(CONV_MACS / TINY_MACS, 6)         # dot FLOPs = 2·MACs, so the MAC share
    assert list(df["depth"]) == [p.count(".") + 1 if i else 0 for i, p in enumerate(df["path"])]


def test_no_trailing_spaces_in_text_outputs(capsys):
    for fmt in ("table", "md", "csv"):
        code, out, _ = run(capsys, TINY, "--format", fmt)
        assert code == 0 and out.strip()
        assert [line for line in out.splitlines() if line != line.rstrip()] == [], fmt
    code, out, _ = run(capsys, "compare", TINY, TINY)
    assert code == 0 and [line for line in out.splitlines() if line != line.rstrip()] == []


def test_the_shipped_schema_is_valid_and_packaged():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema"]["const"] == SCHEMA == "flopmeter.report/2"
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert "report/schema.json" in pyproject and SCHEMA_FILE.is_file()


def test_reports_have_structured_tensors_and_validate(capsys):
    from conftest import VALIDATED
    before = len(VALIDATED)
    code, out, _ = run(capsys, TINY, "--format", "json", "--ops")
    d = json.loads(out)
    assert code == 0 and len(VALIDATED) == before + 1             # the session fixture validated it
    jsonschema.validate(d, json_schema())                          # and so does a plain validator
    assert d["inputs"] == [{"dtype": "float32", "shape": [1, 3, 16, 16], "display": "float32[1, 3, 16, 16]"}]
    conv = d["modules"]["children"][0]["children"][0]
    assert conv["outputs"][0]["shape"] == [1, 8, 16, 16]           # N, C_out, H, W (padding 1 keeps 16×16)
    mm = next(o for o in d["ops"] if o["op"] == "aten.addmm.default")
    assert [t["shape"] for t in mm["inputs"]] == [[10], [1, 512], [512, 10]]
    broken = dict(d, inputs=["float32[1, 3, 16, 16]"])             # version 1's display strings
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json_schema())


def test_diff_reads_the_previous_schema_version(capsys, tmp_path):
    # tests/data/report_v1.json was written by flopmeter 0.1 (schema 1): tiny_model.py:bare at 1×3×16×16
    old = json.loads((DATA / "report_v1.json").read_text())
    assert old["schema"] == READABLE[0] == "flopmeter.report/1" and old["inputs"] == ["float32[1, 3, 16, 16]"]
    new = tmp_path / "new.json"
    assert main([f"{DATA / 'tiny_model.py'}:bare", "--input", "2x3x16x16", "-o", str(new)]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "diff", str(DATA / "report_v1.json"), str(new), "--format", "json")
    rows = {r["figure"]: r for r in json.loads(out)["rows"]}
    assert code == 1 and "grew past" in err
    assert rows["MACs"]["old"] == TINY_MACS and rows["MACs"]["new"] == 2 * TINY_MACS     # batch 2 doubles it
    code, out, err = run(capsys, "diff", str(new), str(new))
    assert code == 0
    future = tmp_path / "future.json"
    future.write_text(json.dumps(dict(old, schema="flopmeter.report/9")))
    code, _, err = run(capsys, "diff", str(future), str(new))
    assert code == 2 and "its schema is 'flopmeter.report/9'" in err


@pytest.mark.parametrize("fmt, argv", [
    ("txt", ["--depth", "-1"]),
    ("md", ["--raw"]),
    ("csv", ["--depth", "-1"]),
    ("json", []),
])
def test_golden_file_per_format(capsys, golden, fmt, argv):
    """One golden file per output format (pytest --update-golden rewrites them; review the diff)."""
    import torch
    code, out, _ = run(capsys, TINY, "--format", {"txt": "table"}.get(fmt, fmt), *argv)
    assert code == 0
    golden(f"tiny_report.{fmt}", out.replace(torch.__version__, "<torch>"))
